//! The runbook flows end to end: two test clusters, the VolSync simulator moving real files,
//! real `volsync-dr run` processes. One test per flow (migrate, failover, failback), and the
//! crash matrix: for every step of every verb, the process is SIGKILLed right after the step
//! starts (a hook holds it there; built only with `--features volsync-dr/test-hooks`, as the
//! README's test command does), restarted, and the action ends with the same data.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use support::{DrProcess, annotate, annotation, deployment, replicas, wait_annotation};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};
use volsync_dr::model::action::Verb;
use volsync_dr::steps::flow;

const NS: &str = "default";
const HOLD: &str = "VOLSYNC_DR_TEST_HOLD_AT_STEP";

fn pvc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS, "annotations": {"volsync-dr.io/protect": "true"}},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

/// Every file of a volume, by relative path.
fn files(pair: &ClusterPair, cluster: &str) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let (Ok(rel), Ok(text)) = (path.strip_prefix(root), std::fs::read_to_string(&path)) {
                out.insert(rel.to_string_lossy().into_owned(), text);
            }
        }
    }
    let root = pair.volume(cluster, NS, "db");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

fn write_all(pair: &ClusterPair, cluster: &str, content: &BTreeMap<String, String>) {
    for (file, text) in content {
        pair.write(cluster, NS, "db", file, text);
    }
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn object(pair: &ClusterPair, cluster: &str, plural: &str, name: &str) -> Option<Value> {
    let (group, version) = if plural.starts_with("replication") {
        ("volsync.backube", "v1alpha1")
    } else if plural == "volumesnapshots" {
        ("snapshot.storage.k8s.io", "v1")
    } else {
        ("", "v1")
    };
    pair.get(cluster, group, version, plural, NS, name)
}

fn running_pods(pair: &ClusterPair, cluster: &str) -> usize {
    (0..10)
        .filter(|i| {
            pair.object(cluster, "pods", NS, &format!("app-{i}"))
                .is_some_and(|p| p["status"]["phase"] == "Running")
        })
        .count()
}

/// Both clusters with their processes; `db` protected from A with the application (a
/// Deployment `app`, 2 replicas) on A and a standby (`app`, 0 replicas) on B; the first sync
/// done.
struct Stage {
    pair: ClusterPair,
    a: DrProcess,
    b: DrProcess,
}

const V1: &[(&str, &str)] = &[("a1", "v1"), ("a2", "v1"), ("a3", "v1"), ("a4", "v1")];

async fn stage(standby_annotations: Value) -> Stage {
    let pair = ClusterPair::start().await;
    let a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc("db")).await;
    pair.create(PRIMARY, deployment("app", "db", 2, json!({})));
    write_all(&pair, PRIMARY, &data(V1));
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/role", "secondary").await;
    pair.create(SECONDARY, deployment("app", "db", 0, standby_annotations));
    pair.wait_for(30, "first sync with a snapshot", |p| {
        let rd = object(p, SECONDARY, "replicationdestinations", "rd-db")?;
        (files(p, SECONDARY) == data(V1) && rd["status"]["latestImage"]["kind"] == "VolumeSnapshot").then_some(())
    })
    .await;
    pair.wait_for(10, "the application runs on A", |p| {
        (running_pods(p, PRIMARY) == 2).then_some(())
    })
    .await;
    Stage { pair, a, b }
}

/// How far the PVC watches lag behind writes once an action is requested: every reconcile
/// woken by a ReplicationSource, Destination or workload event within this time of a step's
/// progress write sees the PVC as it was before that write.
const WATCH_LAG: std::time::Duration = std::time::Duration::from_millis(400);

/// Run `request` on `cluster`, killing its process right after each step of `verb` starts
/// and starting it again, then let it finish.
async fn with_a_crash_at_every_step(
    pair: &ClusterPair,
    runner: &mut DrProcess,
    cluster: &str,
    verb: Verb,
    request: &str,
) {
    lag_pvc_watches(pair);
    for (i, step) in flow(verb).iter().enumerate() {
        let hold = format!("{verb}/{}", step.as_str());
        runner.restart_with_env(&[(HOLD, &hold)]).await;
        if i == 0 {
            annotate(pair, cluster, "db", "volsync-dr.io/action", request);
        }
        runner
            .wait_log(&format!("holding right after the step started step=\"{hold}\""), 1)
            .await;
        assert_eq!(
            annotation(pair, cluster, "db", "volsync-dr.io/action-step").as_deref(),
            Some(step.as_str()),
            "the step is recorded before it acts"
        );
        runner.kill().await;
    }
    runner.restart_with_env(&[]).await;
}

/// From now on the PVC watches of both clusters lag by `WATCH_LAG`, so a pass that trusted
/// its cached copy would run a step again; `assert_no_step_twice` checks that none did.
fn lag_pvc_watches(pair: &ClusterPair) {
    for server in [&pair.a, &pair.b] {
        server.lag_watches("persistentvolumeclaims", WATCH_LAG);
    }
}

/// Each step of `request` acted at most once in the runner's whole log (its restarts
/// included: a crash holds a step before it acts), the request finished once, and the objects
/// the action deleted stay deleted for several watch lags after it finished.
async fn assert_no_step_twice(pair: &ClusterPair, runner: &DrProcess, request: &str, gone: &[(&str, &str, &str)]) {
    let verb: Verb = request
        .parse::<volsync_dr::model::action::ActionRequest>()
        .expect("request")
        .verb;
    let whole = runner.log_text();
    // From the request's start: an earlier action in the same log may share step names.
    let started = format!("action started namespace=\"default\" pvc=\"db\" request=\"{request}\"");
    let log = &whole[whole
        .find(&started)
        .unwrap_or_else(|| panic!("{request} never started"))..];
    for step in flow(verb) {
        let acted = log
            .matches(&format!(
                "acting namespace=\"default\" pvc=\"db\" step=\"{}\"",
                step.as_str()
            ))
            .count();
        assert!(acted <= 1, "{request}: step {} acted {acted} times", step.as_str());
    }
    // That line comes after the annotations the test saw: wait for it, count it at the end.
    let finished = format!("action finished namespace=\"default\" pvc=\"db\" request=\"{request}\"");
    runner.wait_log(&finished, 1).await;
    // Absence can only be seen over a window: look every 50 ms for five watch lags.
    let deadline = tokio::time::Instant::now() + WATCH_LAG * 5;
    while tokio::time::Instant::now() < deadline {
        for (cluster, plural, name) in gone {
            assert!(
                object(pair, cluster, plural, name).is_none(),
                "{plural}/{name} on {cluster} came back after the action deleted it"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let whole = runner.log_text();
    let count = whole[whole.find(&started).unwrap_or_default()..]
        .matches(&finished)
        .count();
    assert_eq!(count, 1, "{request} finished {count} times");
}

async fn wait_finished(pair: &ClusterPair, cluster: &str, request: &str) -> String {
    wait_annotation(pair, cluster, "db", "volsync-dr.io/last-action", request).await;
    let message = annotation(pair, cluster, "db", "volsync-dr.io/action-message").unwrap_or_default();
    assert_eq!(
        annotation(pair, cluster, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded"),
        "{request}: {message}"
    );
    for key in ["action-step", "action-running", "action-started", "app-down-since"] {
        assert!(
            annotation(pair, cluster, "db", &format!("volsync-dr.io/{key}")).is_none(),
            "{key} is removed when the action finishes"
        );
    }
    message
}

// === migrate ===

fn before_migrate(pair: &ClusterPair) -> BTreeMap<String, String> {
    // Newer than the last scheduled sync: only the migration's own sync carries it.
    pair.write(PRIMARY, NS, "db", "a4", "v2");
    pair.write(PRIMARY, NS, "db", "table", "written just before migrate");
    files(pair, PRIMARY)
}

async fn assert_migrated(pair: &ClusterPair, expected: &BTreeMap<String, String>, message: &str) {
    assert!(message.contains("the application was down for"), "{message}");
    assert_eq!(&files(pair, SECONDARY), expected, "everything written on A is on B");
    assert_eq!(
        replicas(pair, PRIMARY, "app"),
        (0, Some("2".into())),
        "A scaled down, count kept"
    );
    assert_eq!(replicas(pair, SECONDARY, "app"), (2, None), "B runs the recorded count");
    assert_eq!(running_pods(pair, PRIMARY), 0);
    assert_eq!(
        annotation(pair, PRIMARY, "db", "volsync-dr.io/role").as_deref(),
        Some("secondary")
    );
    assert_eq!(
        annotation(pair, SECONDARY, "db", "volsync-dr.io/role").as_deref(),
        Some("primary")
    );
    let a_pvc = object(pair, PRIMARY, "persistentvolumeclaims", "db").expect("A's PVC");
    assert!(
        a_pvc["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.iter().all(|x| x != "volsync-dr.io/protection")),
        "a secondary holds no finalizer"
    );
    assert_eq!(
        annotation(pair, SECONDARY, "db", "volsync-dr.io/state").as_deref(),
        Some("Protected")
    );
    assert!(object(pair, SECONDARY, "replicationsources", "rs-db").is_some());
    assert!(object(pair, PRIMARY, "replicationdestinations", "rd-db").is_some());
    assert!(object(pair, PRIMARY, "replicationsources", "rs-db").is_none());
    assert!(object(pair, PRIMARY, "replicationsources", "rs-db-latest").is_none());
    assert!(object(pair, SECONDARY, "replicationdestinations", "rd-db").is_none());

    // Writes on the new primary flow back by the reversed schedule.
    pair.write(SECONDARY, NS, "db", "after", "written on B after migrate");
    pair.simulator.run_schedules_now();
    pair.wait_for(30, "B's write on A", |p| {
        (p.read(PRIMARY, NS, "db", "after").as_deref() == Some("written on B after migrate")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_the_application_and_reverses_protection() {
    let s = stage(json!({})).await;
    let expected = before_migrate(&s.pair);
    lag_pvc_watches(&s.pair);
    annotate(&s.pair, PRIMARY, "db", "volsync-dr.io/action", "migrate:1");
    let message = wait_finished(&s.pair, PRIMARY, "migrate:1").await;
    assert_migrated(&s.pair, &expected, &message).await;
    assert_no_step_twice(
        &s.pair,
        &s.a,
        "migrate:1",
        &[(PRIMARY, "replicationsources", "rs-db-latest")],
    )
    .await;

    let metrics = testkit::http::request(s.a.admin, "GET", "/metrics", "text/plain", "").await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    for line in [
        "volsync_dr_action_duration_seconds_count{verb=\"migrate\",outcome=\"succeeded\"} 1",
        "volsync_dr_action_app_down_seconds_count{verb=\"migrate\"} 1",
        "volsync_dr_action_steps_total{verb=\"migrate\",step=\"wait-for-sync\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}");
    }
    drop(s.b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "the crash hook needs --features volsync-dr/test-hooks"
)]
async fn migrate_survives_a_crash_at_every_step() {
    let mut s = stage(json!({})).await;
    let expected = before_migrate(&s.pair);
    with_a_crash_at_every_step(&s.pair, &mut s.a, PRIMARY, Verb::Migrate, "migrate:c").await;
    let message = wait_finished(&s.pair, PRIMARY, "migrate:c").await;
    let gone = [
        (PRIMARY, "replicationsources", "rs-db-latest"),
        (SECONDARY, "replicationsources", "rs-db-latest"),
    ];
    assert_no_step_twice(&s.pair, &s.a, "migrate:c", &gone).await;
    assert_migrated(&s.pair, &expected, &message).await;
}

// === failover ===

/// New data on A whose sync is cut off halfway: B holds a partial copy, its snapshot the last
/// complete one. Then A's cluster goes away (process, API server and storage).
async fn cut_off_and_lose_a(s: &mut Stage) {
    let pair = &s.pair;
    write_all(
        pair,
        PRIMARY,
        &data(&[("a1", "v2"), ("a2", "v2"), ("a3", "v2"), ("a4", "v2"), ("a5", "v2")]),
    );
    pair.simulator.interrupt_next_sync();
    pair.simulator.run_schedules_now();
    pair.wait_for(30, "a sync cut off halfway", |p| {
        let rs = object(p, PRIMARY, "replicationsources", "rs-db")?;
        (rs["status"]["latestMoverStatus"]["result"] == "Failed").then_some(())
    })
    .await;
    assert_eq!(
        s.pair.read(SECONDARY, NS, "db", "a1").as_deref(),
        Some("v2"),
        "B holds a partial copy"
    );
    s.a.kill().await;
    s.pair.a.stop().await;
    s.pair.simulator.pause(PRIMARY);
}

async fn assert_failed_over(pair: &ClusterPair, message: &str, standby: i64) {
    assert!(
        message.contains("failover finished") && message.contains("the application was started here"),
        "{message}"
    );
    assert_eq!(
        files(pair, SECONDARY),
        data(V1),
        "the last complete copy, nothing partial"
    );
    assert_eq!(replicas(pair, SECONDARY, "app"), (standby, None));
    pair.wait_for(10, "the application runs on B", |p| {
        (running_pods(p, SECONDARY) == standby as usize).then_some(())
    })
    .await;
    assert_eq!(
        annotation(pair, SECONDARY, "db", "volsync-dr.io/role").as_deref(),
        Some("primary")
    );
    for (plural, name) in [
        ("replicationdestinations", "rd-db"),
        ("replicationsources", "rs-db-local"),
        ("persistentvolumeclaims", "restored-db"),
    ] {
        assert!(object(pair, SECONDARY, plural, name).is_none(), "{name} is removed");
    }
    let kept = pair
        .server(SECONDARY)
        .store()
        .find_type("snapshot.storage.k8s.io", "v1", "volumesnapshots")
        .map(|t| {
            pair.server(SECONDARY)
                .store()
                .list(&t, None, &Default::default(), &Default::default())
                .0
        })
        .unwrap_or_default();
    assert!(
        kept.iter()
            .all(|s| s["metadata"]["labels"].get("volsync.backube/do-not-delete").is_none()),
        "the kept restore point is removed: {kept:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_starts_the_application_on_the_last_complete_copy() {
    // The standby says how many replicas a failover starts.
    let mut s = stage(json!({"volsync-dr.io/replicas": "3"})).await;
    cut_off_and_lose_a(&mut s).await;
    lag_pvc_watches(&s.pair);
    annotate(&s.pair, SECONDARY, "db", "volsync-dr.io/action", "failover:1");
    let message = wait_finished(&s.pair, SECONDARY, "failover:1").await;
    assert_failed_over(&s.pair, &message, 3).await;
    let gone = [
        (SECONDARY, "replicationsources", "rs-db-local"),
        (SECONDARY, "persistentvolumeclaims", "restored-db"),
    ];
    assert_no_step_twice(&s.pair, &s.b, "failover:1", &gone).await;
    // With A gone, B reports it cannot replicate.
    wait_annotation(&s.pair, SECONDARY, "db", "volsync-dr.io/state", "Degraded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "the crash hook needs --features volsync-dr/test-hooks"
)]
async fn failover_survives_a_crash_at_every_step() {
    let mut s = stage(json!({})).await;
    cut_off_and_lose_a(&mut s).await;
    with_a_crash_at_every_step(&s.pair, &mut s.b, SECONDARY, Verb::Failover, "failover:c").await;
    let message = wait_finished(&s.pair, SECONDARY, "failover:c").await;
    let gone = [
        (SECONDARY, "replicationsources", "rs-db-local"),
        (SECONDARY, "replicationdestinations", "rd-db"),
        (SECONDARY, "persistentvolumeclaims", "restored-db"),
    ];
    assert_no_step_twice(&s.pair, &s.b, "failover:c", &gone).await;
    // No count recorded on the standby: one replica.
    assert_failed_over(&s.pair, &message, 1).await;
}

// === failback ===

/// After a failover to B (A lost, standby count 2): writes on B, diverged writes on A's
/// storage, then A's cluster comes back with its application restarted. Returns B's data.
async fn failed_over_and_back(s: &mut Stage) -> BTreeMap<String, String> {
    let pair = &s.pair;
    s.a.kill().await;
    pair.a.stop().await;
    pair.simulator.pause(PRIMARY);
    annotate(pair, SECONDARY, "db", "volsync-dr.io/action", "failover:1");
    wait_finished(pair, SECONDARY, "failover:1").await;
    pair.write(SECONDARY, NS, "db", "b1", "written on B after the failover");
    pair.write(SECONDARY, NS, "db", "a2", "changed on B");
    pair.write(PRIMARY, NS, "db", "diverged", "written on A while it was cut off");

    pair.a.restart().await.expect("A's API server back");
    pair.simulator.resume(PRIMARY);
    s.a.start_again().await;
    // A's copy is stale: it is fenced at once (its application stopped, its sync removed) and
    // leaves the pair alone (B stays primary, nothing synced to B).
    wait_annotation(pair, PRIMARY, "db", "volsync-dr.io/role", "fenced").await;
    assert_eq!(
        annotation(pair, PRIMARY, "db", "volsync-dr.io/state").as_deref(),
        Some("Degraded")
    );
    let fenced = annotation(pair, PRIMARY, "db", "volsync-dr.io/fenced").unwrap_or_default();
    assert!(
        fenced.starts_with("fenced: cluster cluster-b took over in a failover (takeover generation 1, this copy 0)"),
        "{fenced}"
    );
    assert_eq!(
        replicas(pair, PRIMARY, "app"),
        (0, Some("2".into())),
        "A's application stopped, its count kept"
    );
    assert!(
        object(pair, PRIMARY, "replicationsources", "rs-db").is_none(),
        "A's sync removed"
    );
    support::holds_for(std::time::Duration::from_secs(2), "A leaves B alone", || {
        let role = annotation(pair, SECONDARY, "db", "volsync-dr.io/role");
        if role.as_deref() != Some("primary") {
            return Err(format!("B's role is {role:?}"));
        }
        match object(pair, SECONDARY, "replicationdestinations", "rd-db") {
            Some(_) => Err("an RD appeared on B".into()),
            None => Ok(()),
        }
    })
    .await;
    assert_eq!(
        pair.read(SECONDARY, NS, "db", "b1").as_deref(),
        Some("written on B after the failover")
    );
    assert_eq!(
        running_pods(pair, PRIMARY),
        0,
        "A's application does not run beside B's"
    );
    files(pair, SECONDARY)
}

async fn assert_failed_back(pair: &ClusterPair, expected: &BTreeMap<String, String>, request: &str, message: &str) {
    assert!(message.contains("failback finished"), "{message}");
    // What A wrote while it was cut off is replaced on A, but kept in a snapshot taken first.
    let kept = format!("db-before-{}", request.replace(':', "-"));
    assert!(
        message.contains(&format!(
            "what cluster cluster-a held before was kept in VolumeSnapshot {kept} there"
        )),
        "{message}"
    );
    let snapshot = object(pair, PRIMARY, "volumesnapshots", &kept).expect("the kept snapshot");
    assert_eq!(snapshot["status"]["readyToUse"], true);
    assert_eq!(snapshot["metadata"]["labels"]["volsync-dr.io/kept-copy"], "true");
    let in_snapshot = pair
        .simulator
        .cluster(PRIMARY)
        .snapshot_path(NS, &kept)
        .join("diverged");
    assert_eq!(
        std::fs::read_to_string(in_snapshot).ok().as_deref(),
        Some("written on A while it was cut off"),
        "A's diverged write is in the kept snapshot"
    );
    assert_eq!(
        annotation(pair, PRIMARY, "db", "volsync-dr.io/kept-copies").as_deref(),
        Some(kept.as_str())
    );
    assert_eq!(
        &files(pair, PRIMARY),
        expected,
        "B's writes on A; A's diverged writes replaced"
    );
    assert_eq!(replicas(pair, PRIMARY, "app"), (2, None));
    assert_eq!(replicas(pair, SECONDARY, "app").0, 0);
    assert_eq!(
        annotation(pair, PRIMARY, "db", "volsync-dr.io/role").as_deref(),
        Some("primary")
    );
    assert_eq!(
        annotation(pair, SECONDARY, "db", "volsync-dr.io/role").as_deref(),
        Some("secondary")
    );
    assert_eq!(
        annotation(pair, PRIMARY, "db", "volsync-dr.io/state").as_deref(),
        Some("Protected")
    );
    assert!(object(pair, PRIMARY, "replicationsources", "rs-db").is_some());
    assert!(object(pair, SECONDARY, "replicationdestinations", "rd-db").is_some());
    assert!(object(pair, PRIMARY, "replicationdestinations", "rd-db").is_none());
    assert!(object(pair, SECONDARY, "replicationsources", "rs-db-latest").is_none());

    // Protection A → B runs again.
    pair.write(PRIMARY, NS, "db", "later", "written on A after failback");
    pair.simulator.run_schedules_now();
    pair.wait_for(30, "A's write on B", |p| {
        (p.read(SECONDARY, NS, "db", "later").as_deref() == Some("written on A after failback")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_returns_the_application_with_the_writes_made_after_failover() {
    let mut s = stage(json!({"volsync-dr.io/replicas": "2"})).await;
    let expected = failed_over_and_back(&mut s).await;
    lag_pvc_watches(&s.pair);
    annotate(&s.pair, SECONDARY, "db", "volsync-dr.io/action", "failback:1");
    let message = wait_finished(&s.pair, SECONDARY, "failback:1").await;
    assert!(message.contains("the application was down for"), "{message}");
    assert_failed_back(&s.pair, &expected, "failback:1", &message).await;
    assert_no_step_twice(
        &s.pair,
        &s.b,
        "failback:1",
        &[(SECONDARY, "replicationsources", "rs-db-latest")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "the crash hook needs --features volsync-dr/test-hooks"
)]
async fn failback_survives_a_crash_at_every_step() {
    let mut s = stage(json!({"volsync-dr.io/replicas": "2"})).await;
    let expected = failed_over_and_back(&mut s).await;
    with_a_crash_at_every_step(&s.pair, &mut s.b, SECONDARY, Verb::Failback, "failback:c").await;
    let message = wait_finished(&s.pair, SECONDARY, "failback:c").await;
    let gone = [
        (SECONDARY, "replicationsources", "rs-db-latest"),
        (PRIMARY, "replicationdestinations", "rd-db"),
    ];
    assert_no_step_twice(&s.pair, &s.b, "failback:c", &gone).await;
    assert_failed_back(&s.pair, &expected, "failback:c", &message).await;
}

// === sync-now ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "the crash hook needs --features volsync-dr/test-hooks"
)]
async fn sync_now_survives_a_crash_at_every_step() {
    let mut s = stage(json!({})).await;
    s.pair.write(PRIMARY, NS, "db", "a1", "newest");
    with_a_crash_at_every_step(&s.pair, &mut s.a, PRIMARY, Verb::SyncNow, "sync-now:c").await;
    wait_finished(&s.pair, PRIMARY, "sync-now:c").await;
    assert_no_step_twice(
        &s.pair,
        &s.a,
        "sync-now:c",
        &[(PRIMARY, "replicationsources", "rs-db-latest")],
    )
    .await;
    assert_eq!(files(&s.pair, SECONDARY), files(&s.pair, PRIMARY));
    assert_eq!(s.pair.read(SECONDARY, NS, "db", "a1").as_deref(), Some("newest"));
    assert!(object(&s.pair, PRIMARY, "replicationsources", "rs-db-latest").is_none());
    assert!(
        object(&s.pair, PRIMARY, "replicationsources", "rs-db").is_some(),
        "protection untouched"
    );
}
