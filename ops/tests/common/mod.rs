//! What the ops tests share: running the binary against a test topic.

use shared::kafka::KafkaConfig;

/// Runs `minishop-ops` on `kafka`'s brokers and topic with `args`; returns
/// whether it succeeded, its stdout and its stderr.
pub async fn ops(kafka: &KafkaConfig, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_minishop-ops"))
        .args(["--brokers", &kafka.brokers, "--topic", &kafka.topic])
        .args(args)
        .output()
        .await
        .expect("minishop-ops runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
