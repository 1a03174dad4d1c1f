//! `volsync-dr status` on two test clusters: a protected PVC shows on both sides with its role,
//! state, last sync and RPO age; `-o json` carries the same; an unreachable peer is a warning,
//! and this cluster's rows are still shown.

mod support;

use std::process::Output;

use serde_json::{Value, json};
use support::DrProcess;
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

fn status(pair: &ClusterPair, extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .args([
            "status",
            "--cluster-name",
            PRIMARY,
            "--peer-name",
            SECONDARY,
            "--timeout-seconds",
            "3",
        ])
        .arg("--peer-kubeconfig")
        .arg(pair.kubeconfig(SECONDARY))
        .args(extra)
        .env("KUBECONFIG", pair.kubeconfig(PRIMARY))
        .output()
        .expect("volsync-dr status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_both_sides_and_survives_a_lost_peer() {
    let pair = ClusterPair::start().await;
    let dr_a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(
        PRIMARY,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "db", "namespace": "default", "annotations": {"volsync-dr.io/protect": "true"}},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    pair.wait_for(30, "db synced once", |p| {
        let pvc = p.object(PRIMARY, "persistentvolumeclaims", "default", "db")?;
        pvc["metadata"]["annotations"]["volsync-dr.io/last-sync-time"]
            .as_str()
            .map(|_| ())
    })
    .await;

    // The same, as metrics on the leader: per-PVC last sync, RPO age and state; the peer probe.
    let text = scrape(&dr_a).await;
    for line in [
        "volsync_dr_pvc_rpo_seconds{namespace=\"default\",pvc=\"db\",role=\"primary\"} ",
        "volsync_dr_pvc_last_sync_timestamp_seconds{namespace=\"default\",pvc=\"db\",role=\"primary\"} ",
        "volsync_dr_pvc_state{namespace=\"default\",pvc=\"db\",role=\"primary\",state=\"Protected\"} 1",
        "volsync_dr_peer_reachable 1",
        "volsync_dr_leader 1",
    ] {
        assert!(text.lines().any(|l| l.starts_with(line)), "{line} missing:\n{text}");
    }

    let out = status(&pair, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("CLUSTER") && lines[0].contains("RPO"), "{text}");
    let a = lines.iter().find(|l| l.starts_with(PRIMARY)).expect("cluster-a row");
    let b = lines.iter().find(|l| l.starts_with(SECONDARY)).expect("cluster-b row");
    assert!(
        a.contains(" db ") && a.contains("primary") && a.contains("Protected"),
        "{text}"
    );
    assert!(b.contains(" db ") && b.contains("secondary"), "{text}");

    let out = status(&pair, &["-o", "json"]);
    assert!(out.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let primary = rows.iter().find(|r| r["cluster"] == PRIMARY).expect("primary");
    assert_eq!(primary["role"], "primary");
    assert_eq!(primary["peer"], SECONDARY);
    assert!(
        primary["lastSync"].is_string() && primary["rpoSeconds"].as_i64().is_some_and(|s| s >= 0),
        "{primary}"
    );

    let out = status(&pair, &["-o", "yaml"]);
    assert!(out.status.success());
    let rows: Vec<Value> = serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).expect("yaml");
    assert_eq!(rows.len(), 2);

    // The peer's API server gone: a warning, and this cluster's row.
    pair.b.stop().await;
    let out = status(&pair, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: peer cluster cluster-b not read"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with(PRIMARY)), "{text}");
    assert!(!text.lines().any(|l| l.starts_with(SECONDARY)), "{text}");
    // The probe (every 10 s) reports the peer gone.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(25);
    while !scrape(&dr_a).await.lines().any(|l| l == "volsync_dr_peer_reachable 0") {
        assert!(tokio::time::Instant::now() < deadline, "peer_reachable never went to 0");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn scrape(dr: &DrProcess) -> String {
    let reply = testkit::http::request(dr.admin, "GET", "/metrics", "text/plain", "").await;
    reply.body.as_str().unwrap_or("").to_string()
}
