//! The connection to the peer cluster. Calls go through the controller's `ClusterRef`, bounded
//! by this timeout; an unreachable peer is a value (`PeerError`), never a hang or a panic: the
//! local side keeps working without it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum PeerSetupError {
    #[error(
        "cannot read the peer kubeconfig {path}: {message}; pass --peer-kubeconfig (VOLSYNC_DR_PEER_KUBECONFIG) with a readable kubeconfig file"
    )]
    Read { path: PathBuf, message: String },
    #[error("the peer kubeconfig {path} is not usable: {message}")]
    Config { path: PathBuf, message: String },
    #[error("cannot build a client for the peer from {path}: {source}")]
    Client { path: PathBuf, source: kube::Error },
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{what}: no answer within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("{what}: {}", plain(source))]
    Api { what: String, source: kube::Error },
}

/// An API error as a sentence (the Status's message, not its debug dump), with what to do
/// where the cause is known; a failed connection by its root cause first ("Connection refused"),
/// not by the client library's wrapper ("ServiceError: client error (Connect)").
pub(crate) fn plain(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let namespace_missing =
                status.code == 404 && status.details.as_ref().is_some_and(|d| d.kind == "namespaces");
            if namespace_missing {
                format!(
                    "{}: create the namespace on the peer cluster (volsync-dr does not create namespaces)",
                    status.message
                )
            } else {
                format!("{} ({} {})", status.message, status.code, status.reason)
            }
        }
        other => {
            let mut cause: &dyn std::error::Error = other;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let (root, whole) = (cause.to_string(), other.to_string());
            if root == whole {
                whole
            } else {
                format!("{root} ({whole})")
            }
        }
    }
}

impl PeerError {
    /// Whether the peer answered at all (an API error) rather than not answering.
    pub fn answered(&self) -> bool {
        match self {
            PeerError::Timeout { .. } => false,
            PeerError::Api { source, .. } => matches!(source, kube::Error::Api(_)),
        }
    }
}

#[derive(Clone)]
pub struct Peer {
    pub name: String,
    client: Client,
    timeout: Duration,
}

impl Peer {
    pub async fn connect(name: &str, kubeconfig: &Path, timeout: Duration) -> Result<Peer, PeerSetupError> {
        let path = kubeconfig.to_path_buf();
        // Parser errors come with a multi-line snippet; the first line says what is wrong.
        let first_line =
            |e: kube::config::KubeconfigError| e.to_string().lines().next().unwrap_or_default().to_string();
        let file = Kubeconfig::read_from(kubeconfig).map_err(|e| PeerSetupError::Read {
            path: path.clone(),
            message: first_line(e),
        })?;
        let mut config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .map_err(|e| PeerSetupError::Config {
                path: path.clone(),
                message: first_line(e),
            })?;
        // Fail fast instead of kube's long retry schedule: reconciles retry with their own backoff.
        config.default_retry = false;
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        let client = Client::try_from(config).map_err(|source| PeerSetupError::Client { path, source })?;
        Ok(Peer {
            name: name.to_string(),
            client,
            timeout,
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// How long one call to the peer may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
