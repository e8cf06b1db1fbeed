//! user-service: accounts and the tokens every other service trusts.
//!
//! Registration and login (`api`, with emails parsed by `email`) with argon2id password hashes
//! (`passwords`) in `userdb` (`store`); Ed25519-signed JWTs whose public key
//! is published at `/.well-known/jwks.json`, so other services verify tokens
//! without any shared secret. The first admin comes from configuration;
//! nobody becomes admin by registering. `/register` and `/login` are rate
//! limited per client IP, writes per user, and every password check per
//! account and per address (`lockout`).

pub mod api;
pub mod app;
pub mod authority;
pub mod config;
pub mod email;
pub mod lockout;
pub mod passwords;
pub mod store;

pub use config::Config;
