//! `volsync-dr run`: wiring only. Validate the configuration, connect to both clusters, serve
//! the admin port, run the controllers until SIGTERM.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::cli::RunArgs;
use crate::cluster::{self, peer::Peer};
use crate::config::RunConfig;
use crate::controller::{self, context::Context};
use crate::error::{Error, Result};
use crate::server::admin;
use crate::telemetry;

pub async fn run(args: &RunArgs) -> Result<()> {
    let config = RunConfig::from_args(args).map_err(|e| Error::Flag(e.to_string()))?;
    telemetry::init(config.log_format);
    let local = cluster::local_client()
        .await
        .map_err(|e| Error::Cluster(format!("cannot reach this cluster: {e}")))?;
    let peer = Peer::connect(&config.peer_name, &config.peer_kubeconfig, config.peer_timeout)
        .await
        .map_err(|e| Error::Cluster(e.to_string()))?;
    let listener = admin::bind(config.admin_addr)
        .await
        .map_err(|e| Error::Cluster(format!("cannot listen on --admin-addr {}: {e}", config.admin_addr)))?;
    tracing::info!(
        cluster = %config.cluster_name,
        peer = %config.peer_name,
        namespaces = ?config.namespaces,
        admin = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "volsync-dr starting"
    );
    let synced = Arc::new(AtomicUsize::new(0));
    let needed = config.namespaces.len().max(1);
    let ctx = Arc::new(Context::new(local, peer, config));
    tokio::select! {
        served = admin::serve(listener, synced.clone(), needed) => {
            served.map_err(|e| Error::Cluster(format!("admin server stopped: {e}")))?;
        }
        () = controller::run(ctx, synced) => {
            tracing::info!("volsync-dr stopped");
        }
    }
    Ok(())
}
