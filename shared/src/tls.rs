//! Service identity on internal gRPC: mutual TLS (docs/security.md).
//!
//! Every service holds a certificate from the deployment's own CA whose
//! subject alternative name is the service's name (`order-service`, ...).
//! A gRPC server presents its certificate; product-service also demands one
//! from its callers at the handshake, so a caller without a certificate from
//! the CA never reaches a handler, and its stock calls answer
//! `PERMISSION_DENIED` to any certificate but order-service's
//! ([`require_peer`]). A client verifies the server's certificate against the
//! CA under the server's service name, whatever address it dials.
//!
//! `scripts/keys.sh` makes the local CA and certificates; tests make theirs
//! in memory (`shared::testing::pki`).

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use crate::config::{Env, read_pem};

/// Where `make up` (scripts/keys.sh) puts the local CA and certificates.
pub const DEFAULT_DIR: &str = ".local/keys/tls";

/// Where a service's gRPC server listens, and with which certificate.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// `GRPC_ADDR`.
    pub addr: std::net::SocketAddr,
    /// See [`TlsConfig::read`]; also the service's identity as a gRPC client.
    pub tls: Option<TlsConfig>,
}

impl GrpcConfig {
    /// Reads `GRPC_ADDR` (by default all interfaces, `default_port`) and the
    /// TLS settings of `service`.
    pub fn read(env: &mut Env, service: &str, default_port: u16) -> Self {
        Self {
            addr: env.get(
                "GRPC_ADDR",
                std::net::SocketAddr::from(([0, 0, 0, 0], default_port)),
            ),
            tls: TlsConfig::read(env, service),
        }
    }
}

/// The CA that signs every service's certificate, and this service's own.
#[derive(Clone)]
pub struct TlsConfig {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for TlsConfig {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// Whether a TLS server asks its callers for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// Callers must present a certificate from the CA, or the handshake fails
    /// (service-to-service calls).
    Required,
    /// Callers are not asked for one (customers, who bring a Bearer token).
    NotAsked,
}

impl TlsConfig {
    /// Reads `GRPC_TLS` (`on`, the default, or `off`) and, when on, the PEMs
    /// `TLS_CA`, `TLS_CERT` and `TLS_KEY` (each inline or as `<var>_FILE`),
    /// by default `.local/keys/tls/{ca,<service>,<service>-key}.pem`. `None`
    /// when off: gRPC is then plaintext and unauthenticated, for a
    /// deliberate local experiment only.
    pub fn read(env: &mut Env, service: &str) -> Option<Self> {
        let on = match env.get("GRPC_TLS", "on".to_string()).as_str() {
            "on" => true,
            "off" => false,
            other => {
                env.problem(format!("GRPC_TLS={other:?}: must be on or off"));
                true
            }
        };
        on.then(|| Self::from_dir(env, DEFAULT_DIR, service))
    }

    /// `TLS_CA`, `TLS_CERT` and `TLS_KEY` if set, else `service`'s files
    /// in `dir` as `scripts/keys.sh` names them: `ca.pem`, `<service>.pem`
    /// and `<service>-key.pem`.
    pub fn from_dir(env: &mut Env, dir: &str, service: &str) -> Self {
        Self {
            ca_pem: read_pem(env, "TLS_CA", &format!("{dir}/ca.pem")),
            cert_pem: read_pem(env, "TLS_CERT", &format!("{dir}/{service}.pem")),
            key_pem: read_pem(env, "TLS_KEY", &format!("{dir}/{service}-key.pem")),
        }
    }

    /// A configuration from PEM texts (tests and tools).
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Self {
        Self {
            ca_pem: ca_pem.to_owned(),
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        }
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// The server side: this service's certificate, and the CA its callers'
    /// certificates must chain to when `clients` is [`ClientCerts::Required`].
    pub fn server(&self, clients: ClientCerts) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(self.identity())
            // A caller that opens a connection and never finishes the
            // handshake is dropped, like a slow HTTP client.
            .timeout(std::time::Duration::from_secs(10));
        match clients {
            ClientCerts::Required => config.client_ca_root(Certificate::from_pem(&self.ca_pem)),
            ClientCerts::NotAsked => config,
        }
    }

    /// The client side towards `server` (its service name, which its
    /// certificate must carry), presenting this service's certificate.
    pub fn client(&self, server: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .domain_name(server)
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
    }
}

/// Refuses with `PERMISSION_DENIED` unless the caller's certificate (checked
/// against the CA at the handshake) names `service`; `UNAUTHENTICATED` when
/// the connection carries no certificate at all (TLS off, or not asked).
pub fn require_peer<T>(request: &Request<T>, service: &str) -> Result<(), Status> {
    let certs = request
        .peer_certs()
        .filter(|certs| !certs.is_empty())
        .ok_or_else(|| Status::unauthenticated("this call needs a client certificate"))?;
    let name = rustls_pki_types::ServerName::try_from(service)
        .map_err(|_| Status::internal("not a service name"))?;
    let names_service = webpki::EndEntityCert::try_from(&certs[0])
        .is_ok_and(|leaf| leaf.verify_is_valid_for_subject_name(&name).is_ok());
    if names_service {
        Ok(())
    } else {
        tracing::warn!(
            required = service,
            "refused a gRPC call from another service's certificate"
        );
        Err(Status::permission_denied(format!(
            "only {service} may make this call"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_on_by_default_and_missing_files_are_named() {
        let mut env = Env::with_overrides(&[("TLS_CA_FILE", "/nonexistent/ca.pem")]);
        assert!(TlsConfig::read(&mut env, "order-service").is_some());
        let text = env.finish().unwrap_err().to_string();
        assert!(text.contains("TLS_CA_FILE"), "{text}");
        assert!(text.contains("TLS_CERT"), "{text}");
        assert!(text.contains("order-service-key.pem"), "{text}");
    }

    #[test]
    fn off_means_no_tls_and_anything_else_is_a_problem() {
        let mut env = Env::with_overrides(&[("GRPC_TLS", "off")]);
        assert!(TlsConfig::read(&mut env, "order-service").is_none());
        env.finish().unwrap();
        let mut env = Env::with_overrides(&[("GRPC_TLS", "maybe"), ("TLS_CA", "x")]);
        let _ = TlsConfig::read(&mut env, "order-service");
        let text = env.finish().unwrap_err().to_string();
        assert!(text.contains("GRPC_TLS=\"maybe\""), "{text}");
    }
}
