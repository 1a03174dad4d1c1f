//! A DRPolicy that selects N PVCs that already exist (N = 2000 by default; `BENCH_N=500` to
//! choose), on two test clusters with two real `volsync-dr run` processes. Reports seconds from
//! the policy's creation until every PVC carries it and until every PVC is Protected, the
//! sweeps' own time (from the process's metrics), the time of a later sweep that changes
//! nothing, and the primary's memory before and after.
//!
//! `cargo bench --bench policy`

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{DrProcess, settle};
use testkit::apiserver::store::{PatchType, Subresource, WriteOptions};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const NAMESPACES: usize = 10;

fn pvcs_with(pair: &ClusterPair, check: impl Fn(&Value) -> bool) -> usize {
    let rt = pair
        .a
        .store()
        .find_type("", "v1", "persistentvolumeclaims")
        .expect("pvc type");
    let (items, _) = pair.a.store().list(&rt, None, &Default::default(), &Default::default());
    items.iter().filter(|p| check(p)).count()
}

async fn wait_all(pair: &ClusterPair, n: usize, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    while pvcs_with(pair, &check) < n {
        assert!(Instant::now() < deadline, "not all {what} after 30 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A metric's value from the admin port's /metrics.
async fn metric(dr: &DrProcess, name: &str) -> f64 {
    let reply = testkit::http::request(dr.admin, "GET", "/metrics", "text/plain", "").await;
    let text = reply.body.as_str().unwrap_or("").to_string();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "volsync-dr.io/v1alpha1", "kind": "DRPolicy", "metadata": {"name": "bench"}, "spec": spec})
}

async fn run(n: usize) {
    let pair = ClusterPair::start().await;
    for i in 0..NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": format!("app-{i}"), "labels": {"dr": "on"}}});
        pair.create(PRIMARY, ns.clone());
        pair.create(SECONDARY, ns);
    }
    let rt = pair
        .a
        .store()
        .find_type("", "v1", "persistentvolumeclaims")
        .expect("pvc type");
    for i in 0..n {
        let ns = format!("app-{}", i % NAMESPACES);
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("data-{i:04}"), "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        pair.a
            .store()
            .create(&rt, &ns, pvc, &WriteOptions::default())
            .expect("create PVC");
    }
    let a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    settle(&pair, Duration::from_secs(1), Duration::from_secs(120)).await;
    let (rss_before, _) = a.memory_kib().unwrap_or((0, 0));

    let policies = pair
        .a
        .store()
        .find_type("volsync-dr.io", "v1alpha1", "drpolicies")
        .expect("DRPolicy served");
    let start = Instant::now();
    pair.a
        .store()
        .create(
            &policies,
            "",
            policy(json!({"namespaceSelector": {"matchLabels": {"dr": "on"}}})),
            &WriteOptions::default(),
        )
        .expect("create policy");
    wait_all(&pair, n, "carrying the policy", |p| {
        p["metadata"]["annotations"]["volsync-dr.io/policy"] == "bench"
    })
    .await;
    let seconds_to_policy = start.elapsed().as_secs_f64();
    wait_all(&pair, n, "Protected", |p| {
        p["metadata"]["annotations"]["volsync-dr.io/state"] == "Protected"
    })
    .await;
    let seconds_to_protected = start.elapsed().as_secs_f64();
    settle(&pair, Duration::from_secs(2), Duration::from_secs(300)).await;
    let first_sweeps = metric(&a, "volsync_dr_policy_sweeps_total").await;
    let first_sweep_seconds = metric(&a, "volsync_dr_policy_sweep_duration_seconds_sum").await;
    let (rss_after, peak) = a.memory_kib().unwrap_or((0, 0));

    // A policy change that changes no PVC: one sweep over every cached PVC, no writes.
    pair.a.reset_stats();
    pair.a
        .store()
        .patch(
            &policies,
            "",
            "bench",
            PatchType::Merge,
            &json!({"spec": {"storageClassMapping": {"unused": "unused-b"}}}),
            Subresource::Main,
            &WriteOptions::default(),
        )
        .expect("patch policy");
    let deadline = Instant::now() + Duration::from_secs(300);
    while metric(&a, "volsync_dr_policy_sweeps_total").await <= first_sweeps {
        assert!(Instant::now() < deadline, "no sweep after the policy change");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_sweep_seconds = metric(&a, "volsync_dr_policy_sweep_duration_seconds_sum").await - first_sweep_seconds;
    settle(&pair, Duration::from_secs(1), Duration::from_secs(60)).await;
    let pvc_writes = pair
        .a
        .stats()
        .by_verb_resource
        .iter()
        .filter(|(k, _)| {
            k.contains("persistentvolumeclaims")
                && !k.starts_with("get")
                && !k.starts_with("list")
                && !k.starts_with("watch")
        })
        .map(|(_, v)| *v)
        .sum::<u64>();

    println!(
        "| PVCs | s until all carry the policy | s until all Protected | sweeps (s in sweeps) | no-op sweep s (PVC writes) | primary RSS before / after / peak MiB |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {n} | {seconds_to_policy:.1} | {seconds_to_protected:.1} | {first_sweeps} ({first_sweep_seconds:.2}) | {idle_sweep_seconds:.3} ({pvc_writes}) | {:.1} / {:.1} / {:.1} |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n));
}
