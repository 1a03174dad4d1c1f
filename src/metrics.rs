//! Prometheus metrics (prometheus-client, OpenMetrics text on the admin port's /metrics).

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    admission: Family<Labels, Counter>,
    admission_seconds: Histogram,
    reconciles: Family<Labels, Counter>,
    action_seconds: Family<Labels, Histogram>,
    app_down_seconds: Family<Labels, Histogram>,
    action_steps: Family<Labels, Counter>,
    policy_changes: Family<Labels, Counter>,
    fencings: Family<Labels, Counter>,
    policy_sweeps: Family<Labels, Counter>,
    policy_sweep_seconds: Histogram,
    leader: prometheus_client::metrics::gauge::Gauge,
    peer_reachable: prometheus_client::metrics::gauge::Gauge,
    /// Per protected PVC, as the watcher last reported it; turned into gauges at each scrape
    /// (the recovery point's age depends on the time of the scrape).
    pvcs: Mutex<BTreeMap<(String, String), PvcStatus>>,
    pvc_last_sync: Family<Labels, FloatGauge>,
    pvc_rpo: Family<Labels, FloatGauge>,
    pvc_state: Family<Labels, prometheus_client::metrics::gauge::Gauge>,
    pvc_rpo_target: Family<Labels, FloatGauge>,
    /// Running actions by PVC: (verb, Unix seconds of the start).
    actions: Mutex<BTreeMap<(String, String), (String, f64)>>,
    action_started: Family<Labels, FloatGauge>,
    cluster_info: Family<Labels, prometheus_client::metrics::gauge::Gauge>,
    /// When each primary PVC's key was made (Unix seconds), as its last pass read it.
    keys: Mutex<BTreeMap<(String, String), f64>>,
    pvc_key_age: Family<Labels, FloatGauge>,
}

type FloatGauge = prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>;

/// What the watcher last reported for one protected PVC.
#[derive(Clone, Debug, PartialEq)]
pub struct PvcStatus {
    pub role: String,
    pub state: String,
    /// Unix seconds of the last completed sync.
    pub last_sync: Option<f64>,
    /// The recovery point's age not to pass (`volsync-dr.io/rpo-target`, else twice the
    /// schedule's longest interval), in seconds.
    pub rpo_target: Option<f64>,
}

/// 0.5 s to ~2.3 h: actions last from seconds (a small sync) to hours (a large one).
fn action_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.5, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let histogram = |start: f64, count: u16| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                start, 2.0, count,
            ))
        };
        let mut metrics = Metrics {
            registry: Registry::default(),
            admission: Family::default(),
            // 100 µs to ~100 ms: the webhook must answer in milliseconds.
            admission_seconds: histogram(0.0001, 11),
            reconciles: Family::default(),
            action_seconds: Family::new_with_constructor(action_buckets as fn() -> Histogram),
            app_down_seconds: Family::new_with_constructor(action_buckets as fn() -> Histogram),
            action_steps: Family::default(),
            policy_changes: Family::default(),
            fencings: Family::default(),
            policy_sweeps: Family::default(),
            // 10 ms to ~80 s: one pass over up to tens of thousands of cached PVCs.
            policy_sweep_seconds: histogram(0.01, 14),
            leader: Default::default(),
            peer_reachable: Default::default(),
            pvcs: Mutex::new(BTreeMap::new()),
            pvc_last_sync: Family::default(),
            pvc_rpo: Family::default(),
            pvc_state: Family::default(),
            pvc_rpo_target: Family::default(),
            actions: Mutex::new(BTreeMap::new()),
            action_started: Family::default(),
            cluster_info: Family::default(),
            keys: Mutex::new(BTreeMap::new()),
            pvc_key_age: Family::default(),
        };
        metrics.registry = metrics.registry();
        metrics
    }

    /// The registry that exports every metric (each registered as a clone: they share values).
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("volsync_dr");
        let s = self;
        r.register(
            "admission_requests",
            "Admission reviews answered, by result",
            s.admission.clone(),
        );
        r.register(
            "admission_duration_seconds",
            "Time to decide one admission review",
            s.admission_seconds.clone(),
        );
        r.register(
            "reconciles",
            "PVC reconciles, by result and reason",
            s.reconciles.clone(),
        );
        r.register(
            "action_duration_seconds",
            "Time from an action's start to its end, by verb and outcome",
            s.action_seconds.clone(),
        );
        r.register(
            "action_app_down_seconds",
            "Time an action kept the application scaled down (the outage users see), by verb",
            s.app_down_seconds.clone(),
        );
        r.register(
            "action_steps",
            "Action steps finished, by verb and step",
            s.action_steps.clone(),
        );
        r.register(
            "policy_changes",
            "PVCs a DRPolicy protected, updated or released, by reason",
            s.policy_changes.clone(),
        );
        r.register(
            "fencings",
            "Stale primaries fenced after a failover (application stopped, sync removed), by where: here or peer",
            s.fencings.clone(),
        );
        r.register(
            "policy_sweeps",
            "Passes of the policies over every PVC, by result",
            s.policy_sweeps.clone(),
        );
        r.register(
            "policy_sweep_duration_seconds",
            "Time of one pass of the policies over every PVC, writes included",
            s.policy_sweep_seconds.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the lease and runs the watcher",
            s.leader.clone(),
        );
        r.register(
            "peer_reachable",
            "1 when the peer cluster's API server answered the last probe (every 10 s)",
            s.peer_reachable.clone(),
        );
        r.register(
            "pvc_last_sync_timestamp_seconds",
            "Unix time of the last completed sync of a protected PVC (leader only)",
            s.pvc_last_sync.clone(),
        );
        r.register(
            "pvc_rpo_seconds",
            "Recovery point age of a protected PVC: now minus its last completed sync (leader only)",
            s.pvc_rpo.clone(),
        );
        r.register(
            "pvc_rpo_target_seconds",
            "The recovery point age a protected PVC should stay under: its volsync-dr.io/rpo-target, else twice its schedule's longest interval (leader only)",
            s.pvc_rpo_target.clone(),
        );
        r.register(
            "action_started_timestamp_seconds",
            "Unix time a running action started, by PVC and verb (leader only; gone when it ends)",
            s.action_started.clone(),
        );
        r.register(
            "cluster_info",
            "1, labelled with this cluster's name and its peer's (for alerts to say which cluster)",
            s.cluster_info.clone(),
        );
        r.register(
            "pvc_key_age_seconds",
            "Age of a protected PVC's pre-shared key, on its primary (leader only; rotate-key renews it)",
            s.pvc_key_age.clone(),
        );
        r.register(
            "pvc_state",
            "1 for the state (Pending, Protected, Degraded) a protected PVC is in (leader only)",
            s.pvc_state.clone(),
        );
        r
    }

    pub fn admission(&self, result: &str, seconds: f64) {
        self.admission
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
        self.admission_seconds.observe(seconds);
    }

    pub fn reconcile(&self, result: &str, reason: &str) {
        self.reconciles
            .get_or_create(&vec![
                ("result".into(), result.into()),
                ("reason".into(), reason.into()),
            ])
            .inc();
    }

    pub fn action_finished(&self, verb: &str, outcome: &str, seconds: f64) {
        self.action_seconds
            .get_or_create(&vec![("verb".into(), verb.into()), ("outcome".into(), outcome.into())])
            .observe(seconds);
    }

    pub fn app_down(&self, verb: &str, seconds: f64) {
        self.app_down_seconds
            .get_or_create(&vec![("verb".into(), verb.into())])
            .observe(seconds);
    }

    pub fn step_finished(&self, verb: &str, step: &str) {
        self.action_steps
            .get_or_create(&vec![("verb".into(), verb.into()), ("step".into(), step.into())])
            .inc();
    }

    pub fn policy_change(&self, reason: &str) {
        self.policy_changes
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    /// A stale primary was fenced, `here` (this cluster's copy) or on the `peer`.
    pub fn fenced(&self, side: &str) {
        self.fencings.get_or_create(&vec![("side".into(), side.into())]).inc();
    }

    pub fn policy_sweep(&self, result: &str, seconds: f64) {
        self.policy_sweeps
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
        self.policy_sweep_seconds.observe(seconds);
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// This instance's cluster and peer, exported once as `cluster_info`.
    pub fn set_cluster(&self, cluster: &str, peer: &str) {
        self.cluster_info
            .get_or_create(&vec![
                ("cluster".to_string(), cluster.to_string()),
                ("peer".to_string(), peer.to_string()),
            ])
            .set(1);
    }

    /// An action runs on this PVC (said on each of its passes, so a restart says it again).
    pub fn action_running(&self, namespace: &str, pvc: &str, verb: &str, started_unix: f64) {
        self.actions.lock().unwrap_or_else(|p| p.into_inner()).insert(
            (namespace.to_string(), pvc.to_string()),
            (verb.to_string(), started_unix),
        );
    }

    /// When the key of this (primary) PVC was made.
    pub fn key_created(&self, namespace: &str, pvc: &str, created_unix: f64) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((namespace.to_string(), pvc.to_string()), created_unix);
    }

    /// The action on this PVC ended.
    pub fn action_ended(&self, namespace: &str, pvc: &str) {
        self.actions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.to_string(), pvc.to_string()));
    }

    pub fn set_peer_reachable(&self, reachable: bool) {
        self.peer_reachable.set(i64::from(reachable));
    }

    /// The status the watcher last wrote for a protected PVC.
    pub fn pvc_status(&self, namespace: &str, pvc: &str, status: PvcStatus) {
        self.pvcs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((namespace.to_string(), pvc.to_string()), status);
    }

    /// The PVC is no longer protected (or gone).
    pub fn pvc_forget(&self, namespace: &str, pvc: &str) {
        self.pvcs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.to_string(), pvc.to_string()));
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.to_string(), pvc.to_string()));
    }

    /// Per-PVC gauges as of `now_unix`.
    fn refresh_pvcs(&self, now_unix: f64) {
        let pvcs = self.pvcs.lock().unwrap_or_else(|p| p.into_inner());
        self.pvc_last_sync.clear();
        self.pvc_rpo.clear();
        self.pvc_state.clear();
        self.pvc_rpo_target.clear();
        self.action_started.clear();
        self.pvc_key_age.clear();
        for ((namespace, pvc), created) in self.keys.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let labels = vec![
                ("namespace".to_string(), namespace.clone()),
                ("pvc".to_string(), pvc.clone()),
            ];
            self.pvc_key_age
                .get_or_create(&labels)
                .set((now_unix - created).max(0.0));
        }
        for ((namespace, pvc), (verb, started)) in self.actions.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let labels = vec![
                ("namespace".to_string(), namespace.clone()),
                ("pvc".to_string(), pvc.clone()),
                ("verb".to_string(), verb.clone()),
            ];
            self.action_started.get_or_create(&labels).set(*started);
        }
        for ((namespace, pvc), s) in pvcs.iter() {
            let labels = vec![
                ("namespace".to_string(), namespace.clone()),
                ("pvc".to_string(), pvc.clone()),
                ("role".to_string(), s.role.clone()),
            ];
            if let Some(t) = s.last_sync {
                self.pvc_last_sync.get_or_create(&labels).set(t);
                self.pvc_rpo.get_or_create(&labels).set((now_unix - t).max(0.0));
            }
            if let Some(target) = s.rpo_target {
                self.pvc_rpo_target.get_or_create(&labels).set(target);
            }
            let mut with_state = labels.clone();
            with_state.push(("state".to_string(), s.state.clone()));
            self.pvc_state.get_or_create(&with_state).set(1);
        }
    }

    pub fn render(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.refresh_pvcs(now);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_pvc_gauges_follow_the_reports() {
        let m = Metrics::new();
        m.pvc_status(
            "app",
            "db",
            PvcStatus {
                role: "primary".into(),
                state: "Protected".into(),
                last_sync: Some(1000.0),
                rpo_target: Some(1200.0),
            },
        );
        m.set_cluster("east", "west");
        m.action_running("app", "db", "migrate", 1050.0);
        m.refresh_pvcs(1090.0);
        let mut text = String::new();
        encode(&mut text, &m.registry).expect("encode");
        assert!(
            text.contains("volsync_dr_pvc_rpo_seconds{namespace=\"app\",pvc=\"db\",role=\"primary\"} 90.0"),
            "{text}"
        );
        assert!(
            text.contains("volsync_dr_pvc_state{namespace=\"app\",pvc=\"db\",role=\"primary\",state=\"Protected\"} 1"),
            "{text}"
        );
        // What the shipped alerts read (tests/alerts/volsync-dr.test.yaml uses these shapes).
        for line in [
            "volsync_dr_pvc_rpo_target_seconds{namespace=\"app\",pvc=\"db\",role=\"primary\"} 1200.0",
            "volsync_dr_action_started_timestamp_seconds{namespace=\"app\",pvc=\"db\",verb=\"migrate\"} 1050.0",
            "volsync_dr_cluster_info{cluster=\"east\",peer=\"west\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        m.action_ended("app", "db");
        m.refresh_pvcs(1091.0);
        let mut text = String::new();
        encode(&mut text, &m.registry).expect("encode");
        assert!(!text.contains("volsync_dr_action_started_timestamp_seconds{"), "{text}");
        m.pvc_forget("app", "db");
        m.refresh_pvcs(1100.0);
        let mut text = String::new();
        encode(&mut text, &m.registry).expect("encode");
        assert!(!text.contains("pvc=\"db\""), "{text}");
    }
}
