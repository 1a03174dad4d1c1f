//! One module per subcommand; each turns parsed arguments into effects.

pub mod certs;
pub mod crd;
pub mod doctor;
pub mod render;
pub mod run;
pub mod status;

/// This cluster's client and the peer's, as `status` and `doctor` reach them.
pub(crate) async fn connect_pair(
    pair: &crate::cli::PairArgs,
) -> crate::error::Result<(kube::Client, crate::cluster::peer::Peer, std::time::Duration)> {
    use crate::error::Error;
    let timeout = std::time::Duration::from_secs(pair.timeout_seconds.max(1));
    let local = crate::cluster::local_client()
        .await
        .map_err(|e| Error::Cluster(format!("cannot reach this cluster: {e}")))?;
    let peer = crate::cluster::peer::Peer::connect(&pair.peer_name, &pair.peer_kubeconfig, timeout)
        .await
        .map_err(|e| Error::Cluster(e.to_string()))?;
    Ok((local, peer, timeout))
}

/// A cluster call with a time limit; the error says what was asked and why it failed.
pub(crate) async fn bounded<T>(
    timeout: std::time::Duration,
    what: &str,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} s", timeout.as_secs())),
    }
}
