//! Actions with real `volsync-dr run` processes: `sync-now` moves the newest data, survives a
//! SIGKILL in the middle, times out cleanly; refusals without the webhook. (migrate, failover
//! and failback are not built yet; requesting them is refused without changing anything.)

mod support;

use serde_json::{Value, json};
use support::{DrProcess, annotation, patch_pvc, wait_annotation};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const NS: &str = "default";

fn pvc(name: &str, protect: bool) -> Value {
    let annotations = if protect {
        json!({"volsync-dr.io/protect": "true"})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS, "annotations": annotations},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

fn annotate(pair: &ClusterPair, cluster: &str, name: &str, key: &str, value: &str) {
    patch_pvc(pair, cluster, name, json!({"metadata": {"annotations": {key: value}}}));
}

fn one_time_source(pair: &ClusterPair, name: &str) -> Option<Value> {
    pair.get(
        PRIMARY,
        "volsync.backube",
        "v1alpha1",
        "replicationsources",
        NS,
        &format!("rs-{name}-latest"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_moves_the_newest_data_and_resumes_after_a_crash() {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc("db", true)).await;
    pair.write(PRIMARY, NS, "db", "table", "v1");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    pair.wait_for(30, "first sync", |p| {
        (p.read(SECONDARY, NS, "db", "table").as_deref() == Some("v1")).then_some(())
    })
    .await;

    // New data; VolSync held back so the action stops in its wait step; then a crash there.
    pair.write(PRIMARY, NS, "db", "table", "v2");
    pair.simulator.pause(PRIMARY);
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "sync-now:1");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-step", "wait-for-sync").await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Running")
    );
    let once = one_time_source(&pair, "db").expect("rs-db-latest created");
    assert_eq!(once["spec"]["trigger"], json!({"manual": "sync-now:1"}));
    a.kill().await;
    pair.simulator.resume(PRIMARY);
    a.restart().await;

    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", "sync-now:1").await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded")
    );
    assert_eq!(
        pair.read(SECONDARY, NS, "db", "table").as_deref(),
        Some("v2"),
        "the newest data is on the peer"
    );
    assert!(
        one_time_source(&pair, "db").is_none(),
        "the one-time ReplicationSource is removed"
    );
    assert!(annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-step").is_none());
    // The request stays (GitOps-friendly) and does not run again.
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action").as_deref(),
        Some("sync-now:1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_times_out_fails_cleanly_and_a_new_id_runs_again() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &["--action-sync-timeout-seconds", "2"]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc("db", true)).await;
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    pair.simulator.pause(PRIMARY);
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "sync-now:a");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", "sync-now:a").await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Failed")
    );
    let message = annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-message").unwrap_or_default();
    assert!(
        message.contains("did not finish within 2s") && message.contains("new ID"),
        "{message}"
    );
    assert!(
        one_time_source(&pair, "db").is_none(),
        "nothing half-done is left behind"
    );

    pair.simulator.resume(PRIMARY);
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "sync-now:b");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", "sync-now:b").await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_without_the_webhook() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc("plain", false)).await;
    annotate(&pair, PRIMARY, "plain", "volsync-dr.io/action", "sync-now:1");
    wait_annotation(&pair, PRIMARY, "plain", "volsync-dr.io/action-phase", "Failed").await;
    let message = annotation(&pair, PRIMARY, "plain", "volsync-dr.io/action-message").unwrap_or_default();
    assert!(
        message.contains("not protected") && message.contains("nothing was changed"),
        "{message}"
    );

    pair.create_bound_pvc(PRIMARY, pvc("db", true)).await;
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "migrate:1");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase", "Failed").await;
    let message = annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-message").unwrap_or_default();
    assert!(message.contains("migrate is not built"), "{message}");
    assert!(
        pair.get(
            PRIMARY,
            "volsync.backube",
            "v1alpha1",
            "replicationsources",
            NS,
            "rs-db"
        )
        .is_some(),
        "protection untouched"
    );

    // On the secondary, sync-now is refused by the secondary's own instance.
    wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/role", "secondary").await;
    annotate(&pair, SECONDARY, "db", "volsync-dr.io/action", "sync-now:2");
    wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/action-phase", "Failed").await;
    let message = annotation(&pair, SECONDARY, "db", "volsync-dr.io/action-message").unwrap_or_default();
    assert!(message.contains("runs on the primary"), "{message}");
}
