//! Split brain on the in-process tier: the old primary comes back after a failover and is
//! fenced at once, by its own instance or by the one that took over; a restart half-way through
//! fencing finishes it; a peer merely unreachable is never fenced; with fencing off it is only
//! reported; and failback keeps what the returning side wrote in a snapshot before replacing it.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    DrProcess, annotate, annotation, deployment, events_with_reason, holds_for, metric, metric_value, replicas,
    wait_annotation, wait_latest_image,
};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const NS: &str = "default";

fn pvc() -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "db", "namespace": NS, "annotations": {"volsync-dr.io/protect": "true"}},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

/// `db` protected from A with `app` (2 replicas) on A and its standby on B; a first sync done.
async fn protected(pair: &ClusterPair) {
    pair.create_bound_pvc(PRIMARY, pvc()).await;
    pair.create(PRIMARY, deployment("app", "db", 2, json!({})));
    pair.write(PRIMARY, NS, "db", "v1", "before the failover");
    wait_annotation(pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    wait_annotation(pair, SECONDARY, "db", "volsync-dr.io/role", "secondary").await;
    pair.create(
        SECONDARY,
        deployment("app", "db", 0, json!({"volsync-dr.io/replicas": "2"})),
    );
    wait_latest_image(pair, "db").await;
}

/// A goes away (its instance, API server and storage), B fails over.
async fn failed_over(pair: &ClusterPair, a: &mut DrProcess) {
    a.kill().await;
    pair.a.stop().await;
    pair.simulator.pause(PRIMARY);
    annotate(pair, SECONDARY, "db", "volsync-dr.io/action", "failover:1");
    wait_annotation(pair, SECONDARY, "db", "volsync-dr.io/last-action", "failover:1").await;
    assert_eq!(
        annotation(pair, SECONDARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded")
    );
    assert_eq!(
        annotation(pair, SECONDARY, "db", "volsync-dr.io/takeover-generation").as_deref(),
        Some("1"),
        "the takeover is recorded"
    );
}

/// A's API server and storage back; a client still reaching A writes a file at once.
async fn a_comes_back(pair: &ClusterPair) {
    pair.a.restart().await.expect("A's API server back");
    pair.simulator.resume(PRIMARY);
    pair.write(PRIMARY, NS, "db", "after-return", "written on A after it came back");
}

/// A's copy is fenced: its application stopped (count kept), its sync gone; B untouched.
async fn assert_fenced(pair: &ClusterPair) {
    wait_annotation(pair, PRIMARY, "db", "volsync-dr.io/role", "fenced").await;
    assert_eq!(replicas(pair, PRIMARY, "app"), (0, Some("2".into())));
    assert!(
        pair.object(PRIMARY, "replicationsources", NS, "rs-db").is_none(),
        "A's sync removed"
    );
    let fenced = annotation(pair, PRIMARY, "db", "volsync-dr.io/fenced").unwrap_or_default();
    assert!(
        fenced.starts_with("fenced: cluster cluster-b took over in a failover (takeover generation 1, this copy 0)")
            && fenced.contains("Request failback on cluster-b"),
        "{fenced}"
    );
    assert_eq!(
        annotation(pair, SECONDARY, "db", "volsync-dr.io/role").as_deref(),
        Some("primary")
    );
    assert!(
        pair.object(SECONDARY, "replicationdestinations", NS, "rd-db").is_none(),
        "nothing syncs into B"
    );
    assert_eq!(
        pair.read(SECONDARY, NS, "db", "after-return"),
        None,
        "B's data untouched"
    );
}

/// Protected, failed over to B, then A back (its API server and storage; its instance still
/// down) while B's instance is stopped. Returns A's and B's instances, both stopped.
async fn failed_over_and_back_with_b_away(pair: &ClusterPair) -> (DrProcess, DrProcess) {
    let mut a = DrProcess::start(pair, PRIMARY, &[]).await;
    let mut b = DrProcess::start(pair, SECONDARY, &[]).await;
    protected(pair).await;
    failed_over(pair, &mut a).await;
    b.kill().await;
    a_comes_back(pair).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_returning_primary_fences_itself_and_failback_keeps_what_it_wrote() {
    let pair = ClusterPair::start().await;
    // B's instance is away while A returns, so A's own instance is the one that fences.
    let (mut a, mut b) = failed_over_and_back_with_b_away(&pair).await;
    let started = Instant::now();
    a.start_again().await;
    assert_fenced(&pair).await;
    let unfenced = started.elapsed();
    println!(
        "A ran unfenced for {:.2}s after its instance started",
        unfenced.as_secs_f64()
    );
    assert!(unfenced < Duration::from_secs(30), "fenced within 30 s: {unfenced:?}");
    pair.wait_for(10, "a Fenced Warning Event on A", |p| {
        (events_with_reason(p, PRIMARY, "Fenced") >= 1).then_some(())
    })
    .await;
    assert!(
        metric(&a, "volsync_dr_fencings_total{side=\"here\"} 1").await,
        "the fencing is counted: {:?}",
        metric_value(&a, "volsync_dr_fencings_total{side=\"here\"}").await
    );

    b.start_again().await;
    // Failback replaces A's copy with B's, but first keeps it: the file written on A after it
    // came back is in the snapshot the message names.
    annotate(&pair, SECONDARY, "db", "volsync-dr.io/action", "failback:1");
    wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/last-action", "failback:1").await;
    let message = annotation(&pair, SECONDARY, "db", "volsync-dr.io/action-message").unwrap_or_default();
    assert!(
        message.contains("kept in VolumeSnapshot db-before-failback-1 there"),
        "{message}"
    );
    let kept = pair
        .simulator
        .cluster(PRIMARY)
        .snapshot_path(NS, "db-before-failback-1")
        .join("after-return");
    assert_eq!(
        std::fs::read_to_string(kept).ok().as_deref(),
        Some("written on A after it came back")
    );
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/role").as_deref(),
        Some("primary"),
        "failback ends the fence"
    );
    assert_eq!(annotation(&pair, PRIMARY, "db", "volsync-dr.io/fenced"), None);
    assert_eq!(replicas(&pair, PRIMARY, "app"), (2, None), "home at its own size");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    // `volsync-dr status` lists the kept copy under the cluster that holds it.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .args(["status", "--cluster-name", PRIMARY, "--peer-name", SECONDARY])
        .arg("--peer-kubeconfig")
        .arg(pair.kubeconfig(SECONDARY))
        .env("KUBECONFIG", pair.kubeconfig(PRIMARY))
        .output()
        .expect("volsync-dr status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(
        text.lines()
            .any(|l| l.starts_with(PRIMARY) && l.ends_with("db    db-before-failback-1")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_that_took_over_fences_the_returning_peer() {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let b = DrProcess::start(&pair, SECONDARY, &[]).await;
    protected(&pair).await;
    failed_over(&pair, &mut a).await;
    // A's cluster returns without its volsync-dr: B's instance sees it answer and fences it.
    a_comes_back(&pair).await;
    assert_fenced(&pair).await;
    pair.wait_for(10, "a FencedPeer Warning Event on B", |p| {
        (events_with_reason(p, SECONDARY, "FencedPeer") >= 1).then_some(())
    })
    .await;
    assert!(
        metric(&b, "volsync_dr_fencings_total{side=\"peer\"} 1").await,
        "counted on B"
    );
    // A's own instance, started later, keeps it fenced and says so there too.
    a.start_again().await;
    pair.wait_for(10, "a Fenced Warning Event on A", |p| {
        (events_with_reason(p, PRIMARY, "Fenced") >= 1).then_some(())
    })
    .await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/role").as_deref(),
        Some("fenced")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "the crash hook needs --features volsync-dr/test-hooks"
)]
async fn a_restart_half_way_through_fencing_finishes_it() {
    let pair = ClusterPair::start().await;
    // Only A's instance may fence here: B's is stopped while A comes back.
    let (mut a, mut b) = failed_over_and_back_with_b_away(&pair).await;
    a.restart_with_env(&[("VOLSYNC_DR_TEST_HOLD_AT_STEP", "fence/remove-syncs")])
        .await;
    a.wait_log("holding half-way through fencing", 1).await;
    assert_eq!(
        replicas(&pair, PRIMARY, "app").0,
        0,
        "the application was stopped first"
    );
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/role").as_deref(),
        Some("primary"),
        "not marked yet"
    );
    a.kill().await;
    a.restart_with_env(&[]).await;
    assert_fenced(&pair).await;
    b.start_again().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_merely_unreachable_is_never_fenced() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    protected(&pair).await;
    // B's API server goes away; nobody failed over: A keeps running, Degraded, not fenced.
    pair.b.stop().await;
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Degraded").await;
    holds_for(Duration::from_secs(3), "A stays primary and running", || {
        let role = annotation(&pair, PRIMARY, "db", "volsync-dr.io/role");
        match (role.as_deref(), replicas(&pair, PRIMARY, "app")) {
            (Some("primary"), (2, None)) => Ok(()),
            other => Err(format!("A: {other:?}")),
        }
    })
    .await;
    pair.b.restart().await.expect("B back");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    assert_eq!(replicas(&pair, PRIMARY, "app"), (2, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fencing_off_the_split_brain_is_reported_and_nothing_is_scaled() {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &["--fence-on-return=false"]).await;
    let mut b = DrProcess::start(&pair, SECONDARY, &["--fence-on-return=false"]).await;
    protected(&pair).await;
    failed_over(&pair, &mut a).await;
    a_comes_back(&pair).await;
    a.start_again().await;
    pair.wait_for(30, "NotFenced Warning Events on A", |p| {
        (events_with_reason(p, PRIMARY, "NotFenced") >= 1).then_some(())
    })
    .await;
    holds_for(Duration::from_secs(3), "nothing is scaled or marked", || {
        let role = annotation(&pair, PRIMARY, "db", "volsync-dr.io/role");
        match (role.as_deref(), replicas(&pair, PRIMARY, "app")) {
            (Some("primary"), (2, None)) => Ok(()),
            other => Err(format!("A: {other:?}")),
        }
    })
    .await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/state").as_deref(),
        Some("Degraded")
    );
    b.kill().await;
}
