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
use kube::ResourceExt;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::apply::field_manager;
use super::context::Context;
use super::error::Error;
use super::execute::{GroupJob, Job, RecoveryPoint};
use super::members::{self, Members, Start};
use super::report::publish_as;
use crate::model::action::{ActionRequest, Verb};
use crate::model::keys;
use crate::model::names::Names;
use crate::model::progress::{NextStep, ProgressUpdate};
use crate::model::view::PvcView;
use crate::steps::{Observed, Phase, Progress, Step, Transition, after_failure, flow, seconds_between, timed_out};

/// How soon a waiting step looks again. Syncs wake the PVC through the watch on our
/// ReplicationSources; pods and workloads are not watched, so those waits poll faster.
const POLL_SYNC: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(100);
/// Effects and advances in one pass before yielding to other PVCs.
const MAX_MOVES_PER_PASS: usize = 24;

/// Record a change of the action's progress on the PVC: the one writer of `action-*`.
async fn record(ctx: &Context, view: &PvcView, update: &ProgressUpdate) -> Result<(), Error> {
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(&view.namespace);
    ctx.here
        .call(
            "record action progress",
            pvcs.patch(&view.name, &field_manager(), &Patch::Merge(update.patch())),
        )
        .await?;
    Ok(())
}

/// The other members of the group the request `text` on `view` acts on.
fn members_of<'a>(
    ctx: &'a Context,
    view: &'a PvcView,
    progress: &'a crate::steps::Progress,
    text: &'a str,
) -> Option<Members<'a>> {
    let verb = text.parse::<ActionRequest>().ok()?.verb;
    (!progress.members.is_empty()).then(|| Members {
        ctx,
        namespace: &view.namespace,
        leader: &view.name,
        request: text,
        verb,
        names: &progress.members,
    })
}

/// Finish the request `text`: `last-action` set, so it does not run again until its ID
/// changes. A different request made meanwhile (past the webhook) is refused with it. The
/// group's other members are released first, so none is ever left to a finished action.
async fn finish(
    pvc: &PersistentVolumeClaim,
    view: &PvcView,
    ctx: &Context,
    text: &str,
    phase: Phase,
    message: &str,
) -> Result<Action, Error> {
    let mut last = text.to_string();
    let mut message = message.to_string();
    if let Some(newer) = view.pending.as_ref().filter(|p| p.text != text) {
        message.push_str(&format!(
            "; the request {} made while {text} ran was refused: request it again with a new ID",
            newer.text
        ));
        last = newer.text.clone();
    }
    let update = ProgressUpdate::Finish {
        last,
        phase,
        message: message.clone(),
    };
    if let Some(members) = members_of(ctx, view, &view.progress, text) {
        members.release(&update).await;
    }
    record(ctx, view, &update).await?;
    let verb = text.parse::<ActionRequest>().map_or("unknown", |r| r.verb.as_str());
    let outcome = if phase == Phase::Succeeded {
        "succeeded"
    } else {
        "failed"
    };
    if let Some(started) = view.progress.action_started {
        ctx.metrics
            .action_finished(verb, outcome, seconds_between(started, Timestamp::now()));
    }
    ctx.metrics.action_ended(&view.namespace, &view.name);
    let (type_, reason) = match phase {
        Phase::Failed => (EventType::Warning, "ActionFailed"),
        _ => (EventType::Normal, "ActionSucceeded"),
    };
    publish_as(ctx, pvc, type_, reason, text, &format!("{text}: {message}")).await;
    tracing::info!(
        namespace = view.namespace,
        pvc = view.name,
        request = text,
        outcome,
        message,
        "action finished"
    );
    Ok(Action::await_change())
}

/// Refuse a request without changing anything on the clusters.
pub async fn refuse(
    pvc: &PersistentVolumeClaim,
    view: &PvcView,
    ctx: &Context,
    text: &str,
    why: &str,
) -> Result<Action, Error> {
    let message = format!("refused: {why}; nothing was changed");
    finish(pvc, view, ctx, text, Phase::Failed, &message).await
}

/// Stop the running action because the PVC is going away.
pub async fn abandon(pvc: &PersistentVolumeClaim, view: &PvcView, ctx: &Context) -> Result<Action, Error> {
    let Some(request) = &view.in_flight else {
        return Ok(Action::await_change());
    };
    let step = view.progress.step.clone().unwrap_or_default();
    let message = format!("the PVC is being deleted; the action stopped at step {step}");
    finish(pvc, view, ctx, &request.text, Phase::Failed, &message).await
}

/// Crash-test hook: stop right after `step` was recorded, until the process is killed. Built
/// only with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
async fn hold_if_asked(ctx: &Context, verb: Verb, step: Step) {
    let here = format!("{verb}/{}", step.as_str());
    if ctx.config.test_hold_at_step.as_deref() == Some(here.as_str()) {
        tracing::warn!(step = here, "test hook: holding right after the step started");
        std::future::pending::<()>().await;
    }
}

#[cfg(not(feature = "test-hooks"))]
async fn hold_if_asked(_: &Context, _: Verb, _: Step) {}

/// When a scale-up step has finished: how long the application was down (once per action).
/// Failover counts from the request: the application went down with its cluster before.
fn application_back(
    ctx: &Context,
    verb: Verb,
    step: Step,
    observed: &Observed,
    progress: &Progress,
    now: Timestamp,
) -> Option<f64> {
    let started_something = matches!(observed, Observed::ScaleUp { workloads, .. } if *workloads > 0);
    if !step.scales_up() || !started_something || progress.app_down_seconds.is_some() {
        return None;
    }
    let since = progress.app_down_since.or(progress.action_started)?;
    let down = seconds_between(since, now);
    ctx.metrics.app_down(verb.as_str(), down);
    Some(down)
}

/// The summary of a successful action on `volumes` (the group, the PVC that carried the
/// request first). A failover says its recovery point: the oldest volume's last sync.
fn success_message(
    verb: Verb,
    progress: &Progress,
    now: Timestamp,
    volumes: &[String],
    recovery_point: Option<&RecoveryPoint>,
) -> String {
    let took = progress
        .action_started
        .map(|s| format!(" in {:.1}s", seconds_between(s, now)))
        .unwrap_or_default();
    let scope = if volumes.len() > 1 {
        format!(" for the group of {} volumes ({})", volumes.len(), volumes.join(", "))
    } else {
        String::new()
    };
    let copy = match (recovery_point, volumes.len()) {
        (Some(p), 1) => format!("on the last complete copy, synced at {}", p.synced),
        (Some(p), _) => format!(
            "on each volume's last complete copy; the oldest, PVC {}, was synced at {} (the group's recovery point)",
            p.volume, p.synced
        ),
        (None, _) => "on the last complete copy".to_string(),
    };
    let down = progress.app_down_seconds;
    match (verb, down) {
        (Verb::SyncNow, _) => format!("one-time sync finished{took}{scope}"),
        (Verb::RotateKey, _) => {
            format!("rotate-key finished{took}{scope}; a new key on both clusters, the next sync uses it")
        }
        (Verb::Failover, Some(d)) => format!(
            "failover finished{took}{scope}; the application was started here {d:.1}s after the failover began, {copy}"
        ),
        (Verb::Failover, None) => {
            format!("failover finished{took}{scope}; no workload mounts the PVC, nothing was scaled; {copy}")
        }
        (_, Some(d)) => format!("{verb} finished{took}{scope}; the application was down for {d:.1}s"),
        (_, None) => format!("{verb} finished{took}{scope}; no workload mounts the PVC, nothing was scaled"),
    }
}

/// Run (or resume) the request in flight on this PVC, or start the pending one (the pass's
/// decision has checked that it may run here).
pub async fn run(pvc: &PersistentVolumeClaim, view: &PvcView, ctx: &Context) -> Result<Action, Error> {
    let request = view.request().ok_or(Error::Missing("action annotation"))?;
    let text = request.text.clone();
    let parsed = match &request.parsed {
        Ok(parsed) => parsed.clone(),
        Err(e) => {
            let message = format!("the request {text:?} cannot be read ({e}); nothing more was done");
            return finish(pvc, view, ctx, &text, Phase::Failed, &message).await;
        }
    };
    let mut progress = view.progress.clone();
    if view.in_flight.is_none() {
        let members = match members::gather(ctx, view, &text, parsed.verb).await? {
            Start::Lead(members) => members,
            Start::LedBy(leader) => {
                tracing::debug!(
                    namespace = view.namespace,
                    pvc = view.name,
                    leader,
                    "the group's request runs from another member"
                );
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Start::Refused(why) => return refuse(pvc, view, ctx, &text, &why).await,
        };
        if !start(pvc, view, ctx, &mut progress, &text, parsed.verb, members).await? {
            // The PVC changed since it was read: look again from what it is now.
            return Ok(Action::requeue(POLL));
        }
    } else {
        refuse_newer_request(pvc, view, ctx, &text).await;
    }
    let group: Vec<String> = std::iter::once(view.name.clone())
        .chain(progress.members.iter().cloned())
        .collect();
    let job = GroupJob {
        volumes: group
            .iter()
            .map(|name| Job {
                ctx,
                verb: parsed.verb,
                trigger: text.clone(),
                namespace: view.namespace.clone(),
                names: Names::for_pvc(name),
                group: group.clone(),
                here: ctx.here.clone(),
                peer: ctx.peer.clone(),
            })
            .collect(),
    };
    if let Some(started) = progress.action_started {
        let started = started.as_millisecond() as f64 / 1000.0;
        ctx.metrics
            .action_running(&view.namespace, &view.name, parsed.verb.as_str(), started);
    }
    let mut pass = Pass {
        pvc,
        view,
        ctx,
        job: &job,
        text: &text,
        progress,
        shown_message: pvc.annotations().get(keys::ACTION_MESSAGE).cloned(),
    };
    if let Some(action) = pass.hold_members().await? {
        return Ok(action);
    }
    for _ in 0..MAX_MOVES_PER_PASS {
        if let Some(action) = pass.one_move().await? {
            return Ok(action);
        }
    }
    Ok(Action::requeue(Duration::from_millis(10)))
}

/// Record the request as running at its first step, with the group's other members, before
/// anything acts. Written with the PVC's resourceVersion: a PVC changed since it was read
/// (another member's action holding it) is looked at again instead.
#[allow(clippy::too_many_arguments)]
async fn start(
    pvc: &PersistentVolumeClaim,
    view: &PvcView,
    ctx: &Context,
    progress: &mut Progress,
    text: &str,
    verb: Verb,
    members: Vec<String>,
) -> Result<bool, Error> {
    let first = flow(verb)[0];
    let update = ProgressUpdate::Start {
        request: text.to_string(),
        step: first.as_str().to_string(),
        now: Timestamp::now(),
        members,
    };
    let mut patch = update.patch();
    patch["metadata"]["resourceVersion"] = serde_json::Value::String(pvc.resource_version().unwrap_or_default());
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(&view.namespace);
    let recorded = ctx
        .here
        .call(
            "record action start",
            pvcs.patch(&view.name, &field_manager(), &Patch::Merge(&patch)),
        )
        .await;
    match recorded {
        Err(e) if e.is_conflict() => return Ok(false),
        other => other?,
    };
    progress.apply(&update);
    publish_as(
        ctx,
        pvc,
        EventType::Normal,
        "ActionStarted",
        text,
        &format!("{text}: started; step {}", first.as_str()),
    )
    .await;
    tracing::info!(
        namespace = view.namespace,
        pvc = view.name,
        request = text,
        "action started"
    );
    hold_if_asked(ctx, verb, first).await;
    Ok(true)
}

/// A different request made while `running` runs (past the webhook) is said once to be refused
/// now; `finish` records it as refused.
async fn refuse_newer_request(pvc: &PersistentVolumeClaim, view: &PvcView, ctx: &Context, running: &str) {
    let (namespace, name) = (&view.namespace, &view.name);
    if let Some(newer) = view.pending.as_ref().map(|p| &p.text).filter(|p| *p != running)
        && ctx.first_time(format!("refused {namespace}/{name} {newer} during {running}"))
    {
        publish_as(
            ctx,
            pvc,
            EventType::Warning,
            "ActionRefused",
            newer,
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
    view: &'a PvcView,
    ctx: &'a Context,
    job: &'a GroupJob<'a>,
    text: &'a str,
    progress: Progress,
    /// The `action-message` on the PVC, so an unchanged wait message is not written again.
    shown_message: Option<String>,
}

impl Pass<'_> {
    /// Look at the recorded step once: act, advance, or end the pass with what to do next
    /// (`Some`: wait, finished or failed).
    async fn one_move(&mut self) -> Result<Option<Action>, Error> {
        let (ctx, verb) = (self.ctx, self.job.leader().verb);
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
        let (group_move, observed) = self.job.decide(steps, step).await?;
        match group_move.transition {
            Transition::Act => {
                tracing::debug!(
                    namespace = self.view.namespace,
                    pvc = self.pvc.name_any(),
                    step = step.as_str(),
                    volumes = group_move.act_on.len(),
                    "acting"
                );
                self.job.act(step, &group_move.act_on).await?;
                Ok(None)
            }
            Transition::Wait(message) => {
                if self.shown_message.as_deref() != Some(message.as_str()) {
                    let update = ProgressUpdate::Message(message.clone());
                    record(ctx, self.view, &update).await?;
                    self.show_on_members(&update).await;
                    self.shown_message = Some(message);
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
                let now = Timestamp::now();
                if let Some(down) = application_back(ctx, verb, step, &observed, &self.progress, now) {
                    self.progress.app_down_seconds = Some(down);
                }
                let recovery_point = if verb == Verb::Failover {
                    self.job.recovery_point().await?
                } else {
                    None
                };
                let volumes: Vec<String> = self.job.volumes.iter().map(|v| v.names.pvc.clone()).collect();
                let mut message = success_message(verb, &self.progress, now, &volumes, recovery_point.as_ref());
                if verb == Verb::Failback {
                    let kept: Vec<String> = self.job.volumes.iter().map(|v| v.names.kept_copy(self.text)).collect();
                    message.push_str(&format!(
                        "; what cluster {} held before was kept in VolumeSnapshot {} there",
                        self.job.leader().peer.name,
                        kept.join(", ")
                    ));
                }
                self.end(Phase::Succeeded, &message).await
            }
            Transition::Fail(why) => self.fail(step, &format!("failed: {why}")).await,
        }
    }

    /// The step is seen done: record the next one (and the application's downtime) before it acts.
    async fn advance(&mut self, step: Step, following: Step, observed: &Observed) -> Result<(), Error> {
        let (ctx, verb) = (self.ctx, self.job.leader().verb);
        let now = Timestamp::now();
        let app_down_since = (following.scales_down() && self.progress.app_down_since.is_none()).then_some(now);
        let app_down_seconds = application_back(ctx, verb, step, observed, &self.progress, now);
        let update = ProgressUpdate::Advance(NextStep {
            step: following.as_str().to_string(),
            now,
            app_down_since,
            app_down_seconds,
        });
        record(ctx, self.view, &update).await?;
        self.progress.apply(&update);
        self.show_on_members(&update).await;
        self.shown_message = Some(String::new());
        ctx.metrics.step_finished(verb.as_str(), step.as_str());
        publish_as(
            ctx,
            self.pvc,
            EventType::Normal,
            "ActionStep",
            &format!("{} {}", self.text, step.as_str()),
            &format!(
                "{}: step {} finished; next {}",
                self.text,
                step.as_str(),
                following.as_str()
            ),
        )
        .await;
        hold_if_asked(ctx, verb, following).await;
        Ok(())
    }

    /// The step failed or timed out: undo what it created, and finish the request saying what
    /// state the clusters are in and how to go on.
    async fn fail(&mut self, step: Step, why: &str) -> Result<Option<Action>, Error> {
        if let Err(e) = self.job.clean_up_after_failure(step).await {
            tracing::warn!(
                namespace = self.view.namespace,
                pvc = self.pvc.name_any(),
                error = %e,
                "cleanup after a failed step failed"
            );
        }
        let leader = self.job.leader();
        let (here, peer) = (leader.here.name.clone(), leader.peer.name.clone());
        let message = format!(
            "step {} {why}; {}",
            step.as_str(),
            after_failure(leader.verb, step, &here, &peer)
        );
        self.end(Phase::Failed, &message).await
    }

    /// While the action is at its first step, hold every other member of its group (again,
    /// after a crash between recording the start and holding them all). `Some`: a member could
    /// not be held, and the action ended as refused before anything changed.
    async fn hold_members(&mut self) -> Result<Option<Action>, Error> {
        let verb = self.job.leader().verb;
        let first = flow(verb)[0];
        if self.progress.members.is_empty() || self.progress.step.as_deref() != Some(first.as_str()) {
            return Ok(None);
        }
        let start = ProgressUpdate::Start {
            request: self.text.to_string(),
            step: first.as_str().to_string(),
            now: Timestamp::now(),
            members: self.progress.members.clone(),
        };
        let Some(members) = members_of(self.ctx, self.view, &self.progress, self.text) else {
            return Ok(None);
        };
        match members.hold(&start).await? {
            Ok(()) => Ok(None),
            Err(problem) => {
                let message = format!("refused: {problem}; nothing was changed");
                self.end(Phase::Failed, &message).await
            }
        }
    }

    /// Show a progress change on the group's other members.
    async fn show_on_members(&self, update: &ProgressUpdate) {
        if let Some(members) = members_of(self.ctx, self.view, &self.progress, self.text) {
            members.show(update).await;
        }
    }

    async fn end(&mut self, phase: Phase, message: &str) -> Result<Option<Action>, Error> {
        // The action's start time is what the pass has recorded, not what the view read.
        let view = PvcView {
            progress: self.progress.clone(),
            ..self.view.clone()
        };
        finish(self.pvc, &view, self.ctx, self.text, phase, message)
            .await
            .map(Some)
    }
}
