//! The action engine: runs the step machines of `steps` against the clusters.
//!
//! A step is recorded on the PVC (`action-step`, with its start time) before it acts, and the
//! next one is recorded when the clusters show the step finished; so a restart at any point
//! re-reads the step from the PVC, finds its effect done or not by looking, and goes on
//! without repeating a destructive step. Every step has a timeout; a failure finishes the
//! request (`last-action`) with a message saying what state the clusters are in and how to go
//! on.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::{Map, Value, json};

use super::apply::field_manager;
use super::clusters::ClusterRef;
use super::context::Context;
use super::error::Error;
use super::execute::Job;
use super::report::publish;
use crate::model::action::{ActionRequest, Verb};
use crate::model::keys;
use crate::model::names::Names;
use crate::steps::{
    Observed, Phase, Progress, Step, Transition, after_failure, flow, next, seconds_between, timed_out,
};

/// How soon a waiting step looks again. Syncs wake the PVC through the watch on our
/// ReplicationSources; pods and workloads are not watched, so those waits poll faster.
const POLL_SYNC: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(300);
/// Effects and advances in one pass before yielding to other PVCs.
const MAX_MOVES_PER_PASS: usize = 24;

/// Write action annotations (None removes one).
async fn record(pvcs: &Api<PersistentVolumeClaim>, name: &str, fields: &[(&str, Option<String>)]) -> Result<(), Error> {
    let annotations: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone().map_or(Value::Null, Value::String)))
        .collect();
    pvcs.patch(
        name,
        &field_manager(),
        &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
    )
    .await
    .map_err(Error::local("record action progress"))?;
    Ok(())
}

/// Finish the request `text`: `last-action` set, so it does not run again until its ID
/// changes. A different request made meanwhile (past the webhook) is refused with it.
async fn finish(
    pvc: &PersistentVolumeClaim,
    ctx: &Context,
    text: &str,
    progress: &Progress,
    phase: Phase,
    message: &str,
) -> Result<Action, Error> {
    let namespace = pvc.namespace().ok_or(Error::Missing("namespace"))?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.local.clone(), &namespace);
    let mut last = text.to_string();
    let mut message = message.to_string();
    if let Some(newer) = pvc.annotations().get(keys::ACTION).filter(|a| *a != text) {
        message.push_str(&format!(
            "; the request {newer} made while {text} ran was refused: request it again with a new ID"
        ));
        last = newer.clone();
    }
    let mut fields: Vec<(&str, Option<String>)> = vec![
        (keys::LAST_ACTION, Some(last)),
        (keys::ACTION_PHASE, Some(phase.as_str().to_string())),
        (keys::ACTION_MESSAGE, Some(message.clone())),
    ];
    fields.extend(keys::ACTION_BOOKKEEPING.iter().map(|k| (*k, None)));
    record(&pvcs, &pvc.name_any(), &fields).await?;
    let verb = text.parse::<ActionRequest>().map_or("unknown", |r| r.verb.as_str());
    let outcome = if phase == Phase::Succeeded {
        "succeeded"
    } else {
        "failed"
    };
    if let Some(started) = progress.action_started {
        ctx.metrics
            .action_finished(verb, outcome, seconds_between(started, Timestamp::now()));
    }
    let (type_, reason) = match phase {
        Phase::Failed => (EventType::Warning, "ActionFailed"),
        _ => (EventType::Normal, "ActionSucceeded"),
    };
    publish(ctx, pvc, type_, reason, &format!("{text}: {message}")).await;
    tracing::info!(
        namespace,
        pvc = pvc.name_any(),
        request = text,
        outcome,
        message,
        "action finished"
    );
    Ok(Action::await_change())
}

/// Refuse a request without changing anything on the clusters.
pub async fn refuse(pvc: &PersistentVolumeClaim, ctx: &Context, text: &str, why: &str) -> Result<Action, Error> {
    let progress = Progress::read(pvc.annotations());
    finish(
        pvc,
        ctx,
        text,
        &progress,
        Phase::Failed,
        &format!("refused: {why}; nothing was changed"),
    )
    .await
}

/// Stop the running action because the PVC is going away.
pub async fn abandon(pvc: &PersistentVolumeClaim, ctx: &Context) -> Result<(), Error> {
    let progress = Progress::read(pvc.annotations());
    let Some(text) = progress.in_flight().map(str::to_string) else {
        return Ok(());
    };
    let step = progress.step.clone().unwrap_or_default();
    finish(
        pvc,
        ctx,
        &text,
        &progress,
        Phase::Failed,
        &format!("the PVC is being deleted; the action stopped at step {step}"),
    )
    .await?;
    Ok(())
}

/// Crash-test hook: stop right after `step` was recorded, until the process is killed.
async fn hold_if_asked(ctx: &Context, verb: Verb, step: Step) {
    let here = format!("{verb}/{}", step.as_str());
    if ctx.config.test_hold_at_step.as_deref() == Some(here.as_str()) {
        tracing::warn!(step = here, "test hook: holding right after the step started");
        std::future::pending::<()>().await;
    }
}

/// When a scale-up step has finished: how long the application was down (once per action).
/// Failover counts from the request: the application went down with its cluster before.
fn application_back(
    ctx: &Context,
    verb: Verb,
    step: Step,
    observed: &Observed,
    progress: &mut Progress,
    now: Timestamp,
) -> Option<f64> {
    let started_something = matches!(observed, Observed::ScaleUp { workloads, .. } if *workloads > 0);
    if !step.scales_up() || !started_something || progress.app_down_seconds.is_some() {
        return None;
    }
    let since = progress.app_down_since.or(progress.action_started)?;
    let down = seconds_between(since, now);
    progress.app_down_seconds = Some(down);
    ctx.metrics.app_down(verb.as_str(), down);
    Some(down)
}

/// The summary of a successful action.
fn success_message(verb: Verb, progress: &Progress, now: Timestamp) -> String {
    let took = progress
        .action_started
        .map(|s| format!(" in {:.1}s", seconds_between(s, now)))
        .unwrap_or_default();
    let down = progress.app_down_seconds;
    match (verb, down) {
        (Verb::SyncNow, _) => format!("one-time sync finished{took}"),
        (Verb::Failover, Some(d)) => format!(
            "failover finished{took}; the application was started here {d:.1}s after the failover began, on the last complete copy"
        ),
        (_, Some(d)) => format!("{verb} finished{took}; the application was down for {d:.1}s"),
        (_, None) => format!("{verb} finished{took}; no workload mounts the PVC, nothing was scaled"),
    }
}

/// Run (or resume) the request in flight on this PVC, or start the pending one (the caller
/// has checked that it may run here).
pub async fn run(pvc: &PersistentVolumeClaim, ctx: &Context) -> Result<Action, Error> {
    let namespace = pvc.namespace().ok_or(Error::Missing("namespace"))?;
    let name = pvc.name_any();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.local.clone(), &namespace);
    let mut progress = Progress::read(pvc.annotations());
    let text = match progress.in_flight() {
        Some(text) => text.to_string(),
        None => pvc
            .annotations()
            .get(keys::ACTION)
            .cloned()
            .ok_or(Error::Missing("action annotation"))?,
    };
    let request: ActionRequest = match text.parse() {
        Ok(r) => r,
        Err(e) => {
            let message = format!("the request {text:?} cannot be read ({e}); nothing more was done");
            return finish(pvc, ctx, &text, &progress, Phase::Failed, &message).await;
        }
    };
    let job = Job {
        ctx,
        verb: request.verb,
        trigger: text.clone(),
        namespace: namespace.clone(),
        names: Names::for_pvc(&name),
        here: ClusterRef::here(ctx),
        peer: ClusterRef::peer(ctx),
    };
    if progress.in_flight().is_none() {
        progress = start(pvc, ctx, &pvcs, &text, request.verb).await?;
    } else {
        refuse_newer_request(pvc, ctx, &text).await;
    }
    let mut pass = Pass {
        pvc,
        ctx,
        pvcs: &pvcs,
        job: &job,
        text: &text,
        progress,
        shown_message: pvc.annotations().get(keys::ACTION_MESSAGE).cloned(),
    };
    for _ in 0..MAX_MOVES_PER_PASS {
        if let Some(action) = pass.one_move().await? {
            return Ok(action);
        }
    }
    Ok(Action::requeue(Duration::from_millis(10)))
}

/// Record the request as running at its first step, before anything acts.
async fn start(
    pvc: &PersistentVolumeClaim,
    ctx: &Context,
    pvcs: &Api<PersistentVolumeClaim>,
    text: &str,
    verb: Verb,
) -> Result<Progress, Error> {
    let first = flow(verb)[0];
    let now = Timestamp::now();
    let mut fields: Vec<(&str, Option<String>)> = keys::ACTION_BOOKKEEPING.iter().map(|k| (*k, None)).collect();
    fields.extend([
        (keys::ACTION_PHASE, Some(Phase::Running.as_str().to_string())),
        (keys::ACTION_RUNNING, Some(text.to_string())),
        (keys::ACTION_STEP, Some(first.as_str().to_string())),
        (keys::ACTION_STEP_STARTED, Some(now.to_string())),
        (keys::ACTION_STARTED, Some(now.to_string())),
        (keys::ACTION_MESSAGE, Some(String::new())),
    ]);
    record(pvcs, &pvc.name_any(), &fields).await?;
    publish(
        ctx,
        pvc,
        EventType::Normal,
        "ActionStarted",
        &format!("{text}: started; step {}", first.as_str()),
    )
    .await;
    tracing::info!(
        namespace = pvc.namespace().unwrap_or_default(),
        pvc = pvc.name_any(),
        request = text,
        "action started"
    );
    hold_if_asked(ctx, verb, first).await;
    Ok(Progress {
        phase: Some(Phase::Running),
        running: Some(text.to_string()),
        step: Some(first.as_str().to_string()),
        step_started: Some(now),
        action_started: Some(now),
        app_down_since: None,
        app_down_seconds: None,
    })
}

/// A different request made while `running` runs (past the webhook) is said once to be refused
/// now; `finish` records it as refused.
async fn refuse_newer_request(pvc: &PersistentVolumeClaim, ctx: &Context, running: &str) {
    let (namespace, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    if let Some(newer) = pvc.annotations().get(keys::ACTION).filter(|a| **a != running)
        && ctx.first_time(format!("refused {namespace}/{name} {newer} during {running}"))
    {
        publish(
            ctx,
            pvc,
            EventType::Warning,
            "ActionRefused",
            &format!(
                "{newer}: refused, {running} is still running; request it again with a new ID once it has finished"
            ),
        )
        .await;
    }
}

/// One pass of the step machine over one PVC: what it works on and what it has recorded.
struct Pass<'a> {
    pvc: &'a PersistentVolumeClaim,
    ctx: &'a Context,
    pvcs: &'a Api<PersistentVolumeClaim>,
    job: &'a Job<'a>,
    text: &'a str,
    progress: Progress,
    /// The `action-message` on the PVC, so an unchanged wait message is not written again.
    shown_message: Option<String>,
}

impl Pass<'_> {
    /// Look at the recorded step once: act, advance, or end the pass with what to do next
    /// (`Some`: wait, finished or failed).
    async fn one_move(&mut self) -> Result<Option<Action>, Error> {
        let (ctx, verb) = (self.ctx, self.job.verb);
        let steps = flow(verb);
        let recorded = self.progress.step.clone().unwrap_or_default();
        let Some(step) = Step::parse(&recorded).filter(|s| steps.contains(s)) else {
            let message = format!(
                "the recorded step {recorded:?} is not a step of {verb}; nothing more was done: request the action again with a new ID"
            );
            return self.end(Phase::Failed, &message).await;
        };
        let limit = step.timeout(ctx.config.action_sync_timeout, ctx.config.action_step_timeout);
        if timed_out(self.progress.step_started, Timestamp::now(), limit) {
            let why = format!("did not finish within {}s", limit.as_secs());
            return self.fail(step, &why).await;
        }
        let observed = self.job.observe(step).await?;
        match next(steps, step, &observed, self.text) {
            Transition::Act => {
                tracing::debug!(
                    namespace = self.job.namespace,
                    pvc = self.pvc.name_any(),
                    step = step.as_str(),
                    "acting"
                );
                self.job.act(step).await?;
                Ok(None)
            }
            Transition::Wait(message) => {
                if self.shown_message.as_deref() != Some(message.as_str()) {
                    record(
                        self.pvcs,
                        &self.pvc.name_any(),
                        &[(keys::ACTION_MESSAGE, Some(message))],
                    )
                    .await?;
                }
                let poll = match step {
                    Step::WaitForSync | Step::WaitForLocalSync => POLL_SYNC,
                    _ => POLL,
                };
                Ok(Some(Action::requeue(poll)))
            }
            Transition::Advance(following) => {
                self.advance(step, following, &observed).await?;
                Ok(None)
            }
            Transition::Done => {
                ctx.metrics.step_finished(verb.as_str(), step.as_str());
                application_back(ctx, verb, step, &observed, &mut self.progress, Timestamp::now());
                let message = success_message(verb, &self.progress, Timestamp::now());
                self.end(Phase::Succeeded, &message).await
            }
            Transition::Fail(why) => self.fail(step, &format!("failed: {why}")).await,
        }
    }

    /// The step is seen done: record the next one (and the application's downtime) before it acts.
    async fn advance(&mut self, step: Step, following: Step, observed: &Observed) -> Result<(), Error> {
        let (ctx, verb) = (self.ctx, self.job.verb);
        let now = Timestamp::now();
        let mut fields: Vec<(&str, Option<String>)> = vec![
            (keys::ACTION_STEP, Some(following.as_str().to_string())),
            (keys::ACTION_STEP_STARTED, Some(now.to_string())),
            (keys::ACTION_MESSAGE, Some(String::new())),
        ];
        if following.scales_down() && self.progress.app_down_since.is_none() {
            fields.push((keys::APP_DOWN_SINCE, Some(now.to_string())));
            self.progress.app_down_since = Some(now);
        }
        if let Some(down) = application_back(ctx, verb, step, observed, &mut self.progress, now) {
            fields.push((keys::APP_DOWN_SECONDS, Some(format!("{down:.3}"))));
        }
        record(self.pvcs, &self.pvc.name_any(), &fields).await?;
        self.shown_message = Some(String::new());
        ctx.metrics.step_finished(verb.as_str(), step.as_str());
        publish(
            ctx,
            self.pvc,
            EventType::Normal,
            "ActionStep",
            &format!(
                "{}: step {} finished; next {}",
                self.text,
                step.as_str(),
                following.as_str()
            ),
        )
        .await;
        self.progress.step = Some(following.as_str().to_string());
        self.progress.step_started = Some(now);
        hold_if_asked(ctx, verb, following).await;
        Ok(())
    }

    /// The step failed or timed out: undo what it created, and finish the request saying what
    /// state the clusters are in and how to go on.
    async fn fail(&mut self, step: Step, why: &str) -> Result<Option<Action>, Error> {
        if let Err(e) = self.job.clean_up_after_failure(step).await {
            tracing::warn!(
                namespace = self.job.namespace,
                pvc = self.pvc.name_any(),
                error = %e,
                "cleanup after a failed step failed"
            );
        }
        let (here, peer) = (self.job.here.name.clone(), self.job.peer.name.clone());
        let message = format!(
            "step {} {why}; {}",
            step.as_str(),
            after_failure(self.job.verb, step, &here, &peer)
        );
        self.end(Phase::Failed, &message).await
    }

    async fn end(&mut self, phase: Phase, message: &str) -> Result<Option<Action>, Error> {
        finish(self.pvc, self.ctx, self.text, &self.progress, phase, message)
            .await
            .map(Some)
    }
}
