//! The other members of a group's action, on this cluster: gathered when the request starts,
//! held (so their own passes leave them to the action), shown its progress, and released when
//! it ends. And a held member's check that the action holding it still runs, so a hold never
//! outlives its action.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::Patch;
use kube::runtime::controller::Action;
use serde_json::Value;

use super::apply::field_manager;
use super::context::Context;
use super::error::Error;
use super::workloads;
use crate::model::action::Verb;
use crate::model::keys;
use crate::model::progress::ProgressUpdate;
use crate::model::view::PvcView;
use crate::plan::group::{MemberCheck, check_member};

/// How a request starts, from its group.
#[derive(Debug)]
pub enum Start {
    /// This PVC leads; the other members it takes along (sorted, possibly none).
    Lead(Vec<String>),
    /// Another member carries the same request and leads; this PVC waits to be held.
    LedBy(String),
    /// A member cannot be taken along: the request is refused, nothing changed.
    Refused(String),
}

async fn read(ctx: &Context, namespace: &str, name: &str) -> Result<Option<PersistentVolumeClaim>, Error> {
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(namespace);
    ctx.here.call("read group member PVC", pvcs.get_opt(name)).await
}

/// The group a request on `view` acts on, each member read fresh and checked.
pub async fn gather(ctx: &Context, view: &PvcView, request: &str, verb: Verb) -> Result<Start, Error> {
    let group = workloads::group_of(&ctx.here, &view.namespace, &view.name).await?;
    let (mut members, mut problems) = (Vec::new(), Vec::new());
    for name in group.into_iter().filter(|n| *n != view.name) {
        let Some(pvc) = read(ctx, &view.namespace, &name).await? else {
            continue;
        };
        match check_member(&PvcView::read(&pvc), &view.name, request, verb) {
            MemberCheck::Joins => members.push(name),
            MemberCheck::LedBy(leader) => return Ok(Start::LedBy(leader)),
            MemberCheck::Problem(problem) => problems.push(problem),
        }
    }
    Ok(if problems.is_empty() {
        Start::Lead(members)
    } else {
        Start::Refused(problems.join("; "))
    })
}

/// A running group action's other members.
pub struct Members<'a> {
    pub ctx: &'a Context,
    pub namespace: &'a str,
    /// The PVC that carries the request and runs the action.
    pub leader: &'a str,
    pub request: &'a str,
    pub verb: Verb,
    pub names: &'a [String],
}

impl Members<'_> {
    fn pvcs(&self) -> kube::Api<PersistentVolumeClaim> {
        self.ctx.here.api(self.namespace)
    }

    /// Hold every member not held yet. Each is checked on a fresh read and written with that
    /// read's resourceVersion, so a member that changed meanwhile (its own request, another
    /// group's hold) is read and checked again. `Err(problem)` when one cannot be held.
    pub async fn hold(&self, start: &ProgressUpdate) -> Result<Result<(), String>, Error> {
        for name in self.names {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let Some(pvc) = read(self.ctx, self.namespace, name).await? else {
                    return Ok(Err(format!("PVC {name} of the group was deleted")));
                };
                let view = PvcView::read(&pvc);
                match check_member(&view, self.leader, self.request, self.verb) {
                    MemberCheck::Joins if view.held.is_some() => break,
                    MemberCheck::Joins => {}
                    MemberCheck::LedBy(other) => {
                        return Ok(Err(format!(
                            "PVC {other} of the group carries the same request: request it again with a new ID on one member"
                        )));
                    }
                    MemberCheck::Problem(problem) => return Ok(Err(problem)),
                }
                let mut patch = start.member_patch(self.request, self.leader, false);
                patch["metadata"]["resourceVersion"] = Value::String(pvc.resource_version().unwrap_or_default());
                let written = self
                    .ctx
                    .here
                    .call(
                        "hold group member",
                        self.pvcs().patch(name, &field_manager(), &Patch::Merge(&patch)),
                    )
                    .await;
                match written {
                    Ok(_) => break,
                    Err(e) if e.is_conflict() && attempts < 5 => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Ok(()))
    }

    /// Show a step or a wait on every member. Best effort: the leader's record is what the
    /// action resumes from; a member shows the next change.
    pub async fn show(&self, update: &ProgressUpdate) {
        let patch = update.member_patch(self.request, self.leader, false);
        for name in self.names {
            let written = self
                .ctx
                .here
                .call(
                    "show group progress on member",
                    self.pvcs().patch(name, &field_manager(), &Patch::Merge(&patch)),
                )
                .await;
            if let Err(e) = written {
                tracing::warn!(namespace = self.namespace, pvc = name, error = %e, "could not show the group's progress");
            }
        }
    }

    /// Release every member this action holds, with its outcome. A member whose release fails
    /// releases itself: its next pass finds the action finished.
    pub async fn release(&self, finish: &ProgressUpdate) {
        for name in self.names {
            let released = async {
                let Some(pvc) = read(self.ctx, self.namespace, name).await? else {
                    return Ok(());
                };
                let view = PvcView::read(&pvc);
                let ours = view
                    .held
                    .as_ref()
                    .is_some_and(|h| h.leader == self.leader && h.request == self.request);
                if !ours {
                    return Ok(());
                }
                let asked_too = view.pending.as_ref().is_some_and(|p| p.text == self.request);
                let patch = finish.member_patch(self.request, self.leader, asked_too);
                self.ctx
                    .here
                    .call(
                        "release group member",
                        self.pvcs().patch(name, &field_manager(), &Patch::Merge(&patch)),
                    )
                    .await
                    .map(|_| ())
            };
            if let Err(e) = released.await {
                tracing::warn!(namespace = self.namespace, pvc = name, error = %e, "could not release a group member");
            }
        }
    }
}

/// A member held by `request` from `leader`: left alone while that action runs; released when
/// the leader no longer runs it (finished, deleted, or the hold was left by a crash).
pub async fn check_hold(
    pvc: &PersistentVolumeClaim,
    view: &PvcView,
    ctx: &Context,
    leader: &str,
    request: &str,
) -> Result<Action, Error> {
    let leading = read(ctx, &view.namespace, leader).await?.is_some_and(|l| {
        let leader = PvcView::read(&l);
        leader.in_flight.as_ref().is_some_and(|r| r.text == request) && leader.progress.members.contains(&view.name)
    });
    if leading {
        // The leader writes here at every step; a slow look is enough to catch its end.
        return Ok(Action::requeue(std::time::Duration::from_secs(30)));
    }
    let patch = serde_json::json!({"metadata": {"annotations": {
        keys::GROUP_ACTION: null,
        keys::GROUP_LEADER: null,
        keys::ACTION_STEP: null,
    }}});
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(&view.namespace);
    ctx.here
        .call(
            "release a stale group hold",
            pvcs.patch(&pvc.name_any(), &field_manager(), &Patch::Merge(&patch)),
        )
        .await?;
    tracing::warn!(
        namespace = view.namespace,
        pvc = view.name,
        leader,
        request,
        "released a hold whose action no longer runs"
    );
    Ok(Action::await_change())
}
