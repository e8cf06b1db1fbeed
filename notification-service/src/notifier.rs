//! Where notifications go: behind a trait, because delivery (email) is
//! outside the system. The default sink writes them to the log.

use std::future::Future;
use std::pin::Pin;

/// A message to deliver.
#[derive(Debug, Clone)]
pub struct Message {
    pub user_id: i64,
    pub subject: String,
    pub body: String,
}

/// Delivers messages; an `Err` is retried later with backoff.
pub trait Notifier: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        message: &'a Message,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Writes every message to the log (the default, and what local runs use).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn send<'a>(
        &'a self,
        message: &'a Message,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            tracing::info!(user_id = message.user_id, subject = %message.subject, body = %message.body, "notification delivered (log sink)");
            Ok(())
        })
    }
}
