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
        Metrics {
            registry,
            admission,
            admission_seconds,
            reconciles,
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
