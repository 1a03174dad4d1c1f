//! One reconcile of one PVC: decide from what is observed now (never from the watch event), make
//! the clusters match, and report. Every step checks before it writes, so running it again, or
//! after a crash at any point, finishes the job without repeating a write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::actions;
use super::apply::{Outcome, delete_if_present, ensure, field_manager};
use super::context::Context;
use super::error::Error;
use super::finalizer;
use super::peer_side::{HANDED_OFF_RETRY, PeerSide, ensure_peer};
use super::report::{publish, report, write_status};
use crate::cluster::peer::PeerError;
use crate::model::action::{is_pending, refusal_for_role};
use crate::model::keys;
use crate::model::names::Names;
use crate::model::protection::ProtectionSpec;
use crate::model::role::{Role, State};
use crate::model::volsync::{ReplicationDestination, ReplicationSource};
use crate::plan::status::{StatusView, SyncTimes, clear_status_patch};
use crate::plan::{self, Psk};
use crate::steps::Progress;

/// How soon a PVC waiting for the destination's address is looked at again.
const PENDING_RETRY: Duration = Duration::from_secs(2);

pub async fn reconcile(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = pvc.namespace().ok_or(Error::Missing("namespace"))?;
    let name = pvc.name_any();
    let result = reconcile_inner(&pvc, &namespace, &name, &ctx).await;
    match &result {
        Ok(_) => {
            ctx.succeeded(&namespace, &name);
            ctx.metrics.reconcile("ok", "");
        }
        Err(e) => ctx.metrics.reconcile("error", e.reason()),
    }
    result
}

/// After an error: transient ones retry with a growing delay; the others wait for the PVC to change.
pub fn error_policy(pvc: Arc<PersistentVolumeClaim>, error: &Error, ctx: Arc<Context>) -> Action {
    let namespace = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    tracing::warn!(namespace, name, reason = error.reason(), error = %error, "reconcile failed");
    if error.is_transient() {
        Action::requeue(ctx.backoff(&namespace, &name))
    } else {
        Action::await_change()
    }
}

async fn reconcile_inner(
    pvc: &PersistentVolumeClaim,
    namespace: &str,
    name: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    if plan::protect::is_volsync_owned(pvc) {
        return Ok(Action::await_change());
    }
    // A DRPolicy writes its settings on the PVC first; the PVC comes back with them.
    if super::policy::apply_to(ctx, pvc).await? {
        return Ok(Action::await_change());
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.local.clone(), namespace);
    let fresh;
    let pvc = match current_view(pvc, &pvcs, name).await? {
        View::Cached => pvc,
        View::Fresh(current) => {
            fresh = *current;
            &fresh
        }
        View::Gone => return Ok(Action::await_change()),
    };
    let spec = match ProtectionSpec::parse(pvc.annotations()) {
        Ok(spec) => spec,
        Err(errors) => {
            // Leave everything as it is (no cleanup on a typo) until the annotations are fixed.
            publish(ctx, pvc, EventType::Warning, "InvalidAnnotation", &errors.to_string()).await;
            return Ok(Action::await_change());
        }
    };
    let deleting = pvc.metadata.deletion_timestamp.is_some();
    let annotations = pvc.annotations();
    let has_finalizer = pvc.finalizers().iter().any(|f| f == keys::FINALIZER);
    // What the webhook stamps on a protected primary: the watcher adds it when it was missed.
    let stamped = has_finalizer && pvc.labels().get(keys::PROTECTED_LABEL).map(String::as_str) == Some("true");
    // An action in flight owns the PVC and its objects, whatever the annotations say now
    // (its own steps change the role): protection waits until it has finished.
    if Progress::read(annotations).in_flight().is_some() {
        if !deleting {
            return actions::run(pvc, ctx).await;
        }
        actions::abandon(pvc, ctx).await?;
    }
    let pending = match &spec.action {
        Some(request)
            if !deleting
                && is_pending(
                    annotations.get(keys::ACTION).map(String::as_str),
                    annotations.get(keys::LAST_ACTION).map(String::as_str),
                ) =>
        {
            Some(request.clone())
        }
        _ => None,
    };
    let role = spec.role.unwrap_or(Role::Primary);
    if let Some(request) = &pending {
        let refusal = if spec.is_protected() {
            refusal_for_role(request.verb, role)
        } else {
            Some(format!("the PVC is not protected ({} is not \"true\")", keys::PROTECT))
        };
        if let Some(why) = refusal {
            return actions::refuse(pvc, ctx, &request.to_string(), &why).await;
        }
        if role == Role::Secondary || stamped {
            return actions::run(pvc, ctx).await;
        }
        // A primary gets its finalizer and label first (below); the action starts after.
    }
    if spec.role == Some(Role::Secondary) {
        if has_finalizer {
            // Left from when this side was primary: a secondary holds none (the primary drives
            // its cleanup), and it must not block the PVC's deletion.
            finalizer::release_finalizer(&pvcs, pvc)
                .await
                .map_err(Error::local("remove finalizer"))?;
            return Ok(Action::await_change());
        }
        return mirror_secondary(pvc, &pvcs, namespace, name, ctx).await;
    }
    tracing::debug!(namespace, name, protect = ?spec.protect, deleting, has_finalizer, "reconcile");
    if spec.is_protected() && !deleting {
        if !stamped {
            // The webhook was skipped (or is down): stamp what it would have. The write brings
            // the PVC back through the watch.
            finalizer::stamp(&pvcs, pvc)
                .await
                .map_err(Error::local("add finalizer and label"))?;
            return Ok(Action::await_change());
        }
        return protect(pvc, &pvcs, namespace, name, ctx).await;
    }
    if let (Some(request), false) = (&pending, has_finalizer) {
        let why = format!("the PVC is not protected ({} is not \"true\")", keys::PROTECT);
        return actions::refuse(pvc, ctx, &request.to_string(), &why).await;
    }
    if has_finalizer {
        release(pvc, &pvcs, namespace, name, ctx).await?;
    }
    Ok(Action::await_change())
}

/// No longer protected (or being deleted): protection removed on both clusters, then the PVC's
/// status and label cleared, and last the finalizer released (the write that ends it all).
async fn release(
    pvc: &PersistentVolumeClaim,
    pvcs: &Api<PersistentVolumeClaim>,
    namespace: &str,
    name: &str,
    ctx: &Context,
) -> Result<(), Error> {
    unprotect(pvc, namespace, name, ctx).await?;
    ctx.metrics.pvc_forget(namespace, name);
    tracing::debug!(namespace, name, "cleaned up both clusters");
    let deleting = pvc.metadata.deletion_timestamp.is_some();
    let has_label = pvc.labels().contains_key(keys::PROTECTED_LABEL);
    let clear = clear_status_patch(pvc.annotations());
    if !deleting && (has_label || clear.is_some()) {
        // No longer protected: the PVC stops showing volsync-dr's status and label.
        let mut patch = clear.unwrap_or_else(|| json!({"metadata": {}}));
        if has_label {
            patch["metadata"]["labels"] = json!({keys::PROTECTED_LABEL: null});
        }
        pvcs.patch(name, &field_manager(), &Patch::Merge(patch))
            .await
            .map_err(Error::local("clear status"))?;
    }
    finalizer::release_finalizer(pvcs, pvc)
        .await
        .map_err(Error::local("remove finalizer"))?;
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

/// The copy of the PVC a pass decides from.
enum View {
    /// The reflector's copy will do.
    Cached,
    /// Read just now.
    Fresh(Box<PersistentVolumeClaim>),
    /// Deleted since the copy was cached.
    Gone,
}

/// The watch can lag behind this process's own writes, so the cached copy may show a step of
/// an action that has moved on or finished. A step that creates, deletes or scales must work
/// from the current progress: when an action is pending or in flight, the PVC is read fresh.
async fn current_view(
    cached: &PersistentVolumeClaim,
    pvcs: &Api<PersistentVolumeClaim>,
    name: &str,
) -> Result<View, Error> {
    if !concerns_an_action(cached.annotations()) {
        return Ok(View::Cached);
    }
    Ok(match pvcs.get_opt(name).await.map_err(Error::local("read PVC"))? {
        Some(current) => View::Fresh(Box::new(current)),
        None => View::Gone,
    })
}

/// Whether these annotations show an action in flight or one requested and not yet finished.
fn concerns_an_action(annotations: &BTreeMap<String, String>) -> bool {
    Progress::read(annotations).in_flight().is_some()
        || is_pending(
            annotations.get(keys::ACTION).map(String::as_str),
            annotations.get(keys::LAST_ACTION).map(String::as_str),
        )
}

fn psk_of(secret: &Secret) -> Option<Psk> {
    let bytes = secret.data.as_ref()?.get(keys::PSK_KEY)?;
    Psk::parse(std::str::from_utf8(&bytes.0).ok()?)
}

fn new_psk() -> Result<Psk, Error> {
    let mut bytes = [0u8; plan::PSK_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(Psk::from_random_bytes(bytes))
}

fn peer_error(ctx: &Context) -> impl Fn(PeerError) -> Error + '_ {
    move |source| Error::Peer {
        peer: ctx.peer.name.clone(),
        source,
    }
}

async fn protect(
    pvc: &PersistentVolumeClaim,
    pvcs: &Api<PersistentVolumeClaim>,
    namespace: &str,
    name: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let names = Names::for_pvc(name);
    let local_secrets: Api<Secret> = Api::namespaced(ctx.local.clone(), namespace);
    let local_sources: Api<ReplicationSource> = Api::namespaced(ctx.local.clone(), namespace);

    // The pair's key: the one already here, else the peer's, else a new one. It is written here
    // first, so a crash before the peer has it reuses it instead of minting another.
    let local_key = local_secrets
        .get_opt(&names.secret)
        .await
        .map_err(Error::local("read Secret"))?;
    let peer_secrets: Api<Secret> = ctx.peer.namespaced(namespace);
    let peer_key = ctx.peer.call("read Secret", peer_secrets.get_opt(&names.secret)).await;
    let psk = match (
        local_key.as_ref().and_then(psk_of),
        peer_key.as_ref().ok().and_then(|s| s.as_ref()).and_then(psk_of),
    ) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => new_psk()?,
    };
    let protect_plan = match plan::protect(pvc, &ctx.config.instance(), &psk, None) {
        Ok(p) => p,
        Err(e) => {
            let error = Error::from(e);
            publish(ctx, pvc, EventType::Warning, error.reason(), &error.to_string()).await;
            report(pvc, pvcs, ctx, State::Degraded, SyncTimes::default(), None).await?;
            return Ok(Action::await_change());
        }
    };
    ensure(&local_secrets, &protect_plan.primary_secret)
        .await
        .map_err(Error::local("apply Secret"))?;

    let peer_side = async {
        peer_key?;
        ensure_peer(ctx, pvc, namespace, &protect_plan).await
    }
    .await;
    let (state, action, reason) = match peer_side {
        Ok(PeerSide::HandedOff(why)) => {
            report(pvc, pvcs, ctx, State::Degraded, SyncTimes::default(), Some(why)).await?;
            return Ok(Action::requeue(HANDED_OFF_RETRY));
        }
        Ok(PeerSide::Destination(Some(endpoint))) => {
            let with_source = plan::protect(pvc, &ctx.config.instance(), &psk, Some(&endpoint))?;
            if let Some(rs) = &with_source.replication_source {
                let outcome = ensure(&local_sources, rs)
                    .await
                    .map_err(Error::local("apply ReplicationSource"))?;
                if outcome == Outcome::Updated {
                    tracing::info!(namespace, name, endpoint = %format!("{}:{}", endpoint.address, endpoint.port), "ReplicationSource updated");
                }
            }
            (State::Protected, Action::requeue(ctx.config.resync), None)
        }
        Ok(PeerSide::Destination(None)) => (State::Pending, Action::requeue(PENDING_RETRY), None),
        Err(source) => {
            let error = Error::Peer {
                peer: ctx.peer.name.clone(),
                source,
            };
            let delay = ctx.backoff(namespace, name);
            (State::Degraded, Action::requeue(delay), Some(error))
        }
    };
    let source = local_sources
        .get_opt(&names.replication_source)
        .await
        .map_err(Error::local("read ReplicationSource"))?;
    let sync = source.as_ref().map(SyncTimes::from_source).unwrap_or_default();
    let failed_sync = source
        .as_ref()
        .and_then(|rs| rs.status.as_ref()?.latest_mover_status.as_ref()?.result.clone())
        .filter(|r| r == "Failed");
    let (state, reason) = match (state, reason, failed_sync) {
        (State::Protected, None, Some(_)) => {
            let logs = source
                .as_ref()
                .and_then(|rs| rs.status.as_ref()?.latest_mover_status.as_ref()?.logs.clone())
                .unwrap_or_default();
            (State::Degraded, Some(format!("the last sync failed: {logs}")))
        }
        (s, r, _) => (s, r.map(|e| e.to_string())),
    };
    report(pvc, pvcs, ctx, state, sync, reason).await?;
    if state == State::Degraded {
        return Ok(Action::requeue(ctx.backoff(namespace, name)));
    }
    Ok(action)
}

/// Remove what protection created: here first (the local side stops syncing even if the peer
/// is away), then on the peer. The counterpart PVC on the peer is kept: it holds the replica.
async fn unprotect(pvc: &PersistentVolumeClaim, namespace: &str, name: &str, ctx: &Context) -> Result<(), Error> {
    let names = Names::for_pvc(name);
    let sources: Api<ReplicationSource> = Api::namespaced(ctx.local.clone(), namespace);
    for rs in [&names.replication_source, &names.replication_source_latest] {
        delete_if_present(&sources, rs)
            .await
            .map_err(Error::local("delete ReplicationSource"))?;
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.local.clone(), namespace);
    delete_if_present(&secrets, &names.secret)
        .await
        .map_err(Error::local("delete Secret"))?;

    let rds: Api<ReplicationDestination> = ctx.peer.namespaced(namespace);
    ctx.peer
        .call(
            "delete ReplicationDestination",
            delete_if_present(&rds, &names.replication_destination),
        )
        .await
        .map_err(peer_error(ctx))?;
    let peer_secrets: Api<Secret> = ctx.peer.namespaced(namespace);
    ctx.peer
        .call("delete Secret", delete_if_present(&peer_secrets, &names.secret))
        .await
        .map_err(peer_error(ctx))?;
    let peer_pvcs: Api<PersistentVolumeClaim> = ctx.peer.namespaced(namespace);
    let counterpart = ctx
        .peer
        .call("read PVC", peer_pvcs.get_opt(name))
        .await
        .map_err(peer_error(ctx))?;
    if let Some(counterpart) = counterpart {
        let ours = counterpart.annotations().get(keys::ROLE).map(String::as_str) == Some(Role::Secondary.as_str());
        if ours {
            let mut annotations: BTreeMap<String, Value> = std::iter::once(keys::PROTECT)
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
                .await
                .map_err(peer_error(ctx))?;
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
async fn mirror_secondary(
    pvc: &PersistentVolumeClaim,
    pvcs: &Api<PersistentVolumeClaim>,
    namespace: &str,
    name: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let names = Names::for_pvc(name);
    let rds: Api<ReplicationDestination> = Api::namespaced(ctx.local.clone(), namespace);
    let rd = rds
        .get_opt(&names.replication_destination)
        .await
        .map_err(Error::local("read ReplicationDestination"))?;
    let state = if rd.as_ref().is_some_and(|rd| rd.published_address().is_some()) {
        State::Protected
    } else {
        State::Pending
    };
    let sync = rd.as_ref().map(SyncTimes::from_destination).unwrap_or_default();
    let view = StatusView {
        role: Role::Secondary,
        state,
        sync,
    };
    write_status(pvc, pvcs, ctx, &view, None).await?;
    Ok(Action::requeue(ctx.config.resync))
}
