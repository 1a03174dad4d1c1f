//! What every reconcile shares: the two clusters, the configuration, the Event recorder, and
//! per-PVC failure counts for backoff.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use super::clusters::{ClusterRef, LOCAL_CALL_TIMEOUT};
use super::error::Error;
use crate::cluster::peer::Peer;
use crate::config::RunConfig;

pub struct Context {
    /// This instance's own cluster: every call to it goes through `here.call`.
    pub here: ClusterRef,
    /// The peer cluster, likewise.
    pub peer: ClusterRef,
    pub config: RunConfig,
    pub recorder: Recorder,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The DRPolicies and namespace labels; `None` when the cluster has no DRPolicy CRD.
    pub policies: Option<std::sync::Arc<crate::cluster::policies::PolicyWatch>>,
    pub policy_scope: crate::plan::policy::Scope,
    failures: Mutex<HashMap<(String, String), u32>>,
    /// Passes that found the destination without an address yet, per PVC.
    pending: Mutex<HashMap<(String, String), u32>>,
    /// A peer node's address for NodePort, with when it was looked up.
    node_address: Mutex<Option<(Instant, String)>>,
    /// How many times the peer's reachability changed: a probe found it down, or it answered
    /// again after a probe or a call found it down. Each change looks at every PVC again: their
    /// status shows an outage within a probe interval, not a resync, and a PVC Degraded by it
    /// does not wait out its backoff once the peer is back.
    pub peer_changed: tokio::sync::watch::Sender<u64>,
    /// Notices already published by this process (each is said once, not on every pass).
    said: Mutex<std::collections::HashSet<String>>,
    /// The last Degraded reason published per PVC: a reason is an Event when it changes.
    reasons: Mutex<HashMap<(String, String), String>>,
    /// When the peer stopped answering (the probe's or a call's first failure), while it does not.
    peer_down_since: Mutex<Option<jiff::Timestamp>>,
}

/// How soon the `attempt`-th pass that found the destination without an address looks again:
/// 250 ms, doubling, at most 2 s. VolSync publishes the address within a second or two, and
/// the new primary of a migrate or failback waits for it (an action's `wait-for-protection`).
pub fn pending_delay(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(8)).unwrap_or(u32::MAX);
    PENDING_FIRST.saturating_mul(factor).min(PENDING_MAX)
}

const PENDING_FIRST: Duration = Duration::from_millis(250);
const PENDING_MAX: Duration = Duration::from_secs(2);

/// How long a looked-up peer node address is reused.
const NODE_ADDRESS_TTL: Duration = Duration::from_secs(60);
/// Backoff after failures: 1 s, doubling, at most 5 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Context {
    pub fn new(
        local: Client,
        peer: Peer,
        config: RunConfig,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        policies: Option<std::sync::Arc<crate::cluster::policies::PolicyWatch>>,
    ) -> Self {
        let reporter = Reporter {
            controller: "volsync-dr".into(),
            instance: Some(config.cluster_name.clone()),
        };
        Context {
            recorder: Recorder::new(local.clone(), reporter),
            here: ClusterRef::here(&config.cluster_name, local, LOCAL_CALL_TIMEOUT),
            peer: ClusterRef::peer(&peer),
            metrics,
            policy_scope: config.policy_scope(),
            policies,
            config,
            failures: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            node_address: Mutex::new(None),
            said: Mutex::new(std::collections::HashSet::new()),
            reasons: Mutex::new(HashMap::new()),
            peer_down_since: Mutex::new(None),
            peer_changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Record one more failure of this PVC; how long to wait before the next try, and how many
    /// failures in a row this one makes.
    pub fn backoff_counted(&self, namespace: &str, name: &str) -> (Duration, u32) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry((namespace.to_string(), name.to_string())).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32.checked_shl(n.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
        (BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX), *n)
    }

    /// An error as a PVC's Degraded reason: plain words, and for a peer that does not answer,
    /// since when and what is retried.
    pub fn explain(&self, error: &Error) -> String {
        let Error::Peer { source, .. } = error else {
            return error.to_string();
        };
        if source.answered() {
            return error.to_string();
        }
        let since = *self
            .peer_down_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(jiff::Timestamp::now);
        format!(
            "peer cluster {} does not answer (since {}; {source}): this cluster's side is kept; the peer's side is \
             retried with a growing delay (up to 5 minutes) and at once when the peer answers again",
            self.peer.name,
            since.round(jiff::Unit::Second).unwrap_or(since),
        )
    }

    /// What a probe of the peer found. Answered: the outage (if a probe or a call saw one)
    /// ends, and `true` says there was one; the next outage has its own start.
    pub fn peer_answered(&self, answered: bool) -> bool {
        let mut since = self.peer_down_since.lock().unwrap_or_else(|p| p.into_inner());
        if answered {
            return since.take().is_some();
        }
        since.get_or_insert_with(jiff::Timestamp::now);
        false
    }

    /// Whether `reason` differs from the last one said for this PVC (and remember it); `None`
    /// (healthy again) forgets, so the next problem is said again.
    pub fn reason_changed(&self, namespace: &str, name: &str, reason: Option<&str>) -> bool {
        let mut said = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        match reason {
            None => said.remove(&key).is_some(),
            Some(r) if said.get(&key).map(String::as_str) == Some(r) => false,
            Some(r) => {
                said.insert(key, r.to_string());
                true
            }
        }
    }

    /// Record one more pass that found the destination's address unknown, and return how
    /// soon to look again (`pending_delay`).
    pub fn pending_retry(&self, namespace: &str, name: &str) -> Duration {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let n = pending.entry((namespace.to_string(), name.to_string())).or_insert(0);
        *n = n.saturating_add(1);
        pending_delay(*n)
    }

    /// The destination's address is known (or protection ended): the next wait starts short.
    pub fn address_known(&self, namespace: &str, name: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.to_string(), name.to_string()));
    }

    pub fn succeeded(&self, namespace: &str, name: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// True the first time `key` is seen by this process.
    pub fn first_time(&self, key: String) -> bool {
        self.said.lock().unwrap_or_else(|p| p.into_inner()).insert(key)
    }

    pub fn cached_node_address(&self) -> Option<String> {
        let cached = self.node_address.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < NODE_ADDRESS_TTL)
            .map(|(_, a)| a.clone())
    }

    pub fn remember_node_address(&self, address: &str) {
        *self.node_address.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), address.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_retries_start_short_and_stay_bounded() {
        let delays: Vec<u128> = (1..=6).map(|n| pending_delay(n).as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(pending_delay(u32::MAX), PENDING_MAX);
        assert_eq!(pending_delay(0), PENDING_FIRST);
    }
}
