//! Cluster-wide protection at work: the policies' annotations written on PVCs (one PVC from its
//! reconcile, or every PVC in a sweep after a policy or namespace changes), and each policy's
//! status. The decisions are `plan::policy`'s; this module only reads caches and writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::field_manager;
use super::cache::CachedPvc;
use super::clusters::ClusterRef;
use super::context::Context;
use super::error::Error;
use super::report::publish;
use crate::cluster::policies::PolicyWatch;
use crate::model::policy::{DRPolicy, DRPolicyStatus};
use crate::plan::policy::{AnnotationChange, Outcome, PolicyLookup, PolicySet, evaluate, policy_after};

/// PVC writes a sweep keeps in flight at once.
const SWEEP_CONCURRENCY: usize = 16;

/// What `set` would change on this PVC, when its namespace is known.
fn pending_change(ctx: &Context, set: &PolicySet, pvc: &PersistentVolumeClaim) -> Option<(Outcome, AnnotationChange)> {
    let labels = ctx.policies.as_ref()?.namespace_labels(&pvc.namespace()?)?;
    evaluate(set, pvc, &labels, &ctx.policy_scope)
}

/// Apply the policies to one PVC (from its reconcile). `true` when it wrote: the PVC comes
/// back through the watch with its new annotations.
pub async fn apply_to(ctx: &Context, pvc: &PersistentVolumeClaim) -> Result<bool, Error> {
    let Some(set) = ctx.policies.as_ref().and_then(|view| view.policies()) else {
        return Ok(false);
    };
    match pending_change(ctx, &set, pvc) {
        None => Ok(false),
        Some((outcome, change)) => write(ctx, pvc, &outcome, &change).await.map(|()| true),
    }
}

async fn write(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    outcome: &Outcome,
    change: &AnnotationChange,
) -> Result<(), Error> {
    let namespace = pvc.namespace().ok_or(Error::Missing("namespace"))?;
    let name = pvc.name_any();
    let pvcs = ctx.here.api::<PersistentVolumeClaim>(&namespace);
    // Guarded by the resource version: a PVC changed meanwhile is decided again, not overwritten.
    let mut patch = change.merge_patch();
    patch["metadata"]["resourceVersion"] = json!(pvc.resource_version());
    ctx.here
        .call(
            "write policy annotations",
            pvcs.patch(&name, &field_manager(), &Patch::Merge(patch)),
        )
        .await?;
    let (reason, note) = match outcome {
        Outcome::Applied { policy } => ("PolicyApplied", format!("protected by DRPolicy {policy}")),
        Outcome::Updated { policy } => ("PolicyUpdated", format!("settings of DRPolicy {policy} updated")),
        Outcome::Released { policy } => (
            "PolicyReleased",
            format!(
                "DRPolicy {policy} no longer selects this PVC (deleted, or its selectors changed): the settings it wrote are removed and protection ends"
            ),
        ),
    };
    ctx.metrics.policy_change(reason);
    tracing::info!(namespace, name, reason, "{note}");
    publish(ctx, pvc, EventType::Normal, reason, &note).await;
    Ok(())
}

/// Sweep whenever the policies or namespace labels change, and every resync period; never
/// returns (it ends with the process). `stores` are the PVC caches of the watcher.
pub async fn sweep_forever(ctx: Arc<Context>, stores: Vec<Store<CachedPvc>>) {
    let Some(view) = ctx.policies.clone() else {
        return std::future::pending().await;
    };
    let mut changes = view.subscribe();
    for store in &stores {
        if store.wait_until_ready().await.is_err() {
            return std::future::pending().await;
        }
    }
    loop {
        if view.policies().is_some() {
            // Let a burst of changes (a kubectl apply of several policies) settle first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            changes.borrow_and_update();
            if let Some(set) = view.policies() {
                sweep(&ctx, &view, &set, &stores).await;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return std::future::pending().await },
            () = tokio::time::sleep(ctx.config.resync) => {}
        }
    }
}

/// One pass over every PVC with one set of policies, then each of those policies' status.
async fn sweep(ctx: &Context, view: &PolicyWatch, set: &PolicySet, stores: &[Store<CachedPvc>]) {
    let started = Instant::now();
    let cached: Vec<Arc<CachedPvc>> = stores.iter().flat_map(|s| s.state()).collect();
    let results: Vec<(Option<String>, bool)> = futures::stream::iter(cached)
        .map(|cached| async move {
            let pvc = match cached.pvc() {
                Ok(pvc) => pvc,
                Err(e) => {
                    tracing::warn!(error = %e, "policy sweep");
                    return (None, false);
                }
            };
            let current = pvc.annotations();
            match pending_change(ctx, set, &pvc) {
                None => (policy_after(current, None), true),
                Some((outcome, change)) => match write(ctx, &pvc, &outcome, &change).await {
                    Ok(()) => (policy_after(current, Some(&change)), true),
                    // Changed since the cache saw it: its own reconcile decides again.
                    Err(e) if e.is_conflict() => (policy_after(current, None), true),
                    Err(e) => {
                        tracing::warn!(namespace = pvc.namespace(), name = pvc.name_any(), error = %e, "policy sweep");
                        (policy_after(current, None), false)
                    }
                },
            }
        })
        .buffer_unordered(SWEEP_CONCURRENCY)
        .collect()
        .await;
    let (pvcs, failed) = (results.len(), results.iter().filter(|(_, ok)| !ok).count());
    let mut protected: BTreeMap<String, u32> = BTreeMap::new();
    for (policy, _) in results {
        if let Some(policy) = policy {
            *protected.entry(policy).or_default() += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    ctx.metrics
        .policy_sweep(if failed == 0 { "ok" } else { "error" }, seconds);
    tracing::debug!(seconds, pvcs, failed, "policy sweep");
    let now = Time(jiff::Timestamp::now());
    for (name, rules) in set.iter() {
        // The cached object: its status is ours, so the cache is as new as any read.
        let Some(policy) = view.policy(name) else {
            continue;
        };
        let validity = rules.as_ref().map(|r| r.paused);
        if let Err(e) = write_status(&ctx.here, &policy, validity, protected.get(name).copied(), &now).await {
            tracing::warn!(policy = name, error = %e, "cannot write DRPolicy status");
        }
    }
}

/// The Ready condition of a policy: valid (Active or Paused) or not, with every problem.
fn ready_condition(
    validity: Result<bool, &crate::model::policy::SpecErrors>,
    previous: Option<&Condition>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let (status, reason, message) = match validity {
        Ok(false) => ("True", "Active", "the policy protects the PVCs it selects".to_string()),
        Ok(true) => (
            "True",
            "Paused",
            "paused: no PVC is protected or released by it until it is resumed".to_string(),
        ),
        Err(errors) => (
            "False",
            "InvalidSpec",
            format!("{errors}; PVCs it protects are left as they are"),
        ),
    };
    // The transition time changes only when the status does.
    let since = previous
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: generation,
    }
}

async fn write_status(
    here: &ClusterRef,
    policy: &DRPolicy,
    validity: Result<bool, &crate::model::policy::SpecErrors>,
    protected: Option<u32>,
    now: &Time,
) -> Result<(), Error> {
    let name = policy.name_any();
    let previous = policy
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let generation = policy.meta().generation;
    let condition = ready_condition(validity, previous, generation, now);
    // Said once per new problem, not on every sweep.
    if condition.reason == "InvalidSpec" && previous.is_none_or(|c| c.message != condition.message) {
        tracing::warn!(policy = name, problems = %condition.message, "invalid DRPolicy");
    }
    let status = DRPolicyStatus {
        conditions: vec![condition],
        protected_pvcs: Some(protected.unwrap_or(0)),
        last_sweep_time: Some(now.clone()),
        observed_generation: generation,
    };
    let api: Api<DRPolicy> = here.all();
    let patch = Patch::Merge(json!({"status": status}));
    here.call(
        "write DRPolicy status",
        api.patch_status(&name, &field_manager(), &patch),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::{SpecError, SpecErrors};

    fn time(s: &str) -> Time {
        Time(s.parse().expect("time"))
    }

    #[test]
    fn ready_condition_keeps_its_transition_time_while_the_status_holds() {
        let t0 = time("2026-01-01T00:00:00Z");
        let t1 = time("2026-01-01T01:00:00Z");
        let first = ready_condition(Ok(false), None, Some(1), &t0);
        assert_eq!((first.status.as_str(), first.reason.as_str()), ("True", "Active"));
        let paused = ready_condition(Ok(true), Some(&first), Some(2), &t1);
        assert_eq!(paused.reason, "Paused");
        assert_eq!(paused.last_transition_time, t0, "still True");
        let errors = SpecErrors(vec![SpecError {
            field: "defaults.schedule".into(),
            value: "bad".into(),
            problem: "not cron".into(),
        }]);
        let invalid = ready_condition(Err(&errors), Some(&paused), Some(3), &t1);
        assert_eq!(
            (invalid.status.as_str(), invalid.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(
            invalid.message.contains("spec.defaults.schedule \"bad\": not cron"),
            "{}",
            invalid.message
        );
        assert_eq!(invalid.last_transition_time, t1);
        assert_eq!(invalid.observed_generation, Some(3));
    }
}
