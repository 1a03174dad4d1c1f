//! Run a test cluster by hand: `test-cluster --kubeconfig /tmp/a.yaml [--name a] [--seconds 3600]`.
//! It serves until the time is up or it is interrupted, so kubectl can be pointed at it.

use std::path::PathBuf;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut kubeconfig, mut name, mut seconds) = (PathBuf::from("kubeconfig.yaml"), "test".to_string(), 3600u64);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--kubeconfig" => kubeconfig = value.into(),
            "--name" => name = value,
            "--seconds" => seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            other => {
                return Err(format!(
                    "unknown flag {other}; accepted: --kubeconfig, --name, --seconds"
                ));
            }
        }
    }
    let server = testkit::cluster::start_with_volsync(Default::default()).await?;
    server.write_kubeconfig(&kubeconfig, &name).map_err(|e| e.to_string())?;
    eprintln!(
        "test cluster {name} at {} (kubeconfig {})",
        server.url(),
        kubeconfig.display()
    );
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
