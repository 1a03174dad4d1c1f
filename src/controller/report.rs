//! What a reconcile reports: status annotations on the PVC, written only when they change,
//! and Events (one per state transition, step and failure).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::Patch;
use kube::runtime::events::{Event, EventType};

use super::apply::field_manager;
use super::context::Context;
use super::error::Error;
use crate::model::keys;
use crate::model::role::{Role, State};
use crate::plan::status::{StatusView, SyncTimes, status_patch};

pub(super) async fn report(
    pvc: &PersistentVolumeClaim,
    ctx: &Context,
    state: State,
    sync: SyncTimes,
    reason: Option<String>,
) -> Result<(), Error> {
    let view = StatusView {
        role: Role::Primary,
        state,
        sync,
    };
    write_status(pvc, ctx, &view, reason).await
}

/// Write status annotations only when they change, with an Event for each state transition
/// and each failure.
pub(super) async fn write_status(
    pvc: &PersistentVolumeClaim,
    ctx: &Context,
    view: &StatusView,
    reason: Option<String>,
) -> Result<(), Error> {
    let name = pvc.name_any();
    let last_sync = view
        .sync
        .last_sync_time
        .as_deref()
        .or(pvc.annotations().get(keys::LAST_SYNC_TIME).map(String::as_str))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    ctx.metrics.pvc_status(
        &pvc.namespace().unwrap_or_default(),
        &name,
        crate::metrics::PvcStatus {
            role: view.role.as_str().to_string(),
            state: view.state.as_str().to_string(),
            last_sync: last_sync.map(|t| t.as_millisecond() as f64 / 1000.0),
            rpo_target: crate::plan::status::rpo_target(pvc.annotations()).map(|d| d.as_secs_f64()),
        },
    );
    if let Some(patch) = status_patch(pvc.annotations(), view) {
        let pvcs = ctx
            .here
            .api::<PersistentVolumeClaim>(&pvc.namespace().unwrap_or_default());
        ctx.here
            .call(
                "write status",
                pvcs.patch(&name, &field_manager(), &Patch::Merge(patch)),
            )
            .await?;
    }
    let before = pvc.annotations().get(keys::STATE).and_then(|s| State::parse(s));
    let namespace = pvc.namespace().unwrap_or_default();
    // A reason is said when it changes, not on every retry of the same problem.
    let said = ctx.reason_changed(&namespace, &name, reason.as_deref());
    if let Some(reason) = &reason {
        if said || before != Some(view.state) {
            publish(ctx, pvc, EventType::Warning, "Degraded", reason).await;
        }
    } else if before != Some(view.state) {
        let note = match view.state {
            State::Pending => "waiting for the replication objects and the destination's address".to_string(),
            State::Protected => format!("replicating to cluster {}", ctx.peer.name),
            State::Degraded => "degraded".to_string(),
        };
        publish(ctx, pvc, EventType::Normal, view.state.as_str(), &note).await;
    }
    Ok(())
}

/// Publish an Event on the PVC. An Event that cannot be written is logged, not fatal.
pub(super) async fn publish(ctx: &Context, pvc: &PersistentVolumeClaim, type_: EventType, reason: &str, note: &str) {
    publish_as(ctx, pvc, type_, reason, "Reconcile", note).await
}

/// Publish an Event on the PVC (or Namespace) whose `action` says what it is about. The recorder
/// folds an Event with the same reason and action on the same object (within minutes) into the first one's series, keeping
/// the first note: each request and each of its steps gets its own action, so its note shows.
pub(super) async fn publish_as<K: kube::Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        // The API server accepts at most 128 characters.
        action: action.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(reason, error = %e, "cannot publish Event");
    }
}
