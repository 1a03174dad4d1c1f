//! Namespace-level requests: `volsync-dr.io/action=VERB:ID` on a Namespace asks every
//! application group in it (decisions in `plan::namespace`). The Namespace records what it
//! started before asking any PVC, so a restart resumes; each group's action runs from its
//! leader PVC like any group action, and the Namespace shows their progress and outcome.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::apply::field_manager;
use super::context::Context;
use super::error::Error;
use super::report::publish_as;
use super::workloads::NamespaceVolumes;
use crate::model::action::{ActionRequest, is_pending};
use crate::model::keys;
use crate::model::progress::Phase;
use crate::model::view::PvcView;
use crate::plan::namespace::{Group, LeaderState, Start, progress, start};

/// How often a running namespace request looks at its groups.
const POLL: Duration = Duration::from_secs(1);

fn annotation<'a>(ns: &'a Namespace, key: &str) -> Option<&'a str> {
    ns.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

async fn annotate(ctx: &Context, ns: &Namespace, annotations: Value) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(ctx.here.client());
    ctx.here
        .call(
            "record namespace request",
            api.patch(
                &ns.name_any(),
                &field_manager(),
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
            ),
        )
        .await?;
    Ok(())
}

async fn finish(ctx: &Context, ns: &Namespace, request: &str, phase: Phase, message: &str) -> Result<Action, Error> {
    annotate(
        ctx,
        ns,
        json!({
            keys::LAST_ACTION: request,
            keys::ACTION_PHASE: phase.as_str(),
            keys::ACTION_MESSAGE: message,
            keys::ACTION_RUNNING: null,
            keys::ACTION_GROUPS: null,
            keys::ACTION_SKIPPED: null,
        }),
    )
    .await?;
    let (type_, reason) = match phase {
        Phase::Succeeded => (EventType::Normal, "ActionSucceeded"),
        _ => (EventType::Warning, "ActionFailed"),
    };
    publish_as(ctx, ns, type_, reason, request, message).await;
    tracing::info!(
        namespace = ns.name_any(),
        request,
        outcome = phase.as_str(),
        message,
        "namespace request finished"
    );
    Ok(Action::await_change())
}

/// The PVC `leader` carries `request`: asked (merge patch of `action`) unless it already does
/// or has finished it.
async fn ask(ctx: &Context, namespace: &str, leader: &PersistentVolumeClaim, request: &str) -> Result<(), Error> {
    let annotations = leader.annotations();
    let asked = annotations.get(keys::ACTION).map(String::as_str) == Some(request)
        || annotations.get(keys::LAST_ACTION).map(String::as_str) == Some(request);
    if asked {
        return Ok(());
    }
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(namespace);
    let patch = json!({"metadata": {"annotations": {keys::ACTION: request}}});
    ctx.here
        .call(
            "ask a group's leader PVC",
            pvcs.patch(&leader.name_any(), &field_manager(), &Patch::Merge(&patch)),
        )
        .await?;
    Ok(())
}

pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    if !ctx.config.namespaces.is_empty() && !ctx.config.namespaces.contains(&name) {
        return Ok(Action::await_change());
    }
    if let Some(request) = annotation(&ns, keys::ACTION_RUNNING) {
        return follow(&ns, &ctx, request).await;
    }
    let action = annotation(&ns, keys::ACTION);
    match action.filter(|_| is_pending(action, annotation(&ns, keys::LAST_ACTION))) {
        Some(request) => begin(&ns, &ctx, request).await,
        None => Ok(Action::await_change()),
    }
}

/// Start a pending request: record which leaders run it, then ask each.
async fn begin(ns: &Namespace, ctx: &Context, request: &str) -> Result<Action, Error> {
    let name = ns.name_any();
    let verb = match request.parse::<ActionRequest>() {
        Ok(parsed) => parsed.verb,
        Err(e) => {
            let message = format!("the request {request:?} cannot be read ({e}); nothing was done");
            return finish(ctx, ns, request, Phase::Failed, &message).await;
        }
    };
    let volumes = NamespaceVolumes::read(&ctx.here, &name).await?;
    let groups: Vec<Group> = volumes
        .protected_groups()
        .into_iter()
        .filter_map(|members| {
            let leader = volumes.pvcs.iter().find(|p| members.first() == Some(&p.name_any()))?;
            Some(Group {
                leader: PvcView::read(leader),
                members,
            })
        })
        .collect();
    let (leaders, skipped) = match start(verb, request, &groups) {
        Start::Refuse(why) => {
            let message = format!("refused: {why}; nothing was changed");
            return finish(ctx, ns, request, Phase::Failed, &message).await;
        }
        Start::Run { leaders, skipped } => (leaders, skipped.join("; ")),
    };
    annotate(
        ctx,
        ns,
        json!({
            keys::ACTION_RUNNING: request,
            keys::ACTION_PHASE: Phase::Running.as_str(),
            keys::ACTION_GROUPS: leaders.join(","),
            keys::ACTION_SKIPPED: skipped,
            keys::ACTION_MESSAGE: format!("{request} starts for {} application(s)", leaders.len()),
        }),
    )
    .await?;
    let note = format!(
        "{request}: started for the groups led by PVC {}{}",
        leaders.join(", "),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; skipped: {skipped}")
        }
    );
    publish_as(ctx, ns, EventType::Normal, "ActionStarted", request, &note).await;
    tracing::info!(
        namespace = name,
        request,
        leaders = leaders.join(","),
        "namespace request started"
    );
    Ok(Action::requeue(Duration::from_millis(10)))
}

/// A running request: every leader asked (again, after a restart), their progress shown, and
/// the outcome recorded once all have finished.
async fn follow(ns: &Namespace, ctx: &Context, request: &str) -> Result<Action, Error> {
    let name = ns.name_any();
    let leaders: Vec<&str> = annotation(ns, keys::ACTION_GROUPS)
        .unwrap_or_default()
        .split(',')
        .filter(|l| !l.is_empty())
        .collect();
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(&name);
    let mut states = Vec::with_capacity(leaders.len());
    for leader in leaders {
        let Some(pvc) = ctx.here.call("read a group's leader PVC", pvcs.get_opt(leader)).await? else {
            states.push(LeaderState {
                name: leader.to_string(),
                outcome: Some((Phase::Failed, "the PVC was deleted".into())),
                step: None,
            });
            continue;
        };
        ask(ctx, &name, &pvc, request).await?;
        let a = pvc.annotations();
        states.push(LeaderState::of(
            &PvcView::read(&pvc),
            request,
            a.get(keys::LAST_ACTION).map(String::as_str),
            a.get(keys::ACTION_MESSAGE).map(String::as_str),
        ));
    }
    let skipped = annotation(ns, keys::ACTION_SKIPPED).unwrap_or_default();
    let (phase, message) = progress(request, &states, skipped);
    if phase != Phase::Running {
        return finish(ctx, ns, request, phase, &message).await;
    }
    if annotation(ns, keys::ACTION_MESSAGE) != Some(message.as_str()) {
        annotate(ctx, ns, json!({keys::ACTION_MESSAGE: message})).await?;
    }
    Ok(Action::requeue(POLL))
}

pub fn error_policy(ns: Arc<Namespace>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(namespace = ns.name_any(), error = %error, reason = error.reason(), "namespace request pass failed");
    Action::requeue(Duration::from_secs(5))
}
