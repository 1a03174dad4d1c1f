//! One module per subcommand; each turns parsed arguments into effects.

pub mod certs;
pub mod crd;
pub mod doctor;
pub mod render;
pub mod run;
mod startup;
pub mod status;

/// This cluster's client and the peer's, as `status` and `doctor` reach them.
pub(crate) async fn connect_pair(
    pair: &crate::cli::PairArgs,
) -> crate::error::Result<(kube::Client, crate::cluster::peer::Peer, std::time::Duration)> {
    use crate::error::Error;
    let timeout = std::time::Duration::from_secs(pair.timeout_seconds.max(1));
    let local = startup::connect_local().await?;
    let peer = crate::cluster::peer::Peer::connect(&pair.peer_name, &pair.peer_kubeconfig, timeout)
        .await
        .map_err(|e| Error::Cluster(e.to_string()))?;
    Ok((local, peer, timeout))
}

/// A cluster call with a time limit; the error says what was asked and why it failed. An answer
/// "come back later" (429 or 503, as an API server gives while a new CRD's storage is still
/// initializing) is asked again after its Retry-After, within the same limit.
pub(crate) async fn bounded<T, F, Fut>(timeout: std::time::Duration, what: &str, mut call: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(kube::Error::Api(status))) if matches!(status.code, 429 | 503) => {
                let after = status.details.as_ref().map_or(1, |d| d.retry_after_seconds.max(1));
                let wait = std::time::Duration::from_secs(u64::from(after));
                if tokio::time::Instant::now() + wait >= deadline {
                    return Err(format!("{what}: {}", kube::Error::Api(status)));
                }
                tokio::time::sleep(wait).await;
            }
            Ok(Err(e)) => return Err(format!("{what}: {e}")),
            Err(_) => return Err(format!("{what}: no answer within {} s", timeout.as_secs())),
        }
    }
}
