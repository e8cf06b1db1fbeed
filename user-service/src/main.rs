use std::process::ExitCode;

use user_service::{App, Config, app::SERVICE, config::DEFAULT_HTTP_PORT};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = shared::probe::run_if_requested(DEFAULT_HTTP_PORT) {
        return code;
    }
    let telemetry = shared::telemetry::init(SERVICE);
    let result = async {
        let config = Config::from_env(shared::config::Env::new()).map_err(|e| e.to_string())?;
        let app = App::build(config).await?;
        app.run(shared::shutdown::on_signal()).await
    }
    .await;
    telemetry.shutdown();
    shared::exit_code(SERVICE, result)
}
