//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): only the replica that
//! holds the Lease runs the watcher, so two replicas never reconcile the same PVC; every replica
//! serves the webhook.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::LeaderConfig;

/// Renew this long before the Lease would expire (at most half its duration).
const RENEW_BEFORE: Duration = Duration::from_secs(5);

pub struct Leadership {
    leading: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Start competing for the Lease `config.lease_name` in `namespace` (created if missing).
    pub async fn start(client: Client, namespace: &str, config: &LeaderConfig) -> Result<Self, LeaseManagerError> {
        let duration = config.lease_duration.as_secs();
        let grace = RENEW_BEFORE.as_secs().min(duration / 2).max(1);
        let manager = LeaseManagerBuilder::new(client, &config.lease_name)
            .with_namespace(namespace)
            .with_identity(&config.identity)
            .with_duration(duration)
            .with_grace(grace)
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        Ok(Leadership { leading, task })
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Wait until this replica holds the Lease. `false` when the election stopped.
    pub async fn acquired(&mut self) -> bool {
        self.leading.wait_for(|l| *l).await.is_ok()
    }

    /// Wait until this replica no longer holds the Lease.
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|l| !*l).await;
    }

    /// Give the Lease up (so another replica takes over at once, not after it expires), waiting
    /// at most `timeout`.
    pub async fn release(self, timeout: Duration) {
        let Leadership { leading, task } = self;
        // The manager releases the Lease when nobody listens any more.
        drop(leading);
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(_))) => tracing::info!("lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "cannot release the lease; it expires by itself"),
            Ok(Err(e)) => tracing::warn!(error = %e, "lease task failed"),
            Err(_) => tracing::warn!("releasing the lease timed out; it expires by itself"),
        }
    }
}
