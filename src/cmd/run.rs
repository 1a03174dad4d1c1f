//! `volsync-dr run`: wiring only. Validate the configuration, connect to both clusters, serve
//! the admin port, run the controllers until SIGTERM.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::admission::{self, AdmissionState, PolicyHook, decide::AdmissionDefaults};
use crate::cli::RunArgs;
use crate::cluster::{self, peer::Peer};
use crate::config::RunConfig;
use crate::controller::{self, context::Context};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::server::{admin, tls, webhook};
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
    // The certificate is checked before anything binds: a bad pair is a start-up error.
    let tls_config = tls::load(&config.tls).map_err(|e| Error::Cluster(e.to_string()))?;
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(tls_config);
    let metrics = Arc::new(Metrics::new());
    let policies = cluster::policies::start(local.clone(), config.peer_name.clone()).await;
    let (policy_watch, policy_cache) = match policies {
        Some((watch, cache)) => (Some(watch), futures::future::Either::Left(cache)),
        None => (None, futures::future::Either::Right(std::future::pending())),
    };
    let webhook_router = admission::router(Arc::new(AdmissionState {
        defaults: AdmissionDefaults {
            service_type: config.default_service_type,
        },
        metrics: metrics.clone(),
        policies: policy_watch.clone().map(|lookup| PolicyHook {
            lookup,
            scope: config.policy_scope(),
        }),
    }));
    let webhook_listener = std::net::TcpListener::bind(config.webhook_addr)
        .map_err(|e| Error::Cluster(format!("cannot listen on --webhook-addr {}: {e}", config.webhook_addr)))?;
    let webhook = webhook::serve(webhook_listener, rustls_config.clone(), webhook_router);
    let reloader = {
        let rustls_config = rustls_config.clone();
        tls::watch(config.tls.clone(), config.tls_reload, move |new| {
            rustls_config.reload_from_config(new)
        })
    };
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
    let ctx = Arc::new(Context::new(local, peer, config, metrics.clone(), policy_watch));
    tokio::select! {
        served = admin::serve(listener, synced.clone(), needed, metrics) => {
            served.map_err(|e| Error::Cluster(format!("admin server stopped: {e}")))?;
        }
        served = webhook => {
            served.map_err(|e| Error::Cluster(format!("webhook server stopped: {e}")))?;
        }
        () = reloader => {}
        () = policy_cache => {}
        () = controller::run(ctx, synced) => {
            tracing::info!("volsync-dr stopped");
        }
    }
    Ok(())
}
