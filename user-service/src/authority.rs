//! user-service's own [`Authority`]: every token is checked against the
//! user's row, so the role is the current one, and a token older than the
//! user's version (a role or password change since) or ended by `POST
//! /logout` is refused. The other
//! services ask the same question through `GET /session`
//! ([`shared::authority`]).

use shared::auth::{AuthError, AuthUser, Authority, Current};

use crate::store::Store;

pub struct LocalAuthority {
    store: Store,
}

impl LocalAuthority {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Authority for LocalAuthority {
    fn current<'a>(&'a self, _token: &'a str, user: AuthUser) -> Current<'a> {
        Box::pin(async move {
            match self.store.standing(user.id.get(), user.token_id).await? {
                Some((version, role, false)) if version == user.token_version => {
                    Ok(AuthUser { role, ..user })
                }
                // Deleted since, signed before the last role or password
                // change, or logged out.
                _ => Err(AuthError::Revoked.into()),
            }
        })
    }
}
