//! `volsync-dr run`: wiring only. Validate the configuration, connect to both clusters, serve
//! the admin port, run the controllers until SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::startup;
use crate::admission::{self, AdmissionState, PolicyHook, decide::AdmissionDefaults};
use crate::cli::RunArgs;
use crate::cluster::{self, leader::Leadership, peer::Peer};
use crate::config::RunConfig;
use crate::controller::{self, context::Context};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::server::{admin, tls, webhook};
use crate::telemetry;

pub async fn run(args: &RunArgs) -> Result<()> {
    let config = RunConfig::from_args(args).map_err(|e| Error::Flag(e.to_string()))?;
    telemetry::init(config.log_format);
    // Everything a start needs is checked before anything binds or acts, each failure one line:
    // the files first, then this cluster.
    let peer = Peer::connect(&config.peer_name, &config.peer_kubeconfig, config.peer_timeout)
        .await
        .map_err(|e| Error::Cluster(e.to_string()))?;
    let tls_config = tls::load(&config.tls).map_err(|e| {
        Error::Cluster(format!(
            "the webhook's {e}: mount the Secret volsync-dr-webhook-tls there (--tls-cert-file, --tls-key-file), or \
             make a pair with volsync-dr certs --out-dir DIR"
        ))
    })?;
    startup::check_certificate(&config.tls.cert)?;
    let local = startup::connect_local().await?;
    startup::check_local(&local, &config).await?;
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(tls_config);
    let metrics = Arc::new(Metrics::new());
    metrics.set_cluster(&config.cluster_name, &config.peer_name);
    let policies = cluster::policies::start(local.clone(), config.peer_name.clone()).await;
    let (policy_watch, policy_cache) = match policies {
        Some((watch, cache)) => (Some(watch), futures::future::Either::Left(cache)),
        None => (None, futures::future::Either::Right(std::future::pending())),
    };
    let webhook_router = admission_router(&config, &metrics, policy_watch.clone(), &local);
    let webhook_listener = std::net::TcpListener::bind(config.webhook_addr).map_err(|e| {
        Error::Cluster(taken(
            "--webhook-addr",
            "VOLSYNC_DR_WEBHOOK_ADDR",
            config.webhook_addr,
            &e,
        ))
    })?;
    let webhook_handle = axum_server::Handle::new();
    let webhook = webhook::serve(
        webhook_listener,
        rustls_config.clone(),
        webhook_router,
        webhook_handle.clone(),
    );
    let reloader = {
        let rustls_config = rustls_config.clone();
        tls::watch(config.tls.clone(), config.tls_reload, move |new| {
            rustls_config.reload_from_config(new)
        })
    };
    let listener = admin::bind(config.admin_addr)
        .await
        .map_err(|e| Error::Cluster(taken("--admin-addr", "VOLSYNC_DR_ADMIN_ADDR", config.admin_addr, &e)))?;
    tracing::info!(
        cluster = %config.cluster_name,
        peer = %config.peer_name,
        namespaces = ?config.namespaces,
        admin = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "volsync-dr starting"
    );
    let synced = Arc::new(AtomicUsize::new(0));
    let needed = config.namespaces.len().max(1);
    let leadership = elect(&local, &config).await?;
    let leading = Arc::new(AtomicBool::new(false));
    let local_answers = Arc::new(AtomicBool::new(true));
    let local_probe = probe_local(local.clone(), local_answers.clone());
    let ctx = Arc::new(Context::new(local, peer, config, metrics.clone(), policy_watch));
    let (stop_tx, stop) = watch::channel(false);
    let signals = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: the webhook drains, the watcher finishes what it is doing");
        webhook_handle.graceful_shutdown(Some(WEBHOOK_DRAIN));
        let _ = stop_tx.send(true);
    };
    let probe = probe_peer(ctx.clone());
    let watcher = {
        let (synced, leading) = (synced.clone(), leading.clone());
        async move {
            if let Some(leadership) = watch_while_leading(ctx, synced, leading, leadership, stop).await {
                leadership.release(LEASE_RELEASE_TIMEOUT).await;
            }
        }
    };
    let readiness = admin::Readiness {
        synced,
        needed,
        leading,
        local_answers,
        metrics,
    };
    let admin = admin::serve(listener, readiness);
    tokio::select! {
        served = admin => {
            served.map_err(|e| Error::Cluster(format!("admin server stopped: {e}")))?;
        }
        () = reloader => {}
        () = policy_cache => {}
        () = probe => {}
        () = local_probe => {}
        (served, (), ()) = async { tokio::join!(webhook, watcher, signals) } => {
            served.map_err(|e| Error::Cluster(format!("webhook server stopped: {e}")))?;
            tracing::info!("volsync-dr stopped");
        }
    }
    Ok(())
}

/// A listening address that cannot be had, and what to do.
fn taken(flag: &str, env: &str, addr: std::net::SocketAddr, e: &std::io::Error) -> String {
    let advice = if e.kind() == std::io::ErrorKind::AddrInUse {
        "another process listens there: stop it, or choose another address"
    } else {
        "choose an address this host has and this user may bind"
    };
    format!("cannot listen on {flag} {addr}: {e}; {advice} ({flag}, {env})")
}

/// Each list the webhook makes for a newly requested action (three at most, well within the
/// API server's 10 s webhook timeout).
const GROUP_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn admission_router(
    config: &RunConfig,
    metrics: &Arc<Metrics>,
    policies: Option<Arc<cluster::policies::PolicyWatch>>,
    local: &kube::Client,
) -> axum::Router {
    admission::router(Arc::new(AdmissionState {
        defaults: AdmissionDefaults {
            service_type: config.default_service_type,
        },
        metrics: metrics.clone(),
        policies: policies.map(|lookup| PolicyHook {
            lookup,
            scope: config.policy_scope(),
        }),
        groups: Some(Arc::new(cluster::groups::LiveGroups {
            client: local.clone(),
            timeout: GROUP_READ_TIMEOUT,
        })),
    }))
}

/// Join the leader election when it is on (`None`: a single replica, always leading).
async fn elect(local: &kube::Client, config: &RunConfig) -> Result<Option<Leadership>> {
    let Some(leader) = &config.leader else {
        return Ok(None);
    };
    let leadership = Leadership::start(local.clone(), &config.own_namespace, leader)
        .await
        .map_err(|e| {
            Error::Cluster(format!(
                "leader election on Lease {}/{}: {e}",
                config.own_namespace, leader.lease_name
            ))
        })?;
    Ok(Some(leadership))
}

/// Probe the peer's API server forever, for `volsync_dr_peer_reachable` and to look at every
/// PVC again when it answers again. A change is logged once, not on every probe.
async fn probe_peer(ctx: Arc<Context>) {
    let mut was = true;
    loop {
        let reachable = ctx.peer.reachable().await;
        ctx.metrics.set_peer_reachable(reachable);
        // An outage shorter than the probe interval is seen by the calls that failed in it.
        let outage_ended = ctx.peer_answered(reachable);
        if was && !reachable {
            tracing::warn!(
                peer = ctx.peer.name,
                "the peer cluster does not answer; every PVC is looked at now, and its side retried with backoff"
            );
            ctx.peer_changed.send_modify(|changes| *changes += 1);
        }
        if reachable && (!was || outage_ended) {
            tracing::info!(
                peer = ctx.peer.name,
                "the peer cluster answers again; every PVC is looked at now"
            );
            ctx.peer_changed.send_modify(|changes| *changes += 1);
        }
        was = reachable;
        tokio::time::sleep(PEER_PROBE_INTERVAL).await;
    }
}

/// Probe this cluster's API server forever: `/readyz` says not ready while it does not answer
/// (liveness does not depend on it). A change is logged once.
async fn probe_local(client: kube::Client, answers: Arc<AtomicBool>) {
    loop {
        let answered = matches!(
            tokio::time::timeout(LOCAL_PROBE_TIMEOUT, client.apiserver_version()).await,
            Ok(Ok(_))
        );
        match (answers.swap(answered, std::sync::atomic::Ordering::SeqCst), answered) {
            (true, false) => tracing::warn!("this cluster's API server does not answer; /readyz says not ready"),
            (false, true) => tracing::info!("this cluster's API server answers again"),
            _ => {}
        }
        // Down, it is probed every second, so readiness returns within a second or so of the
        // API server (a probe caught mid-restart can still take its whole timeout).
        tokio::time::sleep(if answered {
            LOCAL_PROBE_INTERVAL
        } else {
            LOCAL_PROBE_RETRY
        })
        .await;
    }
}

/// How often, and how patiently, this cluster's API server is probed for `/readyz`.
const LOCAL_PROBE_INTERVAL: Duration = Duration::from_secs(5);
const LOCAL_PROBE_RETRY: Duration = Duration::from_secs(1);
const LOCAL_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the peer's API server is probed for `volsync_dr_peer_reachable`.
const PEER_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// Longest the webhook waits for requests in flight at shutdown.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(10);
/// Longest a stopping leader waits to hand its Lease over.
const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Run the watcher while this replica leads (always, without leader election) until `stop`.
/// Returns the leadership, to be released.
async fn watch_while_leading(
    ctx: Arc<Context>,
    synced: Arc<AtomicUsize>,
    leading: Arc<AtomicBool>,
    leadership: Option<Leadership>,
    mut stop: watch::Receiver<bool>,
) -> Option<Leadership> {
    let Some(mut leadership) = leadership else {
        leading.store(true, Ordering::SeqCst);
        ctx.metrics.set_leader(true);
        controller::run(ctx, synced, stop).await;
        return None;
    };
    loop {
        tokio::select! {
            acquired = leadership.acquired() => if !acquired { return Some(leadership) },
            _ = stop.wait_for(|s| *s) => return Some(leadership),
        }
        tracing::info!("this replica holds the lease: the watcher starts");
        leading.store(true, Ordering::SeqCst);
        ctx.metrics.set_leader(true);
        tokio::select! {
            () = controller::run(ctx.clone(), synced.clone(), stop.clone()) => return Some(leadership),
            () = leadership.lost() => {
                // Dropping the watcher mid-step is a crash as far as any action is concerned:
                // every step is recorded before it acts, and the next leader resumes it.
                tracing::warn!("this replica lost the lease: the watcher stops");
                leading.store(false, Ordering::SeqCst);
                synced.store(0, Ordering::SeqCst);
                ctx.metrics.set_leader(false);
            }
        }
    }
}
