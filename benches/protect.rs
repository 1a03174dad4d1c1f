//! Protect N PVCs on two test clusters with two real `volsync-dr run` processes and report:
//! seconds until all are Protected, API writes per PVC, writes on a second full pass with
//! nothing changed (must be 0; leader election's Lease renewals are counted apart), and the
//! memory of the primary's process.
//!
//! `cargo bench --bench protect` (N = 100 and 1000; `BENCH_N=50,200` to choose).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{DrProcess, settle};
use testkit::apiserver::store::{PatchType, Subresource, WriteOptions};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const NS: &str = "default";

struct Result {
    n: usize,
    seconds_to_protected: f64,
    writes_a: u64,
    writes_b: u64,
    /// Writes of the second pass, Lease renewals apart.
    second_pass_writes: u64,
    lease_renewals: u64,
    second_pass_reads: u64,
    rss_kib: u64,
    peak_kib: u64,
    /// The restarted primary's, once its full pass over every PVC is done and quiet.
    steady_kib: u64,
    second_pass_seconds: f64,
}

fn count_state(pair: &ClusterPair, state: &str) -> usize {
    let rt = pair
        .a
        .store()
        .find_type("", "v1", "persistentvolumeclaims")
        .expect("pvc type");
    let (items, _) = pair
        .a
        .store()
        .list(&rt, Some(NS), &Default::default(), &Default::default());
    items
        .iter()
        .filter(|p| p["metadata"]["annotations"]["volsync-dr.io/state"] == state)
        .count()
}

fn lease_writes(server: &testkit::apiserver::ApiServer) -> u64 {
    ["create", "update", "patch"]
        .iter()
        .filter_map(|verb| {
            server
                .stats()
                .by_verb_resource
                .get(&format!("{verb} leases.coordination.k8s.io"))
                .copied()
        })
        .sum()
}

async fn run(n: usize) -> Result {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let mut b = DrProcess::start(&pair, SECONDARY, &[]).await;
    let rt = pair
        .a
        .store()
        .find_type("", "v1", "persistentvolumeclaims")
        .expect("pvc type");
    for i in 0..n {
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("data-{i:04}"), "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        pair.a
            .store()
            .create(&rt, NS, pvc, &WriteOptions::default())
            .expect("create PVC");
    }
    settle(&pair, Duration::from_secs(1), Duration::from_secs(60)).await;

    // Protect all at once, as `kubectl annotate pvc --all` would.
    pair.a.reset_stats();
    pair.b.reset_stats();
    let start = Instant::now();
    for i in 0..n {
        let patch = json!({"metadata": {"annotations": {"volsync-dr.io/protect": "true"}}});
        pair.a
            .store()
            .patch(
                &rt,
                NS,
                &format!("data-{i:04}"),
                PatchType::Merge,
                &patch,
                Subresource::Main,
                &WriteOptions::default(),
            )
            .expect("annotate");
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    while count_state(&pair, "Protected") < n {
        assert!(
            Instant::now() < deadline,
            "not all Protected after 30 minutes; log:\n{}",
            a.log_text()
        );
        // Counting clones every PVC: at 10,000 look once a second, not ten times.
        tokio::time::sleep(Duration::from_millis((n as u64 / 10).max(100))).await;
    }
    let seconds_to_protected = start.elapsed().as_secs_f64();
    // Let the status of the first syncs land too, then count.
    settle(&pair, Duration::from_secs(2), Duration::from_secs(300)).await;
    let (writes_a, writes_b) = (pair.a.stats().writes(), pair.b.stats().writes());
    for (cluster, server) in [(PRIMARY, &pair.a), (SECONDARY, &pair.b)] {
        let per_pvc: Vec<String> = server
            .stats()
            .by_verb_resource
            .iter()
            .filter(|(k, _)| ["create", "update", "patch", "delete"].contains(&k.split(' ').next().unwrap_or("")))
            .map(|(k, v)| format!("{k}: {:.2}", *v as f64 / n as f64))
            .collect();
        eprintln!("N={n} writes per PVC on {cluster}: {}", per_pvc.join(", "));
    }
    let (rss_kib, peak_kib) = a.memory_kib().unwrap_or((0, 0));

    // Second pass: both processes start over (a full resync of every PVC) with nothing changed:
    // VolSync (the simulator) is paused so no sync lands meanwhile, and what it changed last
    // has been mirrored before counting starts.
    pair.simulator.pause(PRIMARY);
    pair.simulator.pause(SECONDARY);
    settle(&pair, Duration::from_secs(2), Duration::from_secs(300)).await;
    pair.a.reset_stats();
    pair.b.reset_stats();
    let restarted = Instant::now();
    a.restart().await;
    b.restart().await;
    settle(&pair, Duration::from_secs(3), Duration::from_secs(600)).await;
    // The 3 s of quiet that `settle` waits for are not part of the pass.
    let second_pass_seconds = (restarted.elapsed().as_secs_f64() - 3.0).max(0.0);
    let steady_kib = a.memory_kib().map(|(rss, _)| rss).unwrap_or(0);
    // Leader election renews its Lease whatever the PVCs do: counted apart.
    let lease_renewals = lease_writes(&pair.a) + lease_writes(&pair.b);
    let second_pass_writes = pair.a.stats().writes() + pair.b.stats().writes() - lease_renewals;
    let second_pass_reads = pair.a.stats().count("get") + pair.b.stats().count("get");
    if second_pass_writes > 0 {
        eprintln!(
            "second-pass writes: A {:?} B {:?}",
            pair.a.stats().by_verb_resource,
            pair.b.stats().by_verb_resource
        );
    }
    Result {
        n,
        seconds_to_protected,
        writes_a,
        writes_b,
        second_pass_writes,
        lease_renewals,
        second_pass_reads,
        rss_kib,
        peak_kib,
        steady_kib,
        second_pass_seconds,
    }
}

fn main() {
    let ns: Vec<usize> = std::env::var("BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| PVCs | seconds until all Protected | API writes per PVC (primary + secondary) | writes on a second full pass (+ Lease renewals) | reads on the second pass | second pass s | primary RSS / peak after protecting (MiB) | primary RSS, restarted and steady (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in ns {
        let r = runtime.block_on(run(n));
        println!(
            "| {} | {:.1} | {:.2} ({:.2} + {:.2}) | {} (+ {}) | {} | {:.1} | {:.1} / {:.1} | {:.1} |",
            r.n,
            r.seconds_to_protected,
            (r.writes_a + r.writes_b) as f64 / r.n as f64,
            r.writes_a as f64 / r.n as f64,
            r.writes_b as f64 / r.n as f64,
            r.second_pass_writes,
            r.lease_renewals,
            r.second_pass_reads,
            r.second_pass_seconds,
            r.rss_kib as f64 / 1024.0,
            r.peak_kib as f64 / 1024.0,
            r.steady_kib as f64 / 1024.0,
        );
    }
}
