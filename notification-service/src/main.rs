use std::process::ExitCode;

use notification_service::SERVICE;

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init(SERVICE);
    let result = async {
        let addr = notification_service::http_addr(shared::config::Env::new())
            .map_err(|e| e.to_string())?;
        let listener = shared::http::bind(addr).await?;
        notification_service::run(listener, shared::shutdown::on_signal()).await
    }
    .await;
    shared::exit_code(SERVICE, result)
}
