//! Prometheus metrics (prometheus-client, OpenMetrics text on the admin port's /metrics).

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
    policy_sweeps: Family<Labels, Counter>,
    policy_sweep_seconds: Histogram,
    leader: prometheus_client::metrics::gauge::Gauge,
}

/// 0.5 s to ~2.3 h: actions last from seconds (a small sync) to hours (a large one).
fn action_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.5, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("volsync_dr");
        let admission = Family::<Labels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by result",
            admission.clone(),
        );
        // 100 µs to ~100 ms: the webhook must answer in milliseconds.
        let admission_seconds = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0001, 2.0, 11,
        ));
        registry.register(
            "admission_duration_seconds",
            "Time to decide one admission review",
            admission_seconds.clone(),
        );
        let reconciles = Family::<Labels, Counter>::default();
        registry.register("reconciles", "PVC reconciles, by result and reason", reconciles.clone());
        let action_seconds = Family::<Labels, Histogram>::new_with_constructor(action_buckets as fn() -> Histogram);
        registry.register(
            "action_duration_seconds",
            "Time from an action's start to its end, by verb and outcome",
            action_seconds.clone(),
        );
        let app_down_seconds = Family::<Labels, Histogram>::new_with_constructor(action_buckets as fn() -> Histogram);
        registry.register(
            "action_app_down_seconds",
            "Time an action kept the application scaled down (the outage users see), by verb",
            app_down_seconds.clone(),
        );
        let action_steps = Family::<Labels, Counter>::default();
        registry.register(
            "action_steps",
            "Action steps finished, by verb and step",
            action_steps.clone(),
        );
        let policy_changes = Family::<Labels, Counter>::default();
        registry.register(
            "policy_changes",
            "PVCs a DRPolicy protected, updated or released, by reason",
            policy_changes.clone(),
        );
        let policy_sweeps = Family::<Labels, Counter>::default();
        registry.register(
            "policy_sweeps",
            "Passes of the policies over every PVC, by result",
            policy_sweeps.clone(),
        );
        // 10 ms to ~80 s: one pass over up to tens of thousands of cached PVCs.
        let policy_sweep_seconds = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.01, 2.0, 14,
        ));
        registry.register(
            "policy_sweep_duration_seconds",
            "Time of one pass of the policies over every PVC, writes included",
            policy_sweep_seconds.clone(),
        );
        let leader = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the lease and runs the watcher",
            leader.clone(),
        );
        Metrics {
            leader,
            policy_changes,
            policy_sweeps,
            policy_sweep_seconds,
            registry,
            admission,
            admission_seconds,
            reconciles,
            action_seconds,
            app_down_seconds,
            action_steps,
        }
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

    pub fn policy_sweep(&self, result: &str, seconds: f64) {
        self.policy_sweeps
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
        self.policy_sweep_seconds.observe(seconds);
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn render(&self) -> String {
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
