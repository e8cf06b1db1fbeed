use std::process::ExitCode;

use payment_service::{App, Config, app::SERVICE};

#[tokio::main]
async fn main() -> ExitCode {
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
