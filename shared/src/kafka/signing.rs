//! Events carry their producer's signature (docs/security.md, "Event
//! signatures").
//!
//! The broker checks logins but enforces no ACLs, so any client that can
//! log in (any service, any tool) can write to the saga's topic. So the
//! relay of each producing service signs every event it publishes with the
//! service's own Ed25519 key ([`EventSigner`]), and every consumer checks
//! the signature against its [`Keyring`] before it handles the event: the
//! keyring says which one service each key belongs to, and an event type is
//! taken only from the service that produces it ([`producer_of`]). Anything
//! else is refused for good: dead-lettered with the reason and counted as
//! `outcome="refused"` (alert `RefusedEvents`).
//!
//! What is signed is the payload's bytes as sent, after a fixed context
//! string, so a signature over anything else (another protocol's message)
//! is never an event's. The envelope holds the event's id, type, order and
//! user, so none of them can be changed without breaking the signature; a
//! signed event sent again is the same event, which the inboxes apply once.
//!
//! Rotation: a consumer's keyring may hold several keys of one producer.
//! Add the new key to every consumer's keyring, then give the producer the
//! new key; once the consumers are past the events signed with the old one
//! (lag 0, or the topic's retention for replays), take it out.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::events::{Event, Producer, producer_of};

/// The header naming the key that signed the event ([`KeyId`]).
pub const KEY_ID_HEADER: &str = "signature_key_id";
/// The header holding the signature, in base64.
pub const SIGNATURE_HEADER: &str = "signature";

/// What is signed before the payload's bytes.
const CONTEXT: &[u8] = b"minishop-event-v1\n";

/// The bytes a signature is over: [`CONTEXT`], then the payload.
fn signed_bytes(payload: &[u8]) -> Vec<u8> {
    [CONTEXT, payload].concat()
}

/// A key's id: the first 8 bytes of its public key, in hex. It only picks
/// which trusted key to verify with; the signature is what proves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &VerifyingKey) -> Self {
        let mut hex = String::with_capacity(16);
        for byte in &key.as_bytes()[..8] {
            let _ = write!(hex, "{byte:02x}");
        }
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key or a keyring could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM")]
    PrivateKey(#[source] ed25519_dalek::pkcs8::Error),
    #[error("keyring line {line}: expected `<producer> <base64 public key>`")]
    Line { line: usize },
    #[error("keyring line {line}: {name:?} is no producer of events (one of {})", Producer::NAMES.join(", "))]
    Producer { line: usize, name: String },
    #[error("keyring line {line}: not an Ed25519 public key (base64 of its DER)")]
    PublicKey { line: usize },
    #[error("keyring line {line}: key {key_id} is already {owner}'s")]
    Duplicate {
        line: usize,
        key_id: KeyId,
        owner: Producer,
    },
}

/// A producing service's signing key.
#[derive(Clone)]
pub struct EventSigner {
    key: SigningKey,
    key_id: KeyId,
}

impl std::fmt::Debug for EventSigner {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl EventSigner {
    pub fn new(key: SigningKey) -> Self {
        let key_id = KeyId::of(&key.verifying_key());
        Self { key, key_id }
    }

    /// From a PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self::new)
            .map_err(KeyError::PrivateKey)
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The signature of `payload`, in base64, for [`SIGNATURE_HEADER`].
    pub fn sign(&self, payload: &[u8]) -> String {
        BASE64.encode(self.key.sign(&signed_bytes(payload)).to_bytes())
    }

    /// `headers` with this key's id and the signature of `payload`, as
    /// every signed event is sent.
    pub fn sign_headers(
        &self,
        headers: rdkafka::message::OwnedHeaders,
        payload: &[u8],
    ) -> rdkafka::message::OwnedHeaders {
        use rdkafka::message::Header;
        let signature = self.sign(payload);
        headers
            .insert(Header {
                key: KEY_ID_HEADER,
                value: Some(self.key_id.as_str()),
            })
            .insert(Header {
                key: SIGNATURE_HEADER,
                value: Some(signature.as_str()),
            })
    }

    /// This key's line in a keyring, as `producer`'s.
    pub fn keyring_line(&self, producer: Producer) -> String {
        let der = self
            .key
            .verifying_key()
            .to_public_key_der()
            .map(|der| BASE64.encode(der.as_bytes()))
            .unwrap_or_default();
        format!("{producer} {der}")
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the event is not signed (no {KEY_ID_HEADER} and {SIGNATURE_HEADER} headers)")]
    Unsigned,
    #[error("the event is signed with key {0}, which this service does not trust")]
    UnknownKey(String),
    #[error("the event's signature does not verify with {producer}'s key {key_id}")]
    BadSignature { producer: Producer, key_id: KeyId },
    #[error("{event_type} is signed by {signer}, but only {producer} produces it")]
    WrongProducer {
        event_type: &'static str,
        signer: Producer,
        producer: Producer,
    },
}

/// The keys a consumer trusts, each with the one service it belongs to.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: HashMap<KeyId, (Producer, VerifyingKey)>,
}

impl Keyring {
    /// Reads lines of `<producer> <base64 of the public key's DER>`
    /// (`openssl pkey -pubout -outform DER | base64 -w0`); blank lines and
    /// lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(name), Some(key), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(KeyError::Line { line: line_no });
            };
            let producer = Producer::parse(name).ok_or_else(|| KeyError::Producer {
                line: line_no,
                name: name.to_owned(),
            })?;
            let key = BASE64
                .decode(key)
                .ok()
                .and_then(|der| VerifyingKey::from_public_key_der(&der).ok())
                .ok_or(KeyError::PublicKey { line: line_no })?;
            let key_id = KeyId::of(&key);
            if let Some((owner, _)) = keys.get(&key_id) {
                return Err(KeyError::Duplicate {
                    line: line_no,
                    key_id,
                    owner: *owner,
                });
            }
            keys.insert(key_id, (producer, key));
        }
        Ok(Self { keys })
    }

    /// The producers with a trusted key.
    pub fn producers(&self) -> Vec<Producer> {
        let mut producers: Vec<Producer> = self.keys.values().map(|(p, _)| *p).collect();
        producers.sort_by_key(|p| p.as_str());
        producers.dedup();
        producers
    }

    /// Whether `event`, as `payload` with the headers `key_id` and
    /// `signature`, was signed by a trusted key of the service that
    /// produces its type.
    pub fn verify(
        &self,
        event: &Event,
        payload: &[u8],
        key_id: Option<&[u8]>,
        signature: Option<&[u8]>,
    ) -> Result<Producer, Refusal> {
        let (Some(key_id), Some(signature)) = (key_id, signature) else {
            return Err(Refusal::Unsigned);
        };
        let shown = String::from_utf8_lossy(key_id);
        let Some((signer, key)) = std::str::from_utf8(key_id)
            .ok()
            .and_then(|id| self.keys.get(&KeyId(id.to_owned())))
        else {
            return Err(Refusal::UnknownKey(shown.chars().take(64).collect()));
        };
        let bad = || Refusal::BadSignature {
            producer: *signer,
            key_id: KeyId(shown.to_string()),
        };
        let signature = BASE64
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(bad)?;
        key.verify_strict(&signed_bytes(payload), &signature)
            .map_err(|_| bad())?;
        let event_type = event.payload.event_type();
        match producer_of(event_type) {
            Some(producer) if producer == *signer => Ok(producer),
            Some(producer) => Err(Refusal::WrongProducer {
                event_type,
                signer: *signer,
                producer,
            }),
            // A type this version knows always has its producer (a test
            // holds EVENT_PRODUCERS to the types).
            None => Err(Refusal::UnknownKey(shown.to_string())),
        }
    }
}

/// The event keys of a service: the key it signs its events with, if it
/// produces any, and the keys it trusts, if it consumes.
#[derive(Debug, Clone, Default)]
pub struct EventKeys {
    pub signer: Option<EventSigner>,
    pub keyring: Keyring,
}

/// Where `make up` puts the event keys (scripts/keys.sh): `<dir>/<producer>-key.pem`
/// and `<dir>/keyring`.
pub const DEFAULT_KEY_DIR: &str = ".local/keys/events";

impl EventKeys {
    /// Reads `EVENT_SIGNING_KEY` (PKCS#8 PEM; only a service that is
    /// `producer`) and `EVENT_KEYS` (the keyring), inline or as `_FILE`,
    /// by default from [`DEFAULT_KEY_DIR`]. A service that consumes needs
    /// a keyring with a key of every producer.
    pub fn read(env: &mut crate::config::Env, producer: Option<Producer>) -> Self {
        let signer = producer.and_then(|producer| {
            let pem = crate::config::read_pem(
                env,
                "EVENT_SIGNING_KEY",
                &format!("{DEFAULT_KEY_DIR}/{producer}-key.pem"),
            );
            match EventSigner::from_pem(&pem) {
                Ok(signer) => Some(signer),
                Err(e) => {
                    if !pem.is_empty() {
                        env.problem(format!("EVENT_SIGNING_KEY: {e}"));
                    }
                    None
                }
            }
        });
        let text =
            crate::config::read_pem(env, "EVENT_KEYS", &format!("{DEFAULT_KEY_DIR}/keyring"));
        let keyring = match Keyring::parse(&text) {
            Ok(keyring) => keyring,
            Err(e) => {
                env.problem(format!("EVENT_KEYS: {e}"));
                Keyring::default()
            }
        };
        if !text.is_empty() {
            let trusted = keyring.producers();
            for needed in Producer::NAMES
                .iter()
                .filter_map(|name| Producer::parse(name))
            {
                if !trusted.contains(&needed) {
                    env.problem(format!(
                        "EVENT_KEYS: no key of {needed}: every event it produces would be refused"
                    ));
                }
            }
        }
        Self { signer, keyring }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{OrderId, UserId};
    use crate::kafka::events::EventPayload;
    use crate::money::Money;

    fn key(seed: u8) -> EventSigner {
        EventSigner::new(SigningKey::from_bytes(&[seed; 32]))
    }

    fn event(payload: EventPayload) -> (Event, Vec<u8>) {
        let event = Event::new(OrderId::new(7).unwrap(), UserId::new(3).unwrap(), payload);
        let bytes = serde_json::to_vec(&event).unwrap();
        (event, bytes)
    }

    fn confirmed() -> (Event, Vec<u8>) {
        event(EventPayload::OrderConfirmed {
            total_price: Money(100),
        })
    }

    #[test]
    fn an_event_signed_by_its_producer_verifies_and_nothing_else_does() {
        let (order, payment, stranger) = (key(1), key(2), key(3));
        let ring = Keyring::parse(&format!(
            "# the saga's producers\n{}\n\n{}\n",
            order.keyring_line(Producer::OrderService),
            payment.keyring_line(Producer::PaymentService)
        ))
        .unwrap();
        let (event, bytes) = confirmed();
        let id = order.key_id().as_str().as_bytes();
        let sig = order.sign(&bytes);
        assert_eq!(
            ring.verify(&event, &bytes, Some(id), Some(sig.as_bytes())),
            Ok(Producer::OrderService)
        );
        // Unsigned, half-signed.
        assert_eq!(
            ring.verify(&event, &bytes, None, None),
            Err(Refusal::Unsigned)
        );
        assert_eq!(
            ring.verify(&event, &bytes, Some(id), None),
            Err(Refusal::Unsigned)
        );
        // Signed by a key nobody trusts.
        let foreign = stranger.sign(&bytes);
        assert!(matches!(
            ring.verify(
                &event,
                &bytes,
                Some(stranger.key_id().as_str().as_bytes()),
                Some(foreign.as_bytes())
            ),
            Err(Refusal::UnknownKey(_))
        ));
        // A stranger's signature under a trusted key's id.
        assert!(matches!(
            ring.verify(&event, &bytes, Some(id), Some(foreign.as_bytes())),
            Err(Refusal::BadSignature { .. })
        ));
        // The payload changed after signing (one byte: the amount).
        let tampered = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("1.00", "9.00");
        assert_ne!(tampered.as_bytes(), bytes.as_slice());
        assert!(matches!(
            ring.verify(&event, tampered.as_bytes(), Some(id), Some(sig.as_bytes())),
            Err(Refusal::BadSignature { .. })
        ));
        // Garbage for a signature.
        assert!(matches!(
            ring.verify(&event, &bytes, Some(id), Some(b"not base64!")),
            Err(Refusal::BadSignature { .. })
        ));
        // An order event signed, validly, by payment-service.
        let by_payment = payment.sign(&bytes);
        assert_eq!(
            ring.verify(
                &event,
                &bytes,
                Some(payment.key_id().as_str().as_bytes()),
                Some(by_payment.as_bytes())
            ),
            Err(Refusal::WrongProducer {
                event_type: "order_confirmed",
                signer: Producer::PaymentService,
                producer: Producer::OrderService,
            })
        );
    }

    #[test]
    fn a_rotated_key_and_its_predecessor_both_verify_while_both_are_trusted() {
        let (old, new) = (key(4), key(5));
        let ring = Keyring::parse(&format!(
            "{}\n{}\n",
            old.keyring_line(Producer::OrderService),
            new.keyring_line(Producer::OrderService)
        ))
        .unwrap();
        let (event, bytes) = confirmed();
        for signer in [&old, &new] {
            let sig = signer.sign(&bytes);
            let id = signer.key_id().as_str().as_bytes();
            assert_eq!(
                ring.verify(&event, &bytes, Some(id), Some(sig.as_bytes())),
                Ok(Producer::OrderService)
            );
        }
    }

    #[test]
    fn a_keyring_that_does_not_parse_says_where() {
        let one = key(6);
        let line = one.keyring_line(Producer::OrderService);
        assert!(matches!(
            Keyring::parse("order-service"),
            Err(KeyError::Line { line: 1 })
        ));
        assert!(matches!(
            Keyring::parse(&format!(
                "\n{}",
                line.replace("order-service", "notification-service")
            )),
            Err(KeyError::Producer { line: 2, .. })
        ));
        assert!(matches!(
            Keyring::parse("payment-service AAAA"),
            Err(KeyError::PublicKey { line: 1 })
        ));
        assert!(matches!(
            Keyring::parse(&format!(
                "{line}\n{}",
                one.keyring_line(Producer::PaymentService)
            )),
            Err(KeyError::Duplicate { line: 2, .. })
        ));
        assert!(
            EventSigner::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
    }
}
