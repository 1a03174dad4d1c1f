//! Actions with real `volsync-dr run` processes: `sync-now` moves the newest data, survives a
//! SIGKILL in the middle, times out cleanly; every refusal without the webhook, with its
//! message and nothing changed. (The flows themselves are in `flows.rs`.)

mod support;

use serde_json::{Value, json};
use support::{DrProcess, annotate, annotation, deployment, replicas, wait_annotation, wait_latest_image};
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

fn one_time_source(pair: &ClusterPair, name: &str) -> Option<Value> {
    pair.object(PRIMARY, "replicationsources", NS, &format!("rs-{name}-latest"))
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

fn message(pair: &ClusterPair, cluster: &str, name: &str) -> String {
    annotation(pair, cluster, name, "volsync-dr.io/action-message").unwrap_or_default()
}

async fn wait_failed(pair: &ClusterPair, cluster: &str, name: &str, request: &str) -> String {
    wait_annotation(pair, cluster, name, "volsync-dr.io/last-action", request).await;
    assert_eq!(
        annotation(pair, cluster, name, "volsync-dr.io/action-phase").as_deref(),
        Some("Failed")
    );
    message(pair, cluster, name)
}

fn scheduled_source(pair: &ClusterPair, name: &str) -> Option<Value> {
    pair.object(PRIMARY, "replicationsources", NS, &format!("rs-{name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_without_the_webhook() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc("plain", false)).await;
    annotate(&pair, PRIMARY, "plain", "volsync-dr.io/action", "sync-now:1");
    let text = wait_failed(&pair, PRIMARY, "plain", "sync-now:1").await;
    assert!(
        text.contains("not protected") && text.contains("nothing was changed"),
        "{text}"
    );

    pair.create_bound_pvc(PRIMARY, pvc("db", true)).await;
    pair.create(PRIMARY, deployment("app", "db", 1, json!({})));
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;

    // Failover on the primary.
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "failover:1");
    let text = wait_failed(&pair, PRIMARY, "db", "failover:1").await;
    assert!(text.contains("failover runs on the secondary"), "{text}");

    // Failback with no failover behind it.
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "failback:1");
    let text = wait_failed(&pair, PRIMARY, "db", "failback:1").await;
    assert!(
        text.contains("is not primary") && text.contains("request migrate") && text.contains("nothing was changed"),
        "{text}"
    );

    // Migrate to a cluster where the application does not exist: refused before any change.
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "migrate:1");
    let text = wait_failed(&pair, PRIMARY, "db", "migrate:1").await;
    assert!(
        text.contains("Deployment/app mounts the PVC on cluster-a but does not exist on cluster cluster-b")
            && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(replicas(&pair, PRIMARY, "app"), (1, None), "the application untouched");
    assert!(scheduled_source(&pair, "db").is_some(), "protection untouched");

    // On the secondary, sync-now is refused by the secondary's own instance.
    wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/role", "secondary").await;
    annotate(&pair, SECONDARY, "db", "volsync-dr.io/action", "sync-now:2");
    let text = wait_failed(&pair, SECONDARY, "db", "sync-now:2").await;
    assert!(text.contains("runs on the primary"), "{text}");

    // Migrate with the peer unreachable.
    pair.create(SECONDARY, deployment("app", "db", 0, json!({})));
    pair.b.stop().await;
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "migrate:2");
    let text = wait_failed(&pair, PRIMARY, "db", "migrate:2").await;
    assert!(
        text.contains("cluster cluster-b is unreachable") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(replicas(&pair, PRIMARY, "app"), (1, None), "the application untouched");
    assert!(scheduled_source(&pair, "db").is_some(), "protection untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_while_one_runs_is_refused() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc("db", true)).await;
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    pair.simulator.pause(PRIMARY);
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "sync-now:1");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-step", "wait-for-sync").await;
    // Past the webhook (it is not running here), the request changes mid-run.
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "sync-now:2");
    pair.wait_for(30, "ActionRefused Event", |p| {
        let rt = p.server(PRIMARY).store().find_type("events.k8s.io", "v1", "events")?;
        let (events, _) = p
            .server(PRIMARY)
            .store()
            .list(&rt, Some(NS), &Default::default(), &Default::default());
        events.iter().any(|e| e["reason"] == "ActionRefused").then_some(())
    })
    .await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-running").as_deref(),
        Some("sync-now:1"),
        "the running request keeps its steps"
    );
    pair.simulator.resume(PRIMARY);
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", "sync-now:2").await;
    let text = message(&pair, PRIMARY, "db");
    assert!(
        text.contains("one-time sync finished") && text.contains("sync-now:2 made while sync-now:1 ran was refused"),
        "{text}"
    );
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_with_the_old_primary_unreachable_is_refused() {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc("db", true)).await;
    pair.write(PRIMARY, NS, "db", "table", "v1");
    wait_latest_image(&pair, "db").await;
    a.kill().await;
    pair.a.stop().await;
    pair.simulator.pause(PRIMARY);
    annotate(&pair, SECONDARY, "db", "volsync-dr.io/action", "failover:1");
    wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/action-phase", "Succeeded").await;
    assert!(
        message(&pair, SECONDARY, "db").contains("no workload mounts the PVC"),
        "{}",
        message(&pair, SECONDARY, "db")
    );
    annotate(&pair, SECONDARY, "db", "volsync-dr.io/action", "failback:1");
    let text = wait_failed(&pair, SECONDARY, "db", "failback:1").await;
    assert!(
        text.contains("cluster cluster-a is unreachable") && text.contains("failback needs it"),
        "{text}"
    );
    assert_eq!(
        annotation(&pair, SECONDARY, "db", "volsync-dr.io/role").as_deref(),
        Some("primary"),
        "still the primary"
    );
}
