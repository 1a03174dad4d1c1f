//! Orchestration overhead of each action: its duration minus the time it waited for the
//! (simulated) VolSync syncs, and the application's down time, on two test clusters with real
//! `volsync-dr run` processes (release build).
//!
//! The step timeline is watched from outside: the PVC's `action-step` annotation is read
//! straight from the test API server's store every 2 ms, so a step's time is from when it was
//! recorded to when the next one was. Sync time = the time spent in `wait-for-sync` /
//! `wait-for-local-sync` (the simulator's tick is 50 ms; a real sync takes what the data
//! takes). Group rows: a StatefulSet of 3 and of 10 ordinals migrated from its first PVC.
//! Run: `cargo bench --bench actions` (`BENCH_RUNS`, default 3).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{DrProcess, annotate, annotation, deployment, wait_annotation, wait_latest_image};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const NS: &str = "default";

fn pvc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS, "annotations": {"volsync-dr.io/protect": "true"}},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

/// A StatefulSet `web` whose claim template `data` gives `data-web-N` per ordinal.
fn web(replicas: i32, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "web", "namespace": NS, "annotations": annotations},
           "spec": {"replicas": replicas, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "busybox"}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}})
}

/// A StatefulSet with `volumes` ordinals, each protected with 100 files of 4 KiB, migrated by a
/// request on its first ordinal: the whole group moves.
async fn group_migrate(volumes: usize, i: usize) -> Timeline {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    let names: Vec<String> = (0..volumes).map(|n| format!("data-web-{n}")).collect();
    for name in &names {
        pair.create_bound_pvc(PRIMARY, pvc(name)).await;
        for f in 0..100 {
            pair.write(PRIMARY, NS, name, &format!("file-{f}"), &"x".repeat(4096));
        }
    }
    pair.create(PRIMARY, web(volumes as i32, json!({})));
    for name in &names {
        wait_annotation(&pair, PRIMARY, name, "volsync-dr.io/state", "Protected").await;
        wait_annotation(&pair, SECONDARY, name, "volsync-dr.io/role", "secondary").await;
        wait_latest_image(&pair, name).await;
    }
    pair.create(SECONDARY, web(0, json!({})));
    run(&pair, PRIMARY, "data-web-0", &format!("migrate:{i}")).await
}

/// One action's timeline as seen from outside.
struct Timeline {
    total: Duration,
    per_step: BTreeMap<String, Duration>,
    message: String,
}

impl Timeline {
    fn sync(&self) -> Duration {
        ["wait-for-sync", "wait-for-local-sync"]
            .iter()
            .filter_map(|s| self.per_step.get(*s))
            .sum()
    }

    fn app_down(&self) -> Option<f64> {
        let text = self
            .message
            .split("down for ")
            .nth(1)
            .or_else(|| self.message.split("started here ").nth(1))?;
        text.split('s').next()?.parse().ok()
    }
}

/// Request `request` on `cluster`'s PVC `pvc` and follow it until it has finished.
async fn run(pair: &ClusterPair, cluster: &str, pvc: &str, request: &str) -> Timeline {
    annotate(pair, cluster, pvc, "volsync-dr.io/action", request);
    let start = Instant::now();
    let mut per_step: BTreeMap<String, Duration> = BTreeMap::new();
    let mut current: Option<(String, Instant)> = None;
    let deadline = start + Duration::from_secs(120);
    loop {
        let step = annotation(pair, cluster, pvc, "volsync-dr.io/action-step");
        let now = Instant::now();
        if step.as_ref() != current.as_ref().map(|(s, _)| s) {
            if let Some((s, since)) = current.take() {
                *per_step.entry(s).or_default() += now - since;
            }
            current = step.map(|s| (s, now));
        }
        if annotation(pair, cluster, pvc, "volsync-dr.io/last-action").as_deref() == Some(request) {
            break;
        }
        assert!(now < deadline, "{request} did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = start.elapsed();
    let message = annotation(pair, cluster, pvc, "volsync-dr.io/action-message").unwrap_or_default();
    assert_eq!(
        annotation(pair, cluster, pvc, "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded"),
        "{request}: {message}"
    );
    Timeline {
        total,
        per_step,
        message,
    }
}

struct Row {
    verb: String,
    runs: Vec<Timeline>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut rows = vec![
        Row {
            verb: "sync-now".into(),
            runs: vec![],
        },
        Row {
            verb: "migrate".into(),
            runs: vec![],
        },
        Row {
            verb: "failover".into(),
            runs: vec![],
        },
        Row {
            verb: "failback".into(),
            runs: vec![],
        },
        Row {
            verb: "migrate, group of 3 (StatefulSet)".into(),
            runs: vec![],
        },
        Row {
            verb: "migrate, group of 10 (StatefulSet)".into(),
            runs: vec![],
        },
    ];
    for i in 0..runs {
        let pair = ClusterPair::start().await;
        let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
        let mut b = DrProcess::start(&pair, SECONDARY, &[]).await;
        pair.create_bound_pvc(PRIMARY, pvc("db")).await;
        pair.create(PRIMARY, deployment("app", "db", 2, json!({})));
        for f in 0..100 {
            pair.write(PRIMARY, NS, "db", &format!("file-{f}"), &"x".repeat(4096));
        }
        wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
        wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/role", "secondary").await;
        pair.create(
            SECONDARY,
            deployment("app", "db", 0, json!({"volsync-dr.io/replicas": "2"})),
        );
        wait_latest_image(&pair, "db").await;

        rows[0]
            .runs
            .push(run(&pair, PRIMARY, "db", &format!("sync-now:{i}")).await);
        // Migrate to B and back to A, so the next verbs start from A again.
        rows[1]
            .runs
            .push(run(&pair, PRIMARY, "db", &format!("migrate:{i}")).await);
        wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/state", "Protected").await;
        run(&pair, SECONDARY, "db", &format!("migrate:back-{i}")).await;
        wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
        wait_latest_image(&pair, "db").await;

        a.kill().await;
        pair.a.stop().await;
        pair.simulator.pause(PRIMARY);
        rows[2]
            .runs
            .push(run(&pair, SECONDARY, "db", &format!("failover:{i}")).await);
        pair.a.restart().await.expect("A back");
        pair.simulator.resume(PRIMARY);
        a.start_again().await;
        wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Degraded").await;
        rows[3]
            .runs
            .push(run(&pair, SECONDARY, "db", &format!("failback:{i}")).await);
        b.kill().await;
        a.kill().await;
        rows[4].runs.push(group_migrate(3, i).await);
        rows[5].runs.push(group_migrate(10, i).await);
    }

    println!("| verb | runs | action s (median) | waiting for syncs s | orchestration overhead s | app down s |");
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        let total = median(row.runs.iter().map(|t| t.total.as_secs_f64()).collect());
        let sync = median(row.runs.iter().map(|t| t.sync().as_secs_f64()).collect());
        let overhead = median(row.runs.iter().map(|t| (t.total - t.sync()).as_secs_f64()).collect());
        let down = median(row.runs.iter().filter_map(Timeline::app_down).collect());
        let down = if down.is_nan() {
            "-".to_string()
        } else {
            format!("{down:.2}")
        };
        println!(
            "| {} | {} | {total:.2} | {sync:.2} | {overhead:.2} | {down} |",
            row.verb,
            row.runs.len()
        );
    }
    println!();
    println!("slowest steps (median s over runs, > 0.15 s):");
    for row in &rows {
        let mut steps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for t in &row.runs {
            for (s, d) in &t.per_step {
                steps.entry(s.as_str()).or_default().push(d.as_secs_f64());
            }
        }
        for (s, v) in steps {
            let m = median(v);
            if m > 0.15 {
                println!("  {} / {s}: {m:.2}", row.verb);
            }
        }
    }
}
