//! The web binary.

use web::{app, config::DEFAULT_HTTP_PORT};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::app::main(app::SERVICE, DEFAULT_HTTP_PORT, app::build).await
}
