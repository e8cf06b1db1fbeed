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

/// One delivery in flight; an `Err` says why it failed.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

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
    pub fn new(url: &str, from: &str) -> Result<Self, String> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| format!("SMTP_URL is not a valid SMTP URL: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("SMTP_FROM={from:?} is not a mailbox: {e}"))?;
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
                .ok_or_else(|| format!("no email address known for user {}", message.user_id))?
                .parse()
                .map_err(|e| format!("bad recipient address: {e}"))?;
            let email = lettre::Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(&message.subject)
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(message.body.clone())
                .map_err(|e| format!("cannot build the email: {e}"))?;
            self.transport
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| format!("SMTP delivery failed: {e}"))
        })
    }
}
