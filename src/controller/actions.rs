//! Executes the action step machines (`steps`): reads where an action stands from the PVC,
//! performs one step's effect, persists the step before returning, and so resumes after a
//! restart. Every step is checked against the clusters first (no destructive step twice) and
//! bounded by a timeout recorded on the PVC.

use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::{Map, Value, json};

use super::apply::{delete_if_present, ensure};
use super::context::Context;
use super::error::Error;
use super::reconcile::publish;
use crate::model::action::{ActionRequest, Verb};
use crate::model::keys;
use crate::model::names::Names;
use crate::model::volsync::ReplicationSource;
use crate::plan::action::one_time_source;
use crate::steps::sync_now::{self, OneTimeSource, Step};
use crate::steps::{Phase, Progress, Transition, timed_out};

/// How soon a running action looks again.
const POLL: Duration = Duration::from_secs(1);

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Write action annotations (None removes one), with the field manager.
async fn record(pvcs: &Api<PersistentVolumeClaim>, name: &str, fields: &[(&str, Option<String>)]) -> Result<(), Error> {
    let annotations: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone().map_or(Value::Null, Value::String)))
        .collect();
    let params = PatchParams {
        field_manager: Some(keys::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    pvcs.patch(
        name,
        &params,
        &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
    )
    .await
    .map_err(Error::local("record action progress"))?;
    Ok(())
}

/// Finish the request: `last-action` set, so it does not run again until its ID changes.
async fn finish(
    pvc: &PersistentVolumeClaim,
    pvcs: &Api<PersistentVolumeClaim>,
    ctx: &Context,
    text: &str,
    phase: Phase,
    message: &str,
) -> Result<Action, Error> {
    record(
        pvcs,
        &pvc.name_any(),
        &[
            (keys::LAST_ACTION, Some(text.to_string())),
            (keys::ACTION_PHASE, Some(phase.as_str().to_string())),
            (keys::ACTION_MESSAGE, Some(message.to_string())),
            (keys::ACTION_STEP, None),
            (keys::ACTION_STEP_STARTED, None),
        ],
    )
    .await?;
    let (type_, reason) = match phase {
        Phase::Failed => (EventType::Warning, "ActionFailed"),
        _ => (EventType::Normal, "ActionSucceeded"),
    };
    publish(ctx, pvc, type_, reason, &format!("{text}: {message}")).await;
    Ok(Action::await_change())
}

/// Refuse a request without changing anything on the clusters.
pub async fn refuse(pvc: &PersistentVolumeClaim, ctx: &Context, text: &str, why: &str) -> Result<Action, Error> {
    let namespace = pvc.namespace().ok_or(Error::Missing("namespace"))?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.local.clone(), &namespace);
    finish(
        pvc,
        &pvcs,
        ctx,
        text,
        Phase::Failed,
        &format!("refused: {why}; nothing was changed"),
    )
    .await
}

/// Run (or resume) the pending request on a protected primary.
pub async fn run(pvc: &PersistentVolumeClaim, request: &ActionRequest, ctx: &Context) -> Result<Action, Error> {
    let namespace = pvc.namespace().ok_or(Error::Missing("namespace"))?;
    let name = pvc.name_any();
    let text = request.to_string();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.local.clone(), &namespace);
    if request.verb != Verb::SyncNow {
        return refuse(
            pvc,
            ctx,
            &text,
            &format!("{} is not built in this version of volsync-dr yet", request.verb),
        )
        .await;
    }
    let names = Names::for_pvc(&name);
    let sources: Api<ReplicationSource> = Api::namespaced(ctx.local.clone(), &namespace);
    let progress = Progress::read(pvc.annotations());
    let step = match (progress.phase, progress.step.as_deref().and_then(Step::parse)) {
        (Some(Phase::Running), Some(step)) => step,
        _ => {
            // Start: record the first step before doing anything, so a restart resumes here.
            if sources
                .get_opt(&names.replication_source)
                .await
                .map_err(Error::local("read ReplicationSource"))?
                .is_none()
            {
                return refuse(
                    pvc,
                    ctx,
                    &text,
                    "sync-now needs the PVC protected first (no scheduled ReplicationSource yet)",
                )
                .await;
            }
            start_step(&pvcs, &name, Step::FIRST, "starting").await?;
            publish(
                ctx,
                pvc,
                EventType::Normal,
                "ActionStarted",
                &format!("{text}: step {}", Step::FIRST.as_str()),
            )
            .await;
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
    };
    let limit = step.timeout(ctx.config.action_sync_timeout);
    if timed_out(progress.step_started, now().as_second(), limit) {
        delete_if_present(&sources, &names.replication_source_latest)
            .await
            .map_err(Error::local("delete one-time ReplicationSource"))?;
        let message = format!(
            "step {} did not finish within {}s; the one-time ReplicationSource was removed and scheduled protection goes on; request the action again with a new ID",
            step.as_str(),
            limit.as_secs()
        );
        return finish(pvc, &pvcs, ctx, &text, Phase::Failed, &message).await;
    }
    let one_time = sources
        .get_opt(&names.replication_source_latest)
        .await
        .map_err(Error::local("read one-time ReplicationSource"))?;
    let observed = one_time.as_ref().map(|rs| OneTimeSource {
        trigger: rs.spec.trigger.as_ref().and_then(|t| t.manual.clone()),
        last_manual_sync: rs.last_manual_sync().map(str::to_string),
    });
    match sync_now::next(step, observed.as_ref(), &text) {
        Transition::Act(Step::CreateOneTimeSync) => {
            let scheduled = sources
                .get_opt(&names.replication_source)
                .await
                .map_err(Error::local("read ReplicationSource"))?
                .ok_or(Error::Missing("scheduled ReplicationSource"))?;
            let once = one_time_source(&scheduled, &names.replication_source_latest, &text);
            ensure(&sources, &once)
                .await
                .map_err(Error::local("apply one-time ReplicationSource"))?;
            Ok(Action::requeue(POLL))
        }
        Transition::Act(Step::DeleteOneTimeSync) => {
            delete_if_present(&sources, &names.replication_source_latest)
                .await
                .map_err(Error::local("delete one-time ReplicationSource"))?;
            Ok(Action::requeue(POLL))
        }
        Transition::Act(Step::WaitForSync) | Transition::Wait(..) => {
            let message = "waiting for VolSync to finish the one-time sync";
            if pvc.annotations().get(keys::ACTION_MESSAGE).map(String::as_str) != Some(message) {
                record(&pvcs, &name, &[(keys::ACTION_MESSAGE, Some(message.to_string()))]).await?;
            }
            Ok(Action::requeue(POLL))
        }
        Transition::Advance(next) => {
            publish(
                ctx,
                pvc,
                EventType::Normal,
                "ActionStep",
                &format!("{text}: step {} finished, next {}", step.as_str(), next.as_str()),
            )
            .await;
            start_step(&pvcs, &name, next, "").await?;
            Ok(Action::requeue(Duration::from_millis(100)))
        }
        Transition::Done => finish(pvc, &pvcs, ctx, &text, Phase::Succeeded, "one-time sync finished").await,
        Transition::Fail(message) => finish(pvc, &pvcs, ctx, &text, Phase::Failed, &message).await,
    }
}

async fn start_step(pvcs: &Api<PersistentVolumeClaim>, name: &str, step: Step, message: &str) -> Result<(), Error> {
    record(
        pvcs,
        name,
        &[
            (keys::ACTION_PHASE, Some(Phase::Running.as_str().to_string())),
            (keys::ACTION_STEP, Some(step.as_str().to_string())),
            (keys::ACTION_STEP_STARTED, Some(now().to_string())),
            (keys::ACTION_MESSAGE, Some(message.to_string())),
        ],
    )
    .await
}
