//! `rotate-key`: a new pre-shared key on both clusters without a failed or half-keyed sync. A
//! sync running when it is requested finishes with the old key; the next one uses the new key;
//! both sides hold the same new key; a crash right after every step resumes; a peer that is
//! away refuses it with nothing changed.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::{DrProcess, annotate, annotation, metric_value, wait_annotation};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};
use volsync_dr::model::action::Verb;
use volsync_dr::steps::flow;

const NS: &str = "default";
const HOLD: &str = "VOLSYNC_DR_TEST_HOLD_AT_STEP";

fn key(pair: &ClusterPair, cluster: &str) -> Option<String> {
    pair.object(cluster, "secrets", NS, "volsync-dr-db")?["data"]["psk.txt"]
        .as_str()
        .map(str::to_string)
}

fn source(pair: &ClusterPair) -> Value {
    pair.object(PRIMARY, "replicationsources", NS, "rs-db")
        .unwrap_or_default()
}

/// `db` protected from A, its first sync done.
async fn protected() -> (ClusterPair, DrProcess, DrProcess) {
    let pair = ClusterPair::start().await;
    let a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(
        PRIMARY,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "db", "namespace": NS, "annotations": {"volsync-dr.io/protect": "true"}},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    support::wait_latest_image(&pair, "db").await;
    (pair, a, b)
}

/// A sync after the rotation carries a new file: the new key works on both sides.
async fn next_sync_works(pair: &ClusterPair, request: &str) {
    pair.write(PRIMARY, NS, "db", request, "after the rotation");
    annotate(pair, PRIMARY, "db", "volsync-dr.io/action", request);
    wait_annotation(pair, PRIMARY, "db", "volsync-dr.io/last-action", request).await;
    assert_eq!(
        annotation(pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded"),
        "{request}: {:?}",
        annotation(pair, PRIMARY, "db", "volsync-dr.io/action-message")
    );
    assert_eq!(
        pair.read(SECONDARY, NS, "db", request).as_deref(),
        Some("after the rotation")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sync_finishes_with_the_old_key_and_the_next_uses_the_new_one() {
    let (pair, a, _b) = protected().await;
    let old = key(&pair, PRIMARY).expect("key");
    assert_eq!(key(&pair, SECONDARY).as_deref(), Some(old.as_str()));
    let syncs_before = source(&pair)["status"]["lastSyncTime"].clone();

    // A scheduled sync starts and runs for 3 s; the rotation is requested meanwhile.
    pair.write(PRIMARY, NS, "db", "during", "written before the running sync");
    pair.simulator.hold_next_sync(Duration::from_secs(3));
    pair.simulator.run_schedules_now();
    pair.wait_for(10, "a sync running", |p| {
        (source(p)["status"]["conditions"][0]["reason"] == "SyncInProgress").then_some(())
    })
    .await;
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "rotate-key:1");

    // Until it is done: every sync result seen, and every step. Schedules are forced all the
    // while, so a sync would start at any moment the source is not paused.
    let results: Arc<Mutex<Vec<String>>> = Arc::default();
    let steps: Arc<Mutex<Vec<String>>> = Arc::default();
    pair.wait_for(60, "rotate-key:1 finished", |p| {
        p.simulator.run_schedules_now();
        if let Some(r) = source(p)["status"]["latestMoverStatus"]["result"].as_str() {
            results.lock().expect("lock").push(r.to_string());
        }
        if let Some(s) = annotation(p, PRIMARY, "db", "volsync-dr.io/action-step") {
            let mut seen = steps.lock().expect("lock");
            if seen.last() != Some(&s) {
                seen.push(s);
            }
        }
        (annotation(p, PRIMARY, "db", "volsync-dr.io/last-action").as_deref() == Some("rotate-key:1")).then_some(())
    })
    .await;
    let message = annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-message").unwrap_or_default();
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded"),
        "{message}"
    );
    assert!(message.contains("a new key on both clusters"), "{message}");
    let steps = steps.lock().expect("lock").clone();
    assert!(
        steps.contains(&"wait-for-sync-idle".to_string()),
        "the rotation waited for the running sync: {steps:?}"
    );
    // The running sync finished, with the old key: no failed sync at any time.
    assert!(
        !results.lock().expect("lock").iter().any(|r| r == "Failed"),
        "no sync failed: {:?}",
        results.lock().expect("lock")
    );
    let rs = source(&pair);
    assert_ne!(rs["status"]["lastSyncTime"], syncs_before, "the running sync completed");
    assert_eq!(rs["status"]["latestMoverStatus"]["result"], "Successful");
    assert_eq!(
        pair.read(SECONDARY, NS, "db", "during").as_deref(),
        Some("written before the running sync")
    );
    assert!(rs["spec"]["paused"].is_null(), "scheduled protection runs again");

    // Both sides hold the same new key, stamped; the metric says its age.
    let new = key(&pair, PRIMARY).expect("key");
    assert_ne!(new, old, "a new key");
    assert_eq!(
        key(&pair, SECONDARY).as_deref(),
        Some(new.as_str()),
        "the same on both sides"
    );
    for cluster in [PRIMARY, SECONDARY] {
        let secret = pair.object(cluster, "secrets", NS, "volsync-dr-db").expect("secret");
        assert!(
            secret["metadata"]["annotations"]["volsync-dr.io/key-created"].is_string(),
            "{cluster}"
        );
    }
    let age = metric_value(&a, "volsync_dr_pvc_key_age_seconds{namespace=\"default\",pvc=\"db\"}").await;
    assert!(age.is_some_and(|s| s < 120.0), "key age metric: {age:?}");

    next_sync_works(&pair, "sync-now:after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_while_the_peer_is_away_with_nothing_changed() {
    let (pair, _a, _b) = protected().await;
    let old = key(&pair, PRIMARY).expect("key");
    pair.b.stop().await;
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "rotate-key:1");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", "rotate-key:1").await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Failed")
    );
    let message = annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-message").unwrap_or_default();
    assert!(
        message.contains("unreachable") && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(key(&pair, PRIMARY), Some(old), "the key here is untouched");
    assert!(source(&pair)["spec"]["paused"].is_null(), "never paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "the crash hook needs --features volsync-dr/test-hooks"
)]
async fn rotate_key_survives_a_crash_at_every_step() {
    let (pair, mut a, _b) = protected().await;
    let old = key(&pair, PRIMARY).expect("key");
    for (i, step) in flow(Verb::RotateKey).iter().enumerate() {
        let hold = format!("rotate-key/{}", step.as_str());
        a.restart_with_env(&[(HOLD, &hold)]).await;
        if i == 0 {
            annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "rotate-key:c");
        }
        a.wait_log(&format!("holding right after the step started step=\"{hold}\""), 1)
            .await;
        assert_eq!(
            annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-step").as_deref(),
            Some(step.as_str()),
            "the step is recorded before it acts"
        );
        if *step == volsync_dr::steps::Step::RotateKeyHere {
            // The two sides' keys differ now: no sync may start, however often it is due.
            assert_ne!(key(&pair, PRIMARY), key(&pair, SECONDARY), "the peer has the new key");
            let before = source(&pair)["status"].clone();
            for _ in 0..10 {
                pair.simulator.run_schedules_now();
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = source(&pair)["status"].clone();
                assert_eq!(now["lastSyncTime"], before["lastSyncTime"], "no sync ran half-keyed");
                assert_ne!(
                    now["latestMoverStatus"]["result"], "Failed",
                    "no sync failed half-keyed"
                );
            }
        }
        a.kill().await;
    }
    a.restart_with_env(&[]).await;
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", "rotate-key:c").await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded"),
        "{:?}",
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-message")
    );
    let new = key(&pair, PRIMARY).expect("key");
    assert_ne!(new, old);
    assert_eq!(key(&pair, SECONDARY), Some(new));
    assert!(source(&pair)["spec"]["paused"].is_null());
    next_sync_works(&pair, "sync-now:after-crashes").await;
}

/// Make the key on `cluster` look `days` old (as a key rotated that long ago would).
fn backdate_key(pair: &ClusterPair, cluster: &str, days: i64) {
    use testkit::apiserver::store::{PatchType, Subresource};
    let made = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days);
    let store = pair.server(cluster).store();
    let rt = store.find_type("", "v1", "secrets").expect("secrets");
    store
        .patch(
            &rt,
            NS,
            "volsync-dr-db",
            PatchType::Merge,
            &json!({"metadata": {"annotations": {"volsync-dr.io/key-created": made.to_string()}}}),
            Subresource::Main,
            &Default::default(),
        )
        .expect("backdate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keys_every_requests_a_rotation_where_it_may() {
    let (pair, mut a, _b) = protected().await;
    let old = key(&pair, PRIMARY).expect("key");
    backdate_key(&pair, PRIMARY, 40);
    a.restart_with_env(&[("VOLSYNC_DR_ROTATE_KEYS_EVERY", "30d")]).await;
    let request = pair
        .wait_for(60, "the timer's rotation finished", |p| {
            let last = annotation(p, PRIMARY, "db", "volsync-dr.io/last-action")?;
            last.starts_with("rotate-key:auto-").then_some(last)
        })
        .await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action"),
        Some(request.clone())
    );
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded")
    );
    let new = key(&pair, PRIMARY).expect("key");
    assert_ne!(new, old);
    assert_eq!(key(&pair, SECONDARY), Some(new));

    // A request the user owns is never replaced: the timer says so instead.
    backdate_key(&pair, PRIMARY, 40);
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "sync-now:mine");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", "sync-now:mine").await;
    pair.wait_for(30, "a KeyRotationDue Event", |p| {
        (support::events_with_reason(p, PRIMARY, "KeyRotationDue") >= 1).then_some(())
    })
    .await;
    assert_eq!(
        annotation(&pair, PRIMARY, "db", "volsync-dr.io/action").as_deref(),
        Some("sync-now:mine"),
        "the user's request stays"
    );
}
