//! One reconcile of one PVC: read it once into a [`PvcView`], decide what the pass does
//! (`plan::pass::decide`, pure), carry that out, and report. Every write checks before it
//! writes, so running a pass again, or after a crash at any point, finishes the job without
//! repeating a write.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::ResourceExt;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use super::actions;
use super::apply::{Outcome, delete_if_present, ensure, field_manager};
use super::cache::CachedPvc;
use super::context::Context;
use super::error::Error;
use super::finalizer;
use super::peer_side::{HANDED_OFF_RETRY, PeerSide, ensure_peer};
use super::report::{publish, report, write_status};
use crate::model::keys;
use crate::model::marks;
use crate::model::names::Names;
use crate::model::protection::ProtectionSpec;
use crate::model::role::{Role, State};
use crate::model::view::PvcView;
use crate::model::volsync::{ReplicationDestination, ReplicationSource};
use crate::plan::pass::{PassDecision, decide};
use crate::plan::status::{StatusView, SyncTimes, clear_status_patch};
use crate::plan::{self, Psk};

pub async fn reconcile(cached: Arc<CachedPvc>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (namespace, name) = (cached.namespace(), cached.name());
    if namespace.is_empty() {
        return Err(Error::Missing("namespace"));
    }
    let result = match cached.pvc() {
        Ok(pvc) => reconcile_inner(&pvc, &ctx).await,
        Err(e) => Err(Error::Cache(e)),
    };
    match &result {
        Ok(_) => {
            ctx.succeeded(namespace, name);
            ctx.metrics.reconcile("ok", "");
        }
        Err(e) => ctx.metrics.reconcile("error", e.reason()),
    }
    result
}

/// After an error: transient ones retry with a growing delay; the others wait for the PVC to
/// change. The first failure in a row is logged as a warning, the retries only at debug level
/// (the PVC's status and Event already say it), so an outage does not flood the log.
pub fn error_policy(cached: Arc<CachedPvc>, error: &Error, ctx: Arc<Context>) -> Action {
    let (namespace, name) = (cached.namespace(), cached.name());
    if !error.is_transient() {
        tracing::warn!(namespace, name, reason = error.reason(), error = %error, "reconcile failed");
        return Action::await_change();
    }
    let (delay, tries) = ctx.backoff_counted(namespace, name);
    if tries == 1 {
        tracing::warn!(namespace, name, reason = error.reason(), error = %error, retry_in = ?delay, "reconcile failed; retrying with backoff");
    } else {
        tracing::debug!(namespace, name, reason = error.reason(), error = %error, tries, retry_in = ?delay, "reconcile failed again");
    }
    Action::requeue(delay)
}

async fn reconcile_inner(cached: &PersistentVolumeClaim, ctx: &Context) -> Result<Action, Error> {
    if marks::is_volsync_owned(&cached.metadata) {
        return Ok(Action::await_change());
    }
    // A DRPolicy writes its settings on the PVC first; the PVC comes back with them.
    if super::policy::apply_to(ctx, cached).await? {
        return Ok(Action::await_change());
    }
    let Some((pvc, view)) = current_view(cached, ctx).await? else {
        return Ok(Action::await_change());
    };
    let decision = decide(&view);
    tracing::debug!(namespace = view.namespace, name = view.name, ?decision, "reconcile");
    carry_out(decision, &pvc, &view, ctx).await
}

/// The PVC this pass decides from, read into its view once. The watch can lag behind this
/// process's own writes, so the cached copy may show a step of an action that has moved on or
/// finished; a step that creates, deletes or scales must work from the current progress: when
/// an action is pending or in flight, the PVC is read fresh. `None`: deleted meanwhile.
async fn current_view<'a>(
    cached: &'a PersistentVolumeClaim,
    ctx: &Context,
) -> Result<Option<(Cow<'a, PersistentVolumeClaim>, PvcView)>, Error> {
    let view = PvcView::read(cached);
    if !view.concerns_an_action() {
        return Ok(Some((Cow::Borrowed(cached), view)));
    }
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(&view.namespace);
    let fresh = ctx.here.call("read PVC", pvcs.get_opt(&view.name)).await?;
    Ok(fresh.map(|pvc| {
        let view = PvcView::read(&pvc);
        (Cow::Owned(pvc), view)
    }))
}

async fn carry_out(
    decision: PassDecision,
    pvc: &PersistentVolumeClaim,
    view: &PvcView,
    ctx: &Context,
) -> Result<Action, Error> {
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(&view.namespace);
    match decision {
        PassDecision::Ignore | PassDecision::Nothing => Ok(Action::await_change()),
        PassDecision::ReportInvalid(errors) => {
            publish(ctx, pvc, EventType::Warning, "InvalidAnnotation", &errors).await;
            Ok(Action::await_change())
        }
        PassDecision::RunAction => actions::run(pvc, view, ctx).await,
        PassDecision::AbandonAction => actions::abandon(pvc, view, ctx).await,
        PassDecision::Refuse { request, why } => actions::refuse(pvc, view, ctx, &request, &why).await,
        PassDecision::HeldByGroup { leader, request } => {
            super::members::check_hold(pvc, view, ctx, &leader, &request).await
        }
        PassDecision::ReleaseSecondaryFinalizer => {
            let released = finalizer::release_finalizer(&pvcs, pvc);
            ctx.here.call("remove finalizer", released).await?;
            Ok(Action::await_change())
        }
        PassDecision::MirrorSecondary => mirror_secondary(pvc, view, ctx).await,
        PassDecision::Fenced => super::fence::keep(pvc, ctx).await,
        PassDecision::Stamp => {
            // The webhook was skipped (or is down): stamp what it would have. The write brings
            // the PVC back through the watch.
            ctx.here
                .call("add finalizer and label", finalizer::stamp(&pvcs, pvc))
                .await?;
            Ok(Action::await_change())
        }
        PassDecision::Protect => {
            let spec = view.spec.as_ref().map_err(|e| Error::Annotations(e.clone()))?;
            protect(pvc, spec, view, ctx).await
        }
        PassDecision::Release => {
            release(pvc, view, ctx).await?;
            Ok(Action::await_change())
        }
    }
}

/// No longer protected (or being deleted): protection removed on both clusters, then the PVC's
/// status and label cleared, and last the finalizer released (the write that ends it all).
async fn release(pvc: &PersistentVolumeClaim, view: &PvcView, ctx: &Context) -> Result<(), Error> {
    let (namespace, name) = (view.namespace.as_str(), view.name.as_str());
    unprotect(pvc, namespace, name, ctx).await?;
    ctx.metrics.pvc_forget(namespace, name);
    ctx.address_known(namespace, name);
    tracing::debug!(namespace, name, "cleaned up both clusters");
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(namespace);
    let has_label = pvc.labels().contains_key(keys::PROTECTED_LABEL);
    let clear = clear_status_patch(pvc.annotations());
    if !view.deleting && (has_label || clear.is_some()) {
        // No longer protected: the PVC stops showing volsync-dr's status and label.
        let mut patch = clear.unwrap_or_else(|| json!({"metadata": {}}));
        if has_label {
            patch["metadata"]["labels"] = json!({keys::PROTECTED_LABEL: null});
        }
        ctx.here
            .call("clear status", pvcs.patch(name, &field_manager(), &Patch::Merge(patch)))
            .await?;
    }
    ctx.here
        .call("remove finalizer", finalizer::release_finalizer(&pvcs, pvc))
        .await?;
    publish(
        ctx,
        pvc,
        EventType::Normal,
        "Unprotected",
        "protection removed on both clusters",
    )
    .await;
    Ok(())
}

pub(super) fn new_psk() -> Result<Psk, Error> {
    let mut bytes = [0u8; plan::PSK_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(Psk::from_random_bytes(bytes))
}

/// The pair's key: the one already here, else the peer's, else a new one. It is written here
/// first (by the caller), so a crash before the peer has it reuses it instead of minting
/// another. The peer's answer is returned too: unreachable, the pass is Degraded after the
/// local side is done.
async fn pair_key(ctx: &Context, namespace: &str, names: &Names) -> Result<PairKey, Error> {
    let local_secrets = ctx.here.api::<Secret>(namespace);
    let local_key = ctx
        .here
        .call("read Secret", local_secrets.get_opt(&names.secret))
        .await?;
    let peer_secrets = ctx.peer.api::<Secret>(namespace);
    let peer_key = ctx.peer.call("read Secret", peer_secrets.get_opt(&names.secret)).await;
    let made = local_key.as_ref().and_then(|s| plan::key_created(&s.metadata));
    if let Some(made) = made {
        ctx.metrics
            .key_created(namespace, &names.pvc, made.as_millisecond() as f64 / 1000.0);
    }
    let known = local_key
        .as_ref()
        .and_then(Psk::from_secret)
        .or_else(|| peer_key.as_ref().ok()?.as_ref().and_then(Psk::from_secret));
    let psk = match known {
        Some(psk) => psk,
        None => new_psk()?,
    };
    Ok(PairKey {
        psk,
        peer_answer: peer_key.map(|_| ()),
        made,
    })
}

/// The pair's key, whether the peer answered when asked for it, and when the key here was made.
struct PairKey {
    psk: Psk,
    peer_answer: Result<(), Error>,
    made: Option<jiff::Timestamp>,
}

/// `--rotate-keys-every`: request a rotation of a key past its age, where volsync-dr may write
/// the request (`plan::rotation`); else say once why not.
async fn rotate_if_due(pvc: &PersistentVolumeClaim, ctx: &Context, made: Option<jiff::Timestamp>) -> Result<(), Error> {
    let (namespace, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    let due =
        |annotations| plan::rotation::due(ctx.config.rotate_keys_every, annotations, made, jiff::Timestamp::now());
    match due(pvc.annotations()) {
        plan::rotation::Due::No => Ok(()),
        plan::rotation::Due::Request(_) => {
            // Decided again on the PVC as it is now, not as the cache had it: a request
            // written a moment ago is not written twice.
            let pvcs = ctx.here.api::<PersistentVolumeClaim>(&namespace);
            let Some(fresh) = ctx.here.call("read PVC", pvcs.get_opt(&name)).await? else {
                return Ok(());
            };
            let plan::rotation::Due::Request(request) = due(fresh.annotations()) else {
                return Ok(());
            };
            let patch = json!({"metadata": {"annotations": {keys::ACTION: request}}});
            ctx.here
                .call(
                    "request key rotation",
                    pvcs.patch(&name, &field_manager(), &Patch::Merge(patch)),
                )
                .await?;
            tracing::info!(
                namespace,
                name,
                request,
                "key older than --rotate-keys-every: rotation requested"
            );
            Ok(())
        }
        plan::rotation::Due::Blocked(why) => {
            if ctx.first_time(format!("rotation-blocked/{namespace}/{name}")) {
                publish(ctx, pvc, EventType::Warning, "KeyRotationDue", &why).await;
            }
            Ok(())
        }
    }
}

async fn protect(
    pvc: &PersistentVolumeClaim,
    spec: &ProtectionSpec,
    view: &PvcView,
    ctx: &Context,
) -> Result<Action, Error> {
    let (namespace, name) = (view.namespace.as_str(), view.name.as_str());
    let names = Names::for_pvc(name);
    let PairKey {
        psk,
        peer_answer,
        made: key_made,
    } = pair_key(ctx, namespace, &names).await?;
    let protect_plan = match plan::protect::protect_with(pvc, spec, &ctx.config.instance(), &psk, None) {
        Ok(p) => p,
        Err(e) => {
            let error = Error::from(e);
            publish(ctx, pvc, EventType::Warning, error.reason(), &error.to_string()).await;
            report(pvc, ctx, State::Degraded, SyncTimes::default(), None).await?;
            return Ok(Action::await_change());
        }
    };
    let local_secrets = ctx.here.api::<Secret>(namespace);
    ctx.here
        .call("apply Secret", ensure(&local_secrets, &protect_plan.primary_secret))
        .await?;
    let peer_side = match peer_answer {
        Ok(()) => ensure_peer(ctx, pvc, namespace, &protect_plan).await,
        Err(e) => Err(e),
    };
    let mut failure = None;
    let (state, action, reason) = match peer_side {
        Ok(PeerSide::HandedOff(why)) => {
            report(pvc, ctx, State::Degraded, SyncTimes::default(), Some(why)).await?;
            return Ok(Action::requeue(HANDED_OFF_RETRY));
        }
        Ok(PeerSide::FenceHere { generation, message }) => {
            return fence_stale(pvc, ctx, &ctx.here, generation, &message).await;
        }
        Ok(PeerSide::FencePeer { generation, message }) => {
            return fence_stale(pvc, ctx, &ctx.peer, generation, &message).await;
        }
        Ok(PeerSide::Destination(Some(endpoint))) => {
            ctx.address_known(namespace, name);
            let rs = protect_plan.scheduled_source(&endpoint);
            let sources = ctx.here.api::<ReplicationSource>(namespace);
            let outcome = ctx.here.call("apply ReplicationSource", ensure(&sources, &rs)).await?;
            if outcome == Outcome::Updated {
                tracing::info!(namespace, name, endpoint = %format!("{}:{}", endpoint.address, endpoint.port), "ReplicationSource updated");
            }
            (State::Protected, Action::requeue(ctx.config.resync), None)
        }
        Ok(PeerSide::Destination(None)) => {
            let retry = ctx.pending_retry(namespace, name);
            (State::Pending, Action::requeue(retry), None)
        }
        // The pass failed: said on the PVC, then returned as the error it is, so that it is
        // counted as one, and retried with a growing delay (`error_policy`).
        Err(error) => {
            let why = ctx.explain(&error);
            failure = Some(error);
            (State::Degraded, Action::await_change(), Some(why))
        }
    };
    let (state, sync, reason) = with_last_sync(ctx, namespace, &names, state, reason).await?;
    report(pvc, ctx, state, sync, reason).await?;
    if state == State::Protected {
        rotate_if_due(pvc, ctx, key_made).await?;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(action),
    }
}

/// Of two primaries, the copy on `stale` (this cluster or the peer) lost the takeover: fence it
/// (`--fence-on-return`), or, when fencing is off, say so on every look.
async fn fence_stale(
    pvc: &PersistentVolumeClaim,
    ctx: &Context,
    stale: &super::clusters::ClusterRef,
    generation: u64,
    message: &str,
) -> Result<Action, Error> {
    let (namespace, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    let here = stale.name == ctx.here.name;
    if !ctx.config.fence_on_return {
        let why = format!(
            "split brain: the copy on cluster {} is stale (the other took over in a failover, takeover generation \
             {generation}) and both say primary; automatic fencing is off (--fence-on-return=false): stop its \
             application yourself, then request failback on the cluster that took over",
            stale.name
        );
        publish(ctx, pvc, EventType::Warning, "NotFenced", &why).await;
        report(pvc, ctx, State::Degraded, SyncTimes::default(), Some(why)).await?;
        return Ok(Action::requeue(HANDED_OFF_RETRY));
    }
    if !super::fence::fence(ctx, stale, &namespace, &name, generation, message).await? {
        // Fenced already: the watch brings this side's mark back; the peer's is seen next look.
        return Ok(if here {
            Action::await_change()
        } else {
            Action::requeue(HANDED_OFF_RETRY)
        });
    }
    ctx.metrics.fenced(if here { "here" } else { "peer" });
    if here {
        // The mark brings the PVC back through the watch as fenced.
        publish(ctx, pvc, EventType::Warning, "Fenced", message).await;
        return Ok(Action::await_change());
    }
    let note = format!("the copy on cluster {} was fenced: {message}", stale.name);
    publish(ctx, pvc, EventType::Warning, "FencedPeer", &note).await;
    let why = format!(
        "the PVC on cluster {} is fenced (it was primary when this cluster took over); request failback here \
         (volsync-dr.io/action=failback:ID) to return the application there, nothing is replicated until then",
        stale.name
    );
    report(pvc, ctx, State::Degraded, SyncTimes::default(), Some(why)).await?;
    Ok(Action::requeue(HANDED_OFF_RETRY))
}

/// The scheduled sync's times, and Degraded with VolSync's log when its last sync failed.
async fn with_last_sync(
    ctx: &Context,
    namespace: &str,
    names: &Names,
    state: State,
    reason: Option<String>,
) -> Result<(State, SyncTimes, Option<String>), Error> {
    let sources = ctx.here.api::<ReplicationSource>(namespace);
    let source = ctx
        .here
        .call("read ReplicationSource", sources.get_opt(&names.replication_source))
        .await?;
    let sync = source.as_ref().map(SyncTimes::from_source).unwrap_or_default();
    let mover = source
        .as_ref()
        .and_then(|rs| rs.status.as_ref()?.sync.latest_mover_status.as_ref());
    let failed = mover.filter(|m| m.result.as_deref() == Some("Failed"));
    Ok(match (state, reason, failed) {
        (State::Protected, None, Some(mover)) => {
            let logs = mover.logs.clone().unwrap_or_default();
            (State::Degraded, sync, Some(format!("the last sync failed: {logs}")))
        }
        (state, reason, _) => (state, sync, reason),
    })
}

/// Remove what protection created: here first (the local side stops syncing even if the peer
/// is away), then on the peer. The counterpart PVC on the peer is kept: it holds the replica.
async fn unprotect(pvc: &PersistentVolumeClaim, namespace: &str, name: &str, ctx: &Context) -> Result<(), Error> {
    let names = Names::for_pvc(name);
    let sources = ctx.here.api::<ReplicationSource>(namespace);
    for rs in [&names.replication_source, &names.replication_source_latest] {
        ctx.here
            .call("delete ReplicationSource", delete_if_present(&sources, rs))
            .await?;
    }
    let secrets = ctx.here.api::<Secret>(namespace);
    ctx.here
        .call("delete Secret", delete_if_present(&secrets, &names.secret))
        .await?;
    // Restore points go with the protection, here first (a failover left them here).
    super::restore_points::remove_all(&ctx.here, namespace, &names).await?;

    let rds = ctx.peer.api::<ReplicationDestination>(namespace);
    ctx.peer
        .call(
            "delete ReplicationDestination",
            delete_if_present(&rds, &names.replication_destination),
        )
        .await?;
    let peer_secrets = ctx.peer.api::<Secret>(namespace);
    ctx.peer
        .call("delete Secret", delete_if_present(&peer_secrets, &names.secret))
        .await?;
    // Restore points go with the protection (a failover left them where it ran).
    super::restore_points::remove_all(&ctx.peer, namespace, &names).await?;
    let peer_pvcs = ctx.peer.api::<PersistentVolumeClaim>(namespace);
    let counterpart = ctx.peer.call("read PVC", peer_pvcs.get_opt(name)).await?;
    if let Some(counterpart) = counterpart {
        let ours = counterpart.annotations().get(keys::ROLE).map(String::as_str) == Some(Role::Secondary.as_str());
        if ours {
            let mut annotations: BTreeMap<String, Value> = [keys::PROTECT, keys::RESTORE_POINTS_KEPT]
                .into_iter()
                .chain(keys::SHOWN_STATUS.iter().copied())
                .map(|k| (k.to_string(), Value::Null))
                .collect();
            annotations.retain(|k, _| counterpart.annotations().contains_key(k));
            let patch = json!({"metadata": {"annotations": annotations, "labels": {keys::PROTECTED_LABEL: null}}});
            ctx.peer
                .call(
                    "release PVC",
                    peer_pvcs.patch(name, &field_manager(), &Patch::Merge(patch)),
                )
                .await?;
            publish(
                ctx,
                pvc,
                EventType::Normal,
                "CounterpartKept",
                &format!(
                    "the PVC {namespace}/{name} on cluster {} keeps the replica and is no longer managed; delete it there when it is not needed",
                    ctx.peer.name
                ),
            )
            .await;
        }
    }
    Ok(())
}

/// The secondary side: mirror the local RD's status onto the counterpart PVC.
async fn mirror_secondary(pvc: &PersistentVolumeClaim, view: &PvcView, ctx: &Context) -> Result<Action, Error> {
    let names = Names::for_pvc(&view.name);
    let rds = ctx.here.api::<ReplicationDestination>(&view.namespace);
    let rd = ctx
        .here
        .call(
            "read ReplicationDestination",
            rds.get_opt(&names.replication_destination),
        )
        .await?;
    super::restore_points::keep(pvc, rd.as_ref(), ctx).await?;
    let state = if rd.as_ref().is_some_and(|rd| rd.published_address().is_some()) {
        State::Protected
    } else {
        State::Pending
    };
    let sync = rd.as_ref().map(SyncTimes::from_destination).unwrap_or_default();
    let status = StatusView {
        role: Role::Secondary,
        state,
        sync,
    };
    write_status(pvc, ctx, &status, None).await?;
    Ok(Action::requeue(ctx.config.resync))
}
