//! Certificates for tests: a CA and a certificate per service, made in
//! memory once per test process with rcgen, shaped like the ones
//! `scripts/keys.sh` makes (ECDSA P-256, the service's name as its DNS
//! name, usable as server and as client). [`foreign`] is a second CA with
//! certificates for the same names: what a forger could make.

use std::collections::HashMap;
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::tls::TlsConfig;

/// Every name a test certificate is made for.
pub const NAMES: &[&str] = &[
    "user-service",
    "product-service",
    "order-service",
    "payment-service",
    "notification-service",
];

/// A CA and one certificate and key (PEM) per name of [`NAMES`].
pub struct Pki {
    pub ca: String,
    leaves: HashMap<&'static str, (String, String)>,
}

impl Pki {
    fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("a P-256 key");
        let mut ca = CertificateParams::new(Vec::new()).expect("no names is valid");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "minishop test CA");
        let ca_pem = ca.self_signed(&ca_key).expect("a CA certificate").pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaves = NAMES
            .iter()
            .map(|&name| {
                let key = KeyPair::generate().expect("a P-256 key");
                let mut leaf = CertificateParams::new(vec![name.to_owned()]).expect("a DNS name");
                leaf.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                let cert = leaf.signed_by(&key, &issuer).expect("a leaf certificate");
                (name, (cert.pem(), key.serialize_pem()))
            })
            .collect();
        Self { ca: ca_pem, leaves }
    }

    /// `name`'s certificate and key (PEM).
    pub fn leaf(&'static self, name: &str) -> (&'static str, &'static str) {
        let (cert, key) = self
            .leaves
            .get(name)
            .unwrap_or_else(|| panic!("no test certificate for {name}"));
        (cert, key)
    }

    /// `name`'s TLS settings as a service reads them (`TLS_CA`, `TLS_CERT`,
    /// `TLS_KEY`), for `Env::with_overrides`.
    pub fn vars(&'static self, name: &str) -> [(&'static str, &'static str); 3] {
        let (cert, key) = self.leaf(name);
        [("TLS_CA", &self.ca), ("TLS_CERT", cert), ("TLS_KEY", key)]
    }

    /// `name`'s TLS settings, for a client a test builds itself.
    pub fn tls(&'static self, name: &str) -> TlsConfig {
        let (cert, key) = self.leaf(name);
        TlsConfig::from_pem(&self.ca, cert, key)
    }
}

/// The CA every test service trusts, and its certificates.
pub fn trusted() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::generate)
}

/// Another CA, trusted by nobody, with certificates for the same names.
pub fn foreign() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::generate)
}

/// An endpoint to the gRPC server `server` (the name its certificate
/// carries) at `addr`, over TLS trusting [`trusted`]'s CA, presenting
/// `identity` (a certificate and key in PEM) if given.
pub fn endpoint(
    addr: std::net::SocketAddr,
    server: &str,
    identity: Option<(&str, &str)>,
) -> tonic::transport::Endpoint {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .domain_name(server)
        .ca_certificate(tonic::transport::Certificate::from_pem(&trusted().ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .expect("an address is a URI")
        .tls_config(tls)
        .expect("the test CA is usable")
}
