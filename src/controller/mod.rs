//! The protection watcher: kube-runtime Controllers over PVCs (one per watched namespace, or one
//! for all), woken also by changes of the ReplicationSources and ReplicationDestinations it
//! manages here, so VolSync's status reaches the PVC without waiting for a resync. The PVCs are
//! cached in a compact form ([`cache::CachedPvc`]), so watching 10,000 stays small.

pub mod actions;
pub mod apply;
pub mod cache;
pub mod clusters;
pub mod context;
pub mod error;
pub mod execute;
pub mod fence;
pub mod finalizer;
pub mod members;
pub mod namespaces;
pub mod peer_side;
pub mod policy;
pub mod reconcile;
pub mod report;
pub mod restore_points;
pub mod workloads;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::model::keys;
use crate::model::volsync::{ReplicationDestination, ReplicationSource};
use cache::CachedPvc;
use context::Context;

/// The PVC an object was created for, from the full name it carries.
fn owner_pvc<K: Resource>(object: K) -> Option<ObjectRef<CachedPvc>> {
    let namespace = object.meta().namespace.clone()?;
    let pvc = object.annotations().get(keys::PVC_NAME)?.clone();
    Some(ObjectRef::new(&pvc).within(&namespace))
}

/// Yields once each time the peer's reachability changes (`Context::peer_changed`); changes
/// counted while one is being handled make one more look, not one each.
fn peer_changes(receiver: tokio::sync::watch::Receiver<u64>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        receiver.borrow_and_update();
        Some(((), receiver))
    })
}

/// Run until `stop` turns true; reconciles in flight finish first. `synced` counts the
/// controllers whose PVC cache is warm.
pub async fn run(ctx: Arc<Context>, synced: Arc<AtomicUsize>, stop: tokio::sync::watch::Receiver<bool>) {
    let scopes: Vec<Option<String>> = if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.namespaces.iter().cloned().map(Some).collect()
    };
    let managed = watcher::Config::default().labels(&crate::model::names::managed_selector());
    let config = controller::Config::default().concurrency(ctx.config.concurrency);
    let mut stores = Vec::new();
    let runs: Vec<_> = scopes
        .into_iter()
        .map(|scope| {
            let client = ctx.here.client();
            let (pvcs, sources, destinations): (Api<CachedPvc>, Api<ReplicationSource>, Api<ReplicationDestination>) =
                match &scope {
                    Some(ns) => (
                        Api::namespaced(client.clone(), ns),
                        Api::namespaced(client.clone(), ns),
                        Api::namespaced(client, ns),
                    ),
                    None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client)),
                };
            let controller = Controller::new(pvcs, watcher::Config::default())
                .with_config(config.clone())
                .reconcile_all_on(peer_changes(ctx.peer_changed.subscribe()))
                .watches(sources, managed.clone(), owner_pvc)
                .watches(destinations, managed.clone(), owner_pvc)
                .graceful_shutdown_on({
                    let mut stop = stop.clone();
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    }
                });
            let store = controller.store();
            stores.push(store.clone());
            let synced = synced.clone();
            let ctx = ctx.clone();
            async move {
                let ready = async move {
                    if store.wait_until_ready().await.is_ok() {
                        synced.fetch_add(1, Ordering::SeqCst);
                    }
                };
                let work = controller
                    .run(reconcile::reconcile, reconcile::error_policy, ctx)
                    .for_each(|result| async move {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "controller event");
                        }
                    });
                tokio::join!(ready, work);
            }
        })
        .collect();
    // Namespace-level requests (`volsync-dr.io/action` on a Namespace).
    let namespaces = Controller::new(Api::<Namespace>::all(ctx.here.client()), watcher::Config::default())
        .with_config(config)
        .graceful_shutdown_on({
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        })
        .run(namespaces::reconcile, namespaces::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "namespace controller event");
            }
        });
    // The sweep ends with the process; the controllers end on the shutdown signal.
    tokio::select! {
        _ = async { tokio::join!(futures::future::join_all(runs), namespaces) } => {}
        () = policy::sweep_forever(ctx.clone(), stores) => {}
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};

    use super::peer_changes;

    #[test]
    fn each_change_of_the_peer_triggers_one_look() {
        let (sender, receiver) = tokio::sync::watch::channel(0u64);
        let returns = peer_changes(receiver);
        futures::pin_mut!(returns);
        assert_eq!(returns.next().now_or_never(), None, "nothing before a return");
        sender.send_modify(|n| *n += 1);
        assert_eq!(returns.next().now_or_never(), Some(Some(())), "a return");
        assert_eq!(returns.next().now_or_never(), None, "once");
        // Two returns counted before the stream looks: one more look.
        sender.send_modify(|n| *n += 1);
        sender.send_modify(|n| *n += 1);
        assert_eq!(returns.next().now_or_never(), Some(Some(())));
        assert_eq!(returns.next().now_or_never(), None);
        drop(sender);
        assert_eq!(returns.next().now_or_never(), Some(None), "ends with the sender");
    }
}
