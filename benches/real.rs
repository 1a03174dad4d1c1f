//! On two real control planes (the real tier of the tests), with volsync-dr deployed as a user
//! deploys it:
//! - webhook admission latency as kube-apiserver itself measures it
//!   (`apiserver_admission_webhook_admission_duration_seconds`) over N PVC creates;
//! - protecting those N PVCs: seconds until all are `Protected`, API writes per PVC made by
//!   volsync-dr's ServiceAccounts on both clusters (from the API servers' audit logs), and the
//!   primary process's memory.
//!
//! `cargo bench --bench real` (N = 1000; `BENCH_N=200` to choose).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use testkit::realk8s::{RealCluster, RealPair, deploy};

const NS: &str = "bench";
const WEBHOOK: &str = "pvc.volsync-dr.io";
const OPERATOR: &str = "system:serviceaccount:volsync-dr:volsync-dr";

/// The webhook's admission-duration histogram for PVC creates: (upper bound, cumulative count).
async fn admission_histogram(cluster: &RealCluster) -> Vec<(f64, f64)> {
    let text = cluster.kubectl().ok(&["get", "--raw", "/metrics"]).await;
    let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_admission_webhook_admission_duration_seconds_bucket{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap_or_default();
        let wanted = labels.contains(&format!("name=\"{WEBHOOK}\""))
            && labels.contains("operation=\"CREATE\"")
            && labels.contains("type=\"admit\"");
        let le = labels
            .split(',')
            .find_map(|l| l.strip_prefix("le=\""))
            .map(|l| l.trim_end_matches('"').to_string());
        if let (true, Some(le)) = (wanted, le) {
            *buckets.entry(le).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    let mut out: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(le, count)| {
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(0.0)
                },
                count,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The q-quantile of a cumulative histogram, interpolated inside its bucket as Prometheus's
/// `histogram_quantile` does.
fn quantile(hist: &[(f64, f64)], q: f64) -> f64 {
    let total = hist.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in hist {
        if count >= rank {
            if bound.is_infinite() {
                return lower.0;
            }
            let within = if count > lower.1 {
                (rank - lower.1) / (count - lower.1)
            } else {
                0.0
            };
            return lower.0 + (bound - lower.0) * within;
        }
        lower = (bound, count);
    }
    f64::NAN
}

fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let pair = RealPair::start().await;
    println!("control planes up in {:.1}s", pair.started_in.as_secs_f64());
    let (a, _b) = deploy(&pair, Path::new(env!("CARGO_BIN_EXE_volsync-dr"))).await;
    for c in [&pair.a, &pair.b] {
        c.kubectl().ok(&["create", "namespace", NS]).await;
    }

    let before = admission_histogram(&pair.a).await;
    let client = pair.a.client().await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, NS);
    let started = Instant::now();
    let mut client_ms: Vec<f64> = futures::stream::iter(0..n)
        .map(|i| {
            let pvcs = pvcs.clone();
            async move {
                let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
                    "metadata": {"name": format!("data-{i:04}"), "annotations": {"volsync-dr.io/protect": "true"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }))
                .expect("pvc");
                let t = Instant::now();
                pvcs.create(&PostParams::default(), &pvc).await.expect("create PVC");
                t.elapsed().as_secs_f64() * 1000.0
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let created_in = started.elapsed().as_secs_f64();
    let after = admission_histogram(&pair.a).await;
    let hist: Vec<(f64, f64)> = after
        .iter()
        .map(|&(bound, count)| {
            let earlier = before.iter().find(|b| b.0 == bound).map_or(0.0, |b| b.1);
            (bound, count - earlier)
        })
        .collect();
    let calls = hist.last().map_or(0.0, |b| b.1);
    let under_5ms = hist.iter().find(|b| b.0 == 0.005).map_or(0.0, |b| b.1);
    client_ms.sort_by(f64::total_cmp);
    let pct = |v: &[f64], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];

    // Protection of all of them.
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut protected = 0;
    while Instant::now() < deadline {
        let out = pair
            .a
            .kubectl()
            .ok(&[
                "-n",
                NS,
                "get",
                "pvc",
                "-o",
                "jsonpath={.items[*].metadata.annotations.volsync-dr\\.io/state}",
            ])
            .await;
        protected = out.split_whitespace().filter(|s| *s == "Protected").count();
        if protected == n {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let to_protected = started.elapsed().as_secs_f64();
    let (rss, peak) = a.process.pid().map(memory_kib).unwrap_or_default();
    let writes_a = pair.a.writes_by(OPERATOR);
    let writes_b = pair.b.writes_by(OPERATOR);
    let total = |w: &BTreeMap<String, u64>| w.values().sum::<u64>();

    println!("\n| measure | value |\n|---|---|");
    println!("| PVCs created | {n} in {created_in:.1}s (8 at a time) |");
    println!("| webhook calls the API server measured | {calls} |");
    println!(
        "| admission p50 / p99 (API server's histogram, interpolated in its buckets) | {:.2} ms / {:.2} ms |",
        quantile(&hist, 0.5) * 1000.0,
        quantile(&hist, 0.99) * 1000.0
    );
    println!(
        "| admissions under 5 ms (its smallest bucket) | {:.1}% |",
        100.0 * under_5ms / calls.max(1.0)
    );
    println!(
        "| PVC create round trip at the client p50 / p99 | {:.1} ms / {:.1} ms |",
        pct(&client_ms, 0.5),
        pct(&client_ms, 0.99)
    );
    println!("| all {n} Protected after | {to_protected:.1}s ({protected} Protected) |");
    println!(
        "| API writes per PVC by volsync-dr (cluster-a + cluster-b) | {:.2} ({:.2} + {:.2}) |",
        (total(&writes_a) + total(&writes_b)) as f64 / n as f64,
        total(&writes_a) as f64 / n as f64,
        total(&writes_b) as f64 / n as f64
    );
    println!(
        "| primary's RSS / peak | {:.1} MiB / {:.1} MiB |",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!("\nwrites on cluster-a by verb and resource: {writes_a:?}");
    println!("writes on cluster-b by verb and resource: {writes_b:?}");
}
