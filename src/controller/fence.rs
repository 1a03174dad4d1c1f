//! Fencing a stale primary (decisions in `plan::fence`): its application scaled to 0 (the count
//! recorded), its syncs removed, then marked `role: fenced` with what happened and what to do.
//! In that order, so a crash half-way fences again on the next look; the mark is written last.
//! Either side does it: the returning cluster's own instance, or the one that took over when
//! the peer answers again.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::apply::{delete_if_present, field_manager};
use super::clusters::ClusterRef;
use super::context::Context;
use super::error::Error;
use super::report::{publish, write_status};
use super::workloads;
use crate::model::keys;
use crate::model::names::Names;
use crate::model::role::{Role, State};
use crate::model::volsync::ReplicationSource;
use crate::plan::status::{StatusView, SyncTimes};

/// The syncs of `pvc` on `on` removed: a fenced copy never pushes its data over the one that
/// took over.
async fn remove_syncs(on: &ClusterRef, namespace: &str, names: &Names) -> Result<(), Error> {
    let sources = on.api::<ReplicationSource>(namespace);
    for rs in [&names.replication_source, &names.replication_source_latest] {
        on.call("delete ReplicationSource", delete_if_present(&sources, rs))
            .await?;
    }
    Ok(())
}

/// Crash-test hook: stop half-way through fencing (application stopped, syncs not yet removed,
/// not marked) until the process is killed. Built only with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
async fn hold_if_asked(ctx: &Context) {
    if ctx.config.test_hold_at_step.as_deref() == Some("fence/remove-syncs") {
        tracing::warn!(
            step = "fence/remove-syncs",
            "test hook: holding half-way through fencing"
        );
        std::future::pending::<()>().await;
    }
}

#[cfg(not(feature = "test-hooks"))]
async fn hold_if_asked(_: &Context) {}

/// Fence the copy of `pvc` on `on` (this cluster or the peer). `false`: it is marked fenced
/// already (read fresh: a pass from a cache that lags the mark must not fence, count and say
/// it twice); a fence cut short before its mark is carried out again.
pub async fn fence(
    ctx: &Context,
    on: &ClusterRef,
    namespace: &str,
    pvc: &str,
    generation: u64,
    message: &str,
) -> Result<bool, Error> {
    let pvcs = on.api::<PersistentVolumeClaim>(namespace);
    let current = on.call("read PVC", pvcs.get_opt(pvc)).await?;
    if current.is_some_and(|p| p.annotations().get(keys::ROLE).map(String::as_str) == Some(Role::Fenced.as_str())) {
        return Ok(false);
    }
    let usage = workloads::usage(on, namespace, &[pvc.to_string()]).await?;
    for workload in &usage.workloads {
        if let Some(body) = workload.scale_down_patch() {
            workloads::patch(on, namespace, &workload.id, &body).await?;
            tracing::warn!(namespace, pvc, cluster = on.name, workload = %workload.id, replicas = workload.replicas, "fenced: scaled down");
        }
    }
    hold_if_asked(ctx).await;
    remove_syncs(on, namespace, &Names::for_pvc(pvc)).await?;
    let mark = json!({"metadata": {"annotations": {
        keys::ROLE: Role::Fenced.as_str(),
        keys::STATE: State::Degraded.as_str(),
        keys::FENCED: message,
    }}});
    on.call(
        "mark PVC fenced",
        pvcs.patch(pvc, &field_manager(), &Patch::Merge(mark)),
    )
    .await?;
    tracing::warn!(namespace, pvc, cluster = on.name, generation, "fenced a stale primary");
    Ok(true)
}

/// A fenced PVC here: its syncs stay removed, its status says so, and the first look of this
/// process says it in a Warning Event (the peer may have fenced it while this side was away).
pub async fn keep(pvc: &PersistentVolumeClaim, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    remove_syncs(&ctx.here, &namespace, &Names::for_pvc(&name)).await?;
    let message = pvc
        .annotations()
        .get(keys::FENCED)
        .cloned()
        .unwrap_or_else(|| "fenced: the peer took over in a failover; request failback on the peer".into());
    if ctx.first_time(format!("fenced {namespace}/{name} {message}")) {
        publish(ctx, pvc, EventType::Warning, "Fenced", &message).await;
    }
    let view = StatusView {
        role: Role::Fenced,
        state: State::Degraded,
        sync: SyncTimes::default(),
    };
    write_status(pvc, ctx, &view, None).await?;
    Ok(Action::await_change())
}
