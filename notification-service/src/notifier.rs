//! Where notifications go: behind a trait, because delivery (email) is
//! outside the system. The default sink writes them to the log; with
//! `SMTP_URL` set, [`SmtpNotifier`] mails them.

use std::future::Future;
use std::pin::Pin;

/// A message to deliver.
#[derive(Debug, Clone)]
pub struct Message {
    pub user_id: i64,
    /// The customer's email address, when known.
    pub to: Option<String>,
    pub subject: String,
    pub body: String,
}

/// Why a delivery failed (kept, with its causes, as the notification's
/// `last_error`).
pub type SendError = shared::app::BoxError;

/// One delivery in flight; an `Err` says why it failed.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// What went wrong with SMTP: its configuration, or one message.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("SMTP_URL is not a valid SMTP URL")]
    Url(#[source] lettre::transport::smtp::Error),
    #[error("SMTP_FROM={0:?} is not a mailbox")]
    From(String, #[source] lettre::address::AddressError),
    #[error("no email address known for user {0}")]
    NoAddress(i64),
    #[error("bad recipient address")]
    Recipient(#[source] lettre::address::AddressError),
    #[error("cannot build the email")]
    Build(#[source] lettre::error::Error),
    #[error("SMTP delivery failed")]
    Delivery(#[source] lettre::transport::smtp::Error),
}

/// Delivers messages; an `Err` is retried later with backoff.
pub trait Notifier: Send + Sync + 'static {
    fn send<'a>(&'a self, message: &'a Message) -> Sending<'a>;
}

/// Writes every message to the log (the default, and what local runs use).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn send<'a>(&'a self, message: &'a Message) -> Sending<'a> {
        Box::pin(async move {
            tracing::info!(user_id = message.user_id, subject = %message.subject, body = %message.body, "notification delivered (log sink)");
            Ok(())
        })
    }
}

/// Mails every message through an SMTP server (lettre, connection pool).
///
/// `SMTP_URL` takes lettre's forms: `smtp://host:25` (plain, e.g. a local
/// Mailpit), `smtp://user:pass@host:587?tls=required` (STARTTLS),
/// `smtps://user:pass@host:465` (TLS).
#[derive(Clone)]
pub struct SmtpNotifier {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// A notifier for `url`, sending as `from` (`Name <address>` or an address).
    pub fn new(url: &str, from: &str) -> Result<Self, SmtpError> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(SmtpError::Url)?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from = from
            .parse()
            .map_err(|e| SmtpError::From(from.to_owned(), e))?;
        Ok(Self { transport, from })
    }
}

impl Notifier for SmtpNotifier {
    fn send<'a>(&'a self, message: &'a Message) -> Sending<'a> {
        Box::pin(async move {
            use lettre::AsyncTransport;
            let to = message
                .to
                .as_deref()
                .ok_or(SmtpError::NoAddress(message.user_id))?
                .parse()
                .map_err(SmtpError::Recipient)?;
            let email = lettre::Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(&message.subject)
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(message.body.clone())
                .map_err(SmtpError::Build)?;
            self.transport
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| SmtpError::Delivery(e).into())
        })
    }
}
