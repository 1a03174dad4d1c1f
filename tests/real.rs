//! The real tier: two real control planes (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kwok; built from Go modules by `tests/realk8s/build-control-plane.sh`),
//! `deploy/` applied on both as the README's install steps say, and each cluster's
//! `volsync-dr run` as a host process holding only its ServiceAccount's token, so the real API
//! server enforces the shipped RBAC, the CRD schemas, admission (the webhook is called by the
//! API server) and Pod Security. The VolSync simulator works through the API.
//!
//! Each test starts its own pair; they run one at a time (`serial`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::kubectl::Kubectl;
use testkit::realk8s::{PRIMARY, RealPair, SECONDARY, deploy, serial};

const NS: &str = "default";

fn volsync_dr() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_volsync-dr"))
}

fn pvc(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS, "annotations": annotations},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

/// `kubectl create -o json`: the object as the API server stored it, after admission.
async fn create(kubectl: &Kubectl, object: &Value) -> Value {
    let out = kubectl
        .run_with_stdin(&["create", "-o", "json", "-f", "-"], &object.to_string())
        .await;
    assert!(out.success, "kubectl create: {}", out.stderr);
    serde_json::from_str(&out.stdout).expect("created object")
}

async fn get(kubectl: &Kubectl, kind: &str, ns: &str, name: &str) -> Option<Value> {
    let out = kubectl.run(&["-n", ns, "get", kind, name, "-o", "json"]).await;
    out.success.then(|| serde_json::from_str(&out.stdout).expect("object"))
}

/// Wait (90 s at most) for `check` to give a value; the message says what was awaited.
async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    try_wait_for(check)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// `wait_for` that lets the caller say what it saw when the time ran out.
async fn try_wait_for<T, F, Fut>(mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn list(kubectl: &Kubectl, kind: &str, ns: &str) -> Vec<Value> {
    let out = kubectl.run(&["-n", ns, "get", kind, "-o", "json"]).await;
    assert!(out.success, "kubectl get {kind}: {}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).expect("list");
    list["items"].as_array().cloned().unwrap_or_default()
}

async fn annotation(kubectl: &Kubectl, name: &str, key: &str) -> Option<String> {
    let pvc = get(kubectl, "pvc", NS, name).await?;
    pvc["metadata"]["annotations"][key].as_str().map(str::to_string)
}

/// Wait (90 s) for an annotation's value; on a timeout, say what the PVC and its Events showed.
async fn wait_annotation(kubectl: &Kubectl, name: &str, key: &str, want: &str) {
    let seen =
        try_wait_for(|| async { (annotation(kubectl, name, key).await.as_deref() == Some(want)).then_some(()) }).await;
    if seen.is_none() {
        let pvc = get(kubectl, "pvc", NS, name).await.unwrap_or_default();
        let events = kubectl.run(&["-n", NS, "get", "events"]).await.stdout;
        panic!(
            "timed out waiting for {name} {key}={want}; metadata: {}; status: {}\nevents:\n{events}",
            pvc["metadata"], pvc["status"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_on_real_clusters_under_the_shipped_rbac() {
    let _serial = serial().await;
    let pair = RealPair::start().await;
    eprintln!("two control planes up in {:.1}s", pair.started_in.as_secs_f64());
    let (mut a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());

    // The shipped Deployment's pods pass Pod Security `restricted` (the real admission) and
    // run (kwok).
    for k in [&ka, &kb] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pods = list(k, "pods", "volsync-dr").await;
            let running = pods.iter().filter(|p| p["status"]["phase"] == "Running").count();
            if running == 2 {
                break;
            }
            if Instant::now() > deadline {
                let events = k.run(&["-n", "volsync-dr", "get", "events"]).await.stdout;
                panic!("volsync-dr's pods are not Running under Pod Security restricted; events:\n{events}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Stamped at admission: the object the API server returns already carries them.
    let created = create(&ka, &pvc("db", json!({"volsync-dr.io/protect": "true"}))).await;
    assert_eq!(
        created["metadata"]["labels"]["volsync-dr.io/protected"], "true",
        "{created}"
    );
    assert!(
        created["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "volsync-dr.io/protection")),
        "{created}"
    );
    wait_annotation(&ka, "db", "volsync-dr.io/state", "Protected").await;
    synced_by_schedule(&pair, PRIMARY, "db", "table", "row 1").await;
    wait_annotation(&kb, "db", "volsync-dr.io/role", "secondary").await;

    // A bad annotation, refused by the webhook as kubectl prints it from the real API server.
    let refused = ka
        .run(&[
            "annotate",
            "--overwrite",
            "pvc",
            "db",
            "volsync-dr.io/schedule=0 */5 * * * *",
        ])
        .await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("admission webhook") && refused.stderr.contains("volsync-dr.io/schedule"),
        "{}",
        refused.stderr
    );

    // status and doctor, as the ServiceAccount.
    let (ok, table, err) = a.cli(&["status"]);
    assert!(ok, "{err}");
    for cluster in [PRIMARY, SECONDARY] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(cluster) && l.contains(" db ") && l.contains("Protected")),
            "{table}"
        );
    }
    let (ok, report, err) = a.cli(&["doctor"]);
    assert!(ok, "doctor with the shipped RBAC:\n{report}\n{err}");
    assert!(!report.contains("FAIL"), "{report}");

    // The webhook down (the whole process): PVCs are still admitted; back up, it protects them.
    a.process.kill();
    let unstamped = create(&ka, &pvc("late", json!({"volsync-dr.io/protect": "true"}))).await;
    let finalizers = unstamped["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !finalizers.iter().any(|f| f == "volsync-dr.io/protection"),
        "{unstamped}"
    );
    a.process.start_again();
    a.wait_ready().await;
    wait_annotation(&ka, "late", "volsync-dr.io/state", "Protected").await;

    // Unprotect cleans both clusters and keeps the replica.
    ka.ok(&["annotate", "pvc", "db", "volsync-dr.io/protect-"]).await;
    wait_for("db's protection removed on both clusters", || async {
        let gone = get(&ka, "replicationsource", NS, "rs-db").await.is_none()
            && get(&ka, "secret", NS, "volsync-dr-db").await.is_none()
            && get(&kb, "replicationdestination", NS, "rd-db").await.is_none()
            && get(&kb, "secret", NS, "volsync-dr-db").await.is_none();
        gone.then_some(())
    })
    .await;
    assert!(get(&kb, "pvc", NS, "db").await.is_some(), "the replica PVC is kept");
    assert_eq!(pair.read(SECONDARY, NS, "db", "table").as_deref(), Some("row 1"));

    a.assert_never_forbidden();
    b.assert_never_forbidden();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drpolicy_and_doctor_on_real_clusters() {
    let _serial = serial().await;
    let pair = RealPair::start().await;
    let (a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());

    // A PVC that exists before its policy, in a namespace the policy selects by label.
    ka.ok(&["create", "namespace", "shop"]).await;
    ka.ok(&["label", "namespace", "shop", "dr=on"]).await;
    // The application's namespace exists on both clusters (volsync-dr does not create
    // namespaces): first without it on cluster-b, where the PVC says so in plain words.
    let mut existing = pvc("orders", json!({}));
    existing["metadata"]["namespace"] = json!("shop");
    create(&ka, &existing).await;
    let policy = json!({"apiVersion": "volsync-dr.io/v1alpha1", "kind": "DRPolicy",
                        "metadata": {"name": "shop"},
                        "spec": {"namespaceSelector": {"matchLabels": {"dr": "on"}},
                                 "defaults": {"schedule": "*/5 * * * *"}}});
    pair.a.apply(&[policy]).await;
    wait_for("a Degraded Event naming the missing namespace on cluster-b", || async {
        let events = ka
            .run(&["-n", "shop", "get", "events", "--field-selector", "reason=Degraded"])
            .await;
        events
            .stdout
            .contains("namespaces \"shop\" not found: create the namespace on the peer cluster")
            .then_some(())
    })
    .await;
    kb.ok(&["create", "namespace", "shop"]).await;
    let protected = try_wait_for(|| async {
        let p = get(&ka, "pvc", "shop", "orders").await?;
        (p["metadata"]["annotations"]["volsync-dr.io/state"] == "Protected").then_some(())
    })
    .await;
    if protected.is_none() {
        let policy = ka.run(&["get", "drpolicy", "shop", "-o", "yaml"]).await.stdout;
        let pvc = ka.run(&["-n", "shop", "get", "events"]).await.stdout;
        panic!(
            "the policy did not protect shop/orders\n{policy}\n{pvc}\nlog:\n{}",
            a.process.tail(40)
        );
    }
    wait_for("shop/orders' replica on cluster-b", || async {
        let p = get(&kb, "pvc", "shop", "orders").await?;
        (p["metadata"]["annotations"]["volsync-dr.io/role"] == "secondary").then_some(())
    })
    .await;
    let rs = get(&ka, "replicationsource", "shop", "rs-orders")
        .await
        .expect("rs-orders");
    assert_eq!(rs["spec"]["trigger"]["schedule"], "*/5 * * * *");
    let drp = ka.ok(&["get", "drpolicies"]).await;
    assert!(
        drp.lines().any(|l| l.starts_with("shop") && l.contains("True")),
        "{drp}"
    );

    // One rule less on cluster-b's ClusterRole: doctor on cluster-a names the missing verb.
    let role = get(&kb, "clusterrole", "", "volsync-dr").await.expect("ClusterRole");
    let rules: Vec<Value> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r["apiGroups"][0] == "volsync.backube" {
                r["verbs"] = json!(
                    r["verbs"]
                        .as_array()
                        .expect("verbs")
                        .iter()
                        .filter(|v| *v != "delete")
                        .collect::<Vec<_>>()
                );
            }
            r
        })
        .collect();
    let patch = json!([{"op": "replace", "path": "/rules", "value": rules}]);
    kb.ok(&[
        "patch",
        "clusterrole",
        "volsync-dr",
        "--type=json",
        "-p",
        &patch.to_string(),
    ])
    .await;
    let (ok, report, _) = a.cli(&["doctor"]);
    assert!(!ok, "doctor must fail:\n{report}");
    assert!(
        report
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("delete") && l.contains("replicationsources")),
        "{report}"
    );

    a.assert_never_forbidden();
    b.assert_never_forbidden();
}

/// A Deployment `app` whose pods mount the PVC `db`.
fn app(replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}},
                              "spec": {"containers": [{"name": "app", "image": "busybox"}],
                                       "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "db"}}]}}}
    })
}

async fn running_pods(kubectl: &Kubectl) -> usize {
    list(kubectl, "pods", NS)
        .await
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "app" && p["status"]["phase"] == "Running")
        .count()
}

/// Protected `db` on cluster-a with `app` at 2 replicas, the standby `app` at 0 on cluster-b,
/// and a first file synced.
async fn protected_app(pair: &RealPair) {
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    create(&ka, &pvc("db", json!({"volsync-dr.io/protect": "true"}))).await;
    pair.a.apply(&[app(2)]).await;
    pair.b.apply(&[app(0)]).await;
    wait_annotation(&ka, "db", "volsync-dr.io/state", "Protected").await;
    wait_for("the application's two pods Running on cluster-a", || async {
        (running_pods(&ka).await == 2).then_some(())
    })
    .await;
    synced_by_schedule(pair, PRIMARY, "db", "v1", "first").await;
    wait_annotation(&kb, "db", "volsync-dr.io/role", "secondary").await;
}

/// An action's steps as a watch on its PVC saw them: when each `action-step` began.
struct Timeline {
    steps: Vec<(Instant, String)>,
    finished: Instant,
}

impl Timeline {
    /// Time spent waiting for VolSync's syncs (`wait-for-sync`, `wait-for-local-sync`, and a
    /// running one to finish: `wait-for-sync-idle`).
    fn sync(&self) -> Duration {
        let ends = self
            .steps
            .iter()
            .skip(1)
            .map(|(at, _)| *at)
            .chain(std::iter::once(self.finished));
        self.steps
            .iter()
            .zip(ends)
            .filter(|((_, step), _)| {
                ["wait-for-sync", "wait-for-local-sync", "wait-for-sync-idle"].contains(&step.as_str())
            })
            .map(|((began, _), ended)| ended.saturating_duration_since(*began))
            .sum()
    }
}

/// Watch `pvc` until `request` is its finished `last-action` (3 minutes at most), recording
/// when each step began.
fn watch_steps(client: kube::Client, pvc: &str, request: &str) -> tokio::task::JoinHandle<Timeline> {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let api: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = kube::Api::namespaced(client, NS);
    let config = watcher::Config::default().fields(&format!("metadata.name={pvc}"));
    let request = request.to_string();
    tokio::spawn(async move {
        let mut steps: Vec<(Instant, String)> = Vec::new();
        let events = watcher::watcher(api, config);
        futures::pin_mut!(events);
        let watch = async {
            while let Some(event) = events.next().await {
                let Ok(watcher::Event::Apply(pvc) | watcher::Event::InitApply(pvc)) = event else {
                    continue;
                };
                let annotations = pvc.metadata.annotations.unwrap_or_default();
                let finished = annotations.get("volsync-dr.io/last-action") == Some(&request)
                    && annotations
                        .get("volsync-dr.io/action-phase")
                        .is_some_and(|p| p != "Running");
                if finished && !steps.is_empty() {
                    return;
                }
                if let Some(step) = annotations.get("volsync-dr.io/action-step")
                    && steps.last().map(|(_, s)| s) != Some(step)
                {
                    steps.push((Instant::now(), step.clone()));
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(180), watch).await;
        Timeline {
            steps,
            finished: Instant::now(),
        }
    })
}

/// The number after `marker` in an action message ("... finished in 3.2s; ...").
fn seconds_after(message: &str, marker: &str) -> Option<f64> {
    let rest = &message[message.find(marker)? + marker.len()..];
    let number: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    number.parse().ok()
}

/// One verb's numbers on this tier, printed: end to end (the operator's own count), waiting
/// for syncs, the rest (orchestration overhead), and the application's down time.
async fn report_timing(kubectl: &Kubectl, pvc: &str, verb: &str, timeline: tokio::task::JoinHandle<Timeline>) {
    let timeline = timeline.await.expect("timeline");
    let message = annotation(kubectl, pvc, "volsync-dr.io/action-message")
        .await
        .unwrap_or_default();
    let total = seconds_after(&message, "finished in ").expect("the message says how long");
    let sync = timeline.sync().as_secs_f64();
    let down = seconds_after(&message, "down for ").or_else(|| seconds_after(&message, "started here "));
    let ends = timeline
        .steps
        .iter()
        .skip(1)
        .map(|(at, _)| *at)
        .chain([timeline.finished]);
    let steps: Vec<String> = timeline
        .steps
        .iter()
        .zip(ends)
        .map(|((began, step), ended)| format!("{step} {:.2}", ended.saturating_duration_since(*began).as_secs_f64()))
        .collect();
    println!(
        "timing {verb}: total {total:.2}s, waiting for syncs {sync:.2}s, overhead {:.2}s, app down {}; steps: {}",
        total - sync,
        down.map_or("-".to_string(), |d| format!("{d:.2}s")),
        steps.join(", ")
    );
}

/// Cluster a dies: its operator, its VolSync and its API server (SIGKILL).
fn lose_a(pair: &mut RealPair, a: &mut testkit::realk8s::Operator) {
    a.process.kill();
    pair.simulator.pause(PRIMARY);
    pair.cluster_mut(PRIMARY).apiserver.kill();
}

/// Cluster a comes back: its API server restarted and ready, its VolSync and its operator.
/// Returns when its API server answered again.
async fn a_returns(pair: &mut RealPair, a: &mut testkit::realk8s::Operator) -> Instant {
    pair.cluster_mut(PRIMARY).apiserver.start_again();
    pair.a
        .wait_for(&["get", "--raw", "/readyz"], "ok", "cluster-a's API server back")
        .await;
    let back = Instant::now();
    controllers_caught_up(&pair.a.kubectl()).await;
    pair.simulator.resume(PRIMARY);
    a.process.start_again();
    a.wait_ready().await;
    back
}

/// A restarted API server is ready before the cluster is: while it was down, the
/// controllers' and kwok's watches backed off (client-go waits up to 30 s between tries), and
/// until they are back nothing acts on a change. A person fails back once the old primary is
/// healthy again; here a canary Deployment whose pod runs (Deployment, ReplicaSet, scheduler
/// and kubelet watches all live again) says so.
async fn controllers_caught_up(kubectl: &Kubectl) {
    let canary = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "canary", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "canary"}},
                 "template": {"metadata": {"labels": {"app": "canary"}},
                              "spec": {"containers": [{"name": "canary", "image": "busybox"}]}}}
    });
    let started = Instant::now();
    create(kubectl, &canary).await;
    wait_for("a canary pod running: the cluster's controllers caught up", || async {
        list(kubectl, "pods", NS)
            .await
            .iter()
            .any(|p| p["metadata"]["labels"]["app"] == "canary" && p["status"]["phase"] == "Running")
            .then_some(())
    })
    .await;
    println!(
        "the returned cluster's controllers ran a new pod {:.1}s after its API server was ready",
        started.elapsed().as_secs_f64()
    );
    kubectl
        .ok(&[
            "-n",
            NS,
            "delete",
            "deployment",
            "canary",
            "--cascade=foreground",
            "--wait",
        ])
        .await;
}

/// Write `file` on a's copy of `pvc`, request `request` there and wait until it succeeded: the
/// action's own sync carried the file to b. Prints the verb's timing.
async fn request_carrying(pair: &RealPair, pvc: &str, request: &str, file: &str) {
    let ka = pair.a.kubectl();
    let content = format!("written just before {request}");
    pair.write(PRIMARY, NS, pvc, file, &content);
    let timeline = watch_steps(pair.a.client().await, pvc, request);
    let annotation = format!("volsync-dr.io/action={request}");
    ka.ok(&["annotate", "--overwrite", "pvc", pvc, &annotation]).await;
    wait_action_succeeded(&ka, pvc, request).await;
    let verb = request.split(':').next().unwrap_or(request);
    report_timing(&ka, pvc, verb, timeline).await;
    assert_eq!(pair.read(SECONDARY, NS, pvc, file).as_deref(), Some(content.as_str()));
}

/// Write `file` on `from`'s copy of `pvc`, let the scheduled syncs run now, and wait until it
/// is on the other cluster's copy.
async fn synced_by_schedule(pair: &RealPair, from: &str, pvc: &str, file: &str, content: &str) {
    pair.write(from, NS, pvc, file, content);
    pair.simulator.run_schedules_now();
    let to = RealPair::peer_of(from);
    wait_for(&format!("{file} of {pvc} synced from {from} to {to}"), || async {
        (pair.read(to, NS, pvc, file).as_deref() == Some(content)).then_some(())
    })
    .await;
}

async fn wait_succeeded(kubectl: &Kubectl, request: &str) {
    wait_action_succeeded(kubectl, "db", request).await
}

async fn wait_action_succeeded(kubectl: &Kubectl, name: &str, request: &str) {
    let finished = try_wait_for(|| async {
        (annotation(kubectl, name, "volsync-dr.io/last-action").await.as_deref() == Some(request)).then_some(())
    })
    .await;
    if finished.is_none() {
        let pvc = get(kubectl, "pvc", NS, name).await.unwrap_or_default();
        let events = kubectl
            .run(&["-n", NS, "get", "events", "--sort-by=.lastTimestamp"])
            .await
            .stdout;
        panic!(
            "{request} did not finish; annotations: {}\nevents:\n{events}",
            pvc["metadata"]["annotations"]
        );
    }
    let phase = annotation(kubectl, name, "volsync-dr.io/action-phase").await;
    let message = annotation(kubectl, name, "volsync-dr.io/action-message").await;
    assert_eq!(phase.as_deref(), Some("Succeeded"), "{request}: {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_on_real_clusters_moves_the_application_and_its_data() {
    let _serial = serial().await;
    let pair = RealPair::start().await;
    let (a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    protected_app(&pair).await;

    // sync-now carries a file written just before it and leaves the application running.
    request_carrying(&pair, "db", "sync-now:1", "s1").await;
    assert_eq!(running_pods(&ka).await, 2, "sync-now leaves the application running");

    // Written just before the request: only the migration's own sync carries it.
    request_carrying(&pair, "db", "migrate:1", "v2").await;
    // The real Deployment controller removed a's pods; b's run.
    assert_eq!(running_pods(&ka).await, 0);
    let a_app = get(&ka, "deployment", NS, "app").await.expect("app on a");
    assert_eq!(a_app["spec"]["replicas"], 0);
    wait_for("the application's two pods Running on cluster-b", || async {
        (running_pods(&kb).await == 2).then_some(())
    })
    .await;
    assert_eq!(
        annotation(&ka, "db", "volsync-dr.io/role").await.as_deref(),
        Some("secondary")
    );
    assert_eq!(
        annotation(&kb, "db", "volsync-dr.io/role").await.as_deref(),
        Some("primary")
    );
    // Protection now runs b → a.
    wait_annotation(&kb, "db", "volsync-dr.io/state", "Protected").await;
    synced_by_schedule(&pair, SECONDARY, "db", "v3", "written on b").await;
    a.assert_never_forbidden();
    b.assert_never_forbidden();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_on_real_clusters_with_cluster_a_killed() {
    let _serial = serial().await;
    let mut pair = RealPair::start().await;
    let (mut a, b) = deploy(&pair, volsync_dr()).await;
    let kb = pair.b.kubectl();
    protected_app(&pair).await;

    // Cluster a dies: its API server SIGKILLed (and its operator and VolSync with it).
    lose_a(&mut pair, &mut a);
    let timeline = watch_steps(pair.b.client().await, "db", "failover:1");
    kb.ok(&["annotate", "pvc", "db", "volsync-dr.io/action=failover:1"])
        .await;
    wait_succeeded(&kb, "failover:1").await;
    report_timing(&kb, "db", "failover", timeline).await;
    assert_eq!(pair.read(SECONDARY, NS, "db", "v1").as_deref(), Some("first"));
    assert_eq!(
        annotation(&kb, "db", "volsync-dr.io/role").await.as_deref(),
        Some("primary")
    );
    wait_for("the application Running on cluster-b", || async {
        (running_pods(&kb).await >= 1).then_some(())
    })
    .await;
    for (kind, name) in [
        ("replicationdestination", "rd-db"),
        ("replicationsource", "rs-db-local"),
        ("pvc", "restored-db"),
    ] {
        assert!(
            get(&kb, kind, NS, name).await.is_none(),
            "{kind}/{name} is left on cluster-b"
        );
    }
    // While a stays away, b says so: the new primary cannot protect toward it (Degraded, with
    // the reason in an Event) and the reachability metric is 0.
    wait_annotation(&kb, "db", "volsync-dr.io/state", "Degraded").await;
    wait_for("a Degraded Event on b naming the unreachable peer", || async {
        let events = kb.run(&["-n", NS, "get", "events", "-o", "json"]).await.stdout;
        let events: Value = serde_json::from_str(&events).unwrap_or_default();
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["reason"] == "Degraded" && e["message"].as_str().is_some_and(|m| m.contains("cluster-a")))
            .then_some(())
    })
    .await;
    wait_for("volsync_dr_peer_reachable 0 on b", || async {
        let reply = testkit::http::request(b.admin, "GET", "/metrics", "text/plain", "").await;
        let text = reply.body.as_str().unwrap_or_default().to_string();
        text.lines().any(|l| l == "volsync_dr_peer_reachable 0").then_some(())
    })
    .await;
    b.assert_never_forbidden();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restarted_under_running_operators_misses_nothing() {
    let _serial = serial().await;
    let mut pair = RealPair::start().await;
    let (a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    create(&ka, &pvc("before", json!({"volsync-dr.io/protect": "true"}))).await;
    wait_annotation(&ka, "before", "volsync-dr.io/state", "Protected").await;

    // etcd (both clusters' storage) goes away under both API servers and both operators, and
    // comes back with its data; then, before anyone waits, a new PVC and a changed schedule.
    pair.etcd.kill();
    wait_for("both API servers to notice etcd is gone", || async {
        let a_down = !ka.run(&["get", "--raw", "/readyz"]).await.success;
        let b_down = !kb.run(&["get", "--raw", "/readyz"]).await.success;
        (a_down && b_down).then_some(())
    })
    .await;
    pair.etcd.start_again();
    pair.a
        .wait_for(&["get", "--raw", "/readyz"], "ok", "cluster-a ready again")
        .await;
    pair.b
        .wait_for(&["get", "--raw", "/readyz"], "ok", "cluster-b ready again")
        .await;
    create(&ka, &pvc("after", json!({"volsync-dr.io/protect": "true"}))).await;
    ka.ok(&[
        "annotate",
        "--overwrite",
        "pvc",
        "before",
        "volsync-dr.io/schedule=*/7 * * * *",
    ])
    .await;

    // The watches relisted: both changes are acted on, and nothing is duplicated.
    wait_annotation(&ka, "after", "volsync-dr.io/state", "Protected").await;
    wait_for("rs-before on the new schedule", || async {
        let rs = get(&ka, "replicationsource", NS, "rs-before").await?;
        (rs["spec"]["trigger"]["schedule"] == "*/7 * * * *").then_some(())
    })
    .await;
    for (kubectl, kind, want) in [
        (&ka, "replicationsource", vec!["rs-after", "rs-before"]),
        (&kb, "replicationdestination", vec!["rd-after", "rd-before"]),
    ] {
        let mut names: Vec<String> = list(kubectl, kind, NS)
            .await
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        assert_eq!(names, want, "{kind}s");
    }
    for operator in [&a, &b] {
        assert!(
            testkit::http::request(operator.admin, "GET", "/healthz", "text/plain", "")
                .await
                .status
                == 200,
            "the operator on {} is alive",
            operator.cluster
        );
    }
    a.assert_never_forbidden();
    b.assert_never_forbidden();
}

/// An annotation of the test namespace.
async fn namespace_annotation(kubectl: &Kubectl, key: &str) -> Option<String> {
    let out = kubectl.run(&["get", "namespace", NS, "-o", "json"]).await;
    let namespace: Value = serde_json::from_str(&out.stdout).ok()?;
    namespace["metadata"]["annotations"][key].as_str().map(str::to_string)
}

/// A StatefulSet `web` whose claim template `data` gives the PVC `data-web-0`.
fn stateful_app(replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": replicas, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "busybox",
                                                       "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                           "spec": {"accessModes": ["ReadWriteOnce"],
                                                    "resources": {"requests": {"storage": "1Gi"}}}}]}
    })
}

async fn pods_of(kubectl: &Kubectl, app: &str, running_only: bool) -> usize {
    list(kubectl, "pods", NS)
        .await
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .filter(|p| !running_only || p["status"]["phase"] == "Running")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_syncs_now_and_migrates_on_real_clusters_as_one_group() {
    let _serial = serial().await;
    let pair = RealPair::start().await;
    let (a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    // The claims the StatefulSet's template produces, created protected first (the StatefulSet
    // controller adopts claims of those names); the standby StatefulSet on b at 0 replicas.
    const ORDINALS: [&str; 3] = ["data-web-0", "data-web-1", "data-web-2"];
    // data-web-2 is not protected at first.
    for name in ORDINALS {
        let protect = if name == "data-web-2" {
            json!({})
        } else {
            json!({"volsync-dr.io/protect": "true"})
        };
        create(&ka, &pvc(name, protect)).await;
    }
    pair.a.apply(&[stateful_app(3)]).await;
    pair.b.apply(&[stateful_app(0)]).await;
    wait_for("web-0..2 Running on cluster-a", || async {
        (pods_of(&ka, "web", true).await == 3).then_some(())
    })
    .await;
    wait_annotation(&ka, "data-web-0", "volsync-dr.io/state", "Protected").await;
    // The webhook refuses a request for the application while one of its volumes is not
    // protected, naming it; once it is, the request is admitted.
    let refused = ka
        .run(&["annotate", "pvc", "data-web-0", "volsync-dr.io/action=sync-now:0"])
        .await;
    assert!(
        !refused.success
            && refused
                .stderr
                .contains("PVC data-web-2 is used by the same application"),
        "{}",
        refused.stderr
    );
    ka.ok(&["annotate", "pvc", "data-web-2", "volsync-dr.io/protect=true"])
        .await;
    for name in ORDINALS {
        wait_annotation(&ka, name, "volsync-dr.io/state", "Protected").await;
    }

    // sync-now on one ordinal syncs the whole group, without touching the application.
    pair.write(PRIMARY, NS, "data-web-2", "s1", "written on web-2 before sync-now");
    request_carrying(&pair, "data-web-0", "sync-now:1", "s1").await;
    assert_eq!(
        pair.read(SECONDARY, NS, "data-web-2", "s1").as_deref(),
        Some("written on web-2 before sync-now"),
        "sync-now on data-web-0 synced data-web-2 too"
    );
    assert_eq!(
        pods_of(&ka, "web", true).await,
        3,
        "sync-now leaves the application running"
    );

    // migrate on data-web-0 (the scenario): the real StatefulSet controller deletes
    // every pod of web on a before the final syncs, all three ordinals move, and web starts on
    // b with each pod on its own ordinal's replica.
    for name in &ORDINALS[1..] {
        pair.write(PRIMARY, NS, name, "m1", &format!("{name} just before migrate"));
    }
    request_carrying(&pair, "data-web-0", "migrate:1", "m1").await;
    for name in ORDINALS {
        if name != "data-web-0" {
            assert_eq!(
                pair.read(SECONDARY, NS, name, "m1"),
                Some(format!("{name} just before migrate")),
                "{name}'s newest data is on b"
            );
        }
        assert_eq!(
            annotation(&kb, name, "volsync-dr.io/role").await.as_deref(),
            Some("primary"),
            "{name} on b"
        );
        assert_eq!(
            annotation(&ka, name, "volsync-dr.io/role").await.as_deref(),
            Some("secondary"),
            "{name} on a"
        );
    }
    assert_eq!(
        pods_of(&ka, "web", false).await,
        0,
        "no pod of web is left on cluster-a"
    );
    let sts = get(&ka, "statefulset", NS, "web").await.expect("web on a");
    assert_eq!(sts["spec"]["replicas"], 0);
    wait_for("web-0..2 Running on cluster-b", || async {
        (pods_of(&kb, "web", true).await == 3).then_some(())
    })
    .await;
    for (i, name) in ORDINALS.iter().enumerate() {
        let pod = get(&kb, "pod", NS, &format!("web-{i}")).await.expect("pod on b");
        assert_eq!(
            pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], *name,
            "web-{i} on b mounts its replica"
        );
    }
    // Writes on b flow back to a by the reversed schedule, for every ordinal.
    for name in ORDINALS {
        wait_annotation(&kb, name, "volsync-dr.io/state", "Protected").await;
    }
    synced_by_schedule(&pair, SECONDARY, "data-web-2", "b1", "written on b").await;

    // The way back, asked of the namespace on b: every application in it (here, web) returns.
    kb.ok(&["annotate", "namespace", NS, "volsync-dr.io/action=migrate:back"])
        .await;
    wait_for("the namespace's migrate:back finished", || async {
        (namespace_annotation(&kb, "volsync-dr.io/last-action").await.as_deref() == Some("migrate:back")).then_some(())
    })
    .await;
    let message = namespace_annotation(&kb, "volsync-dr.io/action-message").await;
    assert_eq!(
        namespace_annotation(&kb, "volsync-dr.io/action-phase").await.as_deref(),
        Some("Succeeded"),
        "{message:?}"
    );
    for name in ORDINALS {
        assert_eq!(
            annotation(&ka, name, "volsync-dr.io/role").await.as_deref(),
            Some("primary"),
            "{name} back on a"
        );
    }
    assert_eq!(
        pair.read(PRIMARY, NS, "data-web-2", "b1").as_deref(),
        Some("written on b")
    );
    wait_for("web-0..2 Running on cluster-a again", || async {
        (pods_of(&ka, "web", true).await == 3).then_some(())
    })
    .await;
    a.assert_never_forbidden();
    b.assert_never_forbidden();
}

/// Whether a pod of `app` exists (in any phase); an API server that does not answer counts
/// as no (the writer stops rather than write unseen).
async fn app_pod_exists(pods: &kube::Api<k8s_openapi::api::core::v1::Pod>) -> bool {
    let params = kube::api::ListParams::default().labels("app=app");
    pods.list(&params).await.is_ok_and(|list| !list.items.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_with_a_writer_on_real_clusters_loses_no_acknowledged_write() {
    let _serial = serial().await;
    let mut pair = RealPair::start().await;
    let (mut a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    protected_app(&pair).await;
    // Failover with a dead, then a comes back: its API server restarted, its VolSync and its
    // operator too. Its copy is stale, so it leaves the pair alone.
    lose_a(&mut pair, &mut a);
    kb.ok(&["annotate", "pvc", "db", "volsync-dr.io/action=failover:1"])
        .await;
    wait_succeeded(&kb, "failover:1").await;
    // a's copy is stale: fenced at once (by b's operator when a answers, or a's own on start),
    // its application scaled to 0 so it never runs beside b's. Watched from before a returns.
    let fenced_at = {
        let ka = pair.a.kubectl();
        tokio::spawn(async move {
            // Bounded: 1,200 looks (a few minutes at most).
            for _ in 0..1200 {
                if annotation(&ka, "db", "volsync-dr.io/role").await.as_deref() == Some("fenced") {
                    return Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        })
    };
    let back = a_returns(&mut pair, &mut a).await;
    let fenced_at = fenced_at.await.expect("watch").expect("cluster-a fenced");
    println!(
        "cluster-a fenced {:.1}s after its API server answered again",
        fenced_at.saturating_duration_since(back).as_secs_f64()
    );
    let app_on_a = get(&ka, "deployment", NS, "app").await.expect("app on a");
    assert_eq!(app_on_a["spec"]["replicas"], 0, "a's application stopped by the fence");
    wait_annotation(&ka, "db", "volsync-dr.io/state", "Degraded").await;
    wait_for("the application Running on cluster-b", || async {
        (running_pods(&kb).await >= 1).then_some(())
    })
    .await;

    // The application on b writes numbered files while any pod of it exists. A write counts as
    // acknowledged when a pod existed before and after it: it was made while the application ran.
    let writer = {
        let pods = kube::Api::namespaced(pair.b.client().await, NS);
        let volume = pair.volume(SECONDARY, NS, "db");
        tokio::spawn(async move {
            let (mut acknowledged, mut made) = (Vec::new(), 0u32);
            // Bounded: 2,000 writes at most (the failback ends the application long before).
            for n in 0..2000u32 {
                if !app_pod_exists(&pods).await {
                    break;
                }
                std::fs::write(volume.join(format!("w{n:04}")), n.to_string()).expect("write");
                made += 1;
                if app_pod_exists(&pods).await {
                    acknowledged.push(n);
                }
            }
            (acknowledged, made)
        })
    };
    // Let the writer write a while before the request.
    wait_for("the writer's first 50 files", || async {
        let dir = pair.volume(SECONDARY, NS, "db");
        (std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0) > 50).then_some(())
    })
    .await;
    let started = Instant::now();
    let timeline = watch_steps(pair.b.client().await, "db", "failback:1");
    kb.ok(&[
        "annotate",
        "--overwrite",
        "pvc",
        "db",
        "volsync-dr.io/action=failback:1",
    ])
    .await;
    wait_succeeded(&kb, "failback:1").await;
    report_timing(&kb, "db", "failback", timeline).await;
    let took = started.elapsed();
    let (acknowledged, made) = writer.await.expect("writer");
    let lost: Vec<u32> = acknowledged
        .iter()
        .copied()
        .filter(|n| pair.read(PRIMARY, NS, "db", &format!("w{n:04}")).as_deref() != Some(n.to_string().as_str()))
        .collect();
    println!(
        "failback with a writer: {made} writes made, {} acknowledged, {} lost, failback took {:.1}s",
        acknowledged.len(),
        lost.len(),
        took.as_secs_f64()
    );
    assert!(acknowledged.len() > 50, "the writer wrote while the application ran");
    assert!(lost.is_empty(), "acknowledged writes missing on cluster-a: {lost:?}");
    wait_for("the application Running on cluster-a again", || async {
        (running_pods(&ka).await == 2).then_some(())
    })
    .await;
    assert_eq!(
        pods_of(&kb, "app", false).await,
        0,
        "nothing of the application left on b"
    );
    assert_eq!(
        annotation(&ka, "db", "volsync-dr.io/role").await.as_deref(),
        Some("primary")
    );
    assert_eq!(
        annotation(&kb, "db", "volsync-dr.io/role").await.as_deref(),
        Some("secondary")
    );
    a.assert_never_forbidden();
    b.assert_never_forbidden();
}

/// Run `request` with the operator SIGKILLed right after each step of `verb` starts (the
/// `test-hooks` build holds it there) and started again, then let it finish.
async fn with_a_crash_at_every_step(operator: &mut testkit::realk8s::Operator, kubectl: &Kubectl, request: &str) {
    const HOLD: &str = "VOLSYNC_DR_TEST_HOLD_AT_STEP";
    let verb = request
        .parse::<volsync_dr::model::action::ActionRequest>()
        .expect("request")
        .verb;
    for (i, step) in volsync_dr::steps::flow(verb).iter().enumerate() {
        let hold = format!("{verb}/{}", step.as_str());
        operator.process.set_env(HOLD, Some(&hold));
        operator.process.start_again();
        operator.wait_ready().await;
        if i == 0 {
            let annotation = format!("volsync-dr.io/action={request}");
            kubectl.ok(&["annotate", "--overwrite", "pvc", "db", &annotation]).await;
        }
        let needle = format!("holding right after the step started step=\"{hold}\"");
        wait_for(&format!("the operator held at {hold}"), || async {
            operator.log().contains(&needle).then_some(())
        })
        .await;
        assert_eq!(
            annotation(kubectl, "db", "volsync-dr.io/action-step").await.as_deref(),
            Some(step.as_str()),
            "the step is recorded before it acts"
        );
        operator.process.kill();
    }
    operator.process.set_env(HOLD, None);
    operator.process.start_again();
    operator.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "the crash hook needs --features volsync-dr/test-hooks"
)]
async fn failover_and_failback_survive_a_crash_at_every_step_on_real_clusters() {
    let _serial = serial().await;
    let mut pair = RealPair::start().await;
    let (mut a, mut b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    protected_app(&pair).await;

    // Failover with a dead, b's operator killed at every step.
    lose_a(&mut pair, &mut a);
    with_a_crash_at_every_step(&mut b, &kb, "failover:1").await;
    wait_succeeded(&kb, "failover:1").await;
    assert_eq!(pair.read(SECONDARY, NS, "db", "v1").as_deref(), Some("first"));
    assert_eq!(
        annotation(&kb, "db", "volsync-dr.io/role").await.as_deref(),
        Some("primary")
    );
    wait_for("the application Running on cluster-b", || async {
        (running_pods(&kb).await == 1).then_some(())
    })
    .await;

    // a comes back; b's writes; failback with b's operator killed at every step.
    a_returns(&mut pair, &mut a).await;
    pair.write(SECONDARY, NS, "db", "b1", "written on b after the failover");
    with_a_crash_at_every_step(&mut b, &kb, "failback:1").await;
    wait_succeeded(&kb, "failback:1").await;
    assert_eq!(
        pair.read(PRIMARY, NS, "db", "b1").as_deref(),
        Some("written on b after the failover")
    );
    assert_eq!(
        annotation(&ka, "db", "volsync-dr.io/role").await.as_deref(),
        Some("primary")
    );
    wait_for("the application Running on cluster-a again at its own size", || async {
        (running_pods(&ka).await == 2).then_some(())
    })
    .await;
    assert_eq!(pods_of(&kb, "app", false).await, 0);
    for (kubectl, kind, name) in [
        (&kb, "replicationsource", "rs-db-latest"),
        (&kb, "replicationsource", "rs-db-local"),
        (&kb, "pvc", "restored-db"),
        (&ka, "replicationdestination", "rd-db"),
    ] {
        assert!(
            get(kubectl, kind, NS, name).await.is_none(),
            "{kind}/{name} is left over"
        );
    }
    a.assert_never_forbidden();
    b.assert_never_forbidden();
}

/// A Service in front of replicas, as kube-proxy gives one: each connection goes to the first
/// backend that accepts it. Stops when the returned handle is aborted (or after 15 minutes).
async fn service_proxy(backends: Vec<std::net::SocketAddr>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let serve = async {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let backends = backends.clone();
                tokio::spawn(async move {
                    for backend in backends {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(900), serve).await;
    });
    (address, task)
}

async fn leads(operator: &testkit::realk8s::Operator) -> bool {
    let reply = testkit::http::request(operator.admin, "GET", "/metrics", "text/plain", "").await;
    reply
        .body
        .as_str()
        .unwrap_or_default()
        .lines()
        .any(|l| l == "volsync_dr_leader 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_during_migrate_hands_over_to_the_other_replica() {
    let _serial = serial().await;
    let pair = RealPair::start().await;
    let (mut first, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    let second = first.start_replica("cluster-a-second").await;
    assert!(leads(&first).await && !leads(&second).await, "the first replica leads");
    // The webhook registration points at a Service over both replicas.
    let (service, proxy) = service_proxy(vec![first.webhook_addr(), second.webhook_addr()]).await;
    let url = json!([{"op": "replace", "path": "/webhooks/0/clientConfig/url",
                      "value": format!("https://{service}/mutate-pvc")}]);
    ka.ok(&[
        "patch",
        "mutatingwebhookconfiguration",
        "volsync-dr",
        "--type=json",
        "-p",
        &url.to_string(),
    ])
    .await;
    protected_app(&pair).await;

    // migrate waits in its sync (VolSync held back); the leader dies there.
    pair.simulator.pause(PRIMARY);
    ka.ok(&["annotate", "--overwrite", "pvc", "db", "volsync-dr.io/action=migrate:1"])
        .await;
    wait_annotation(&ka, "db", "volsync-dr.io/action-step", "wait-for-sync").await;
    first.process.kill();
    let killed = Instant::now();
    // The webhook keeps answering: a PVC created now is stamped by the remaining replica.
    let created = create(&ka, &pvc("during", json!({"volsync-dr.io/protect": "true"}))).await;
    let finalizers = created["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        finalizers.contains(&json!("volsync-dr.io/protection")),
        "stamped by the webhook through the Service: {}",
        created["metadata"]
    );
    wait_for("the second replica to take the Lease", || async {
        leads(&second).await.then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    println!(
        "leader killed during migrate: the other replica led after {:.1}s",
        takeover.as_secs_f64()
    );
    assert!(
        takeover < Duration::from_secs(15 + 5),
        "within the 15 s lease (and a retry): {takeover:?}"
    );

    pair.simulator.resume(PRIMARY);
    wait_succeeded(&ka, "migrate:1").await;
    assert_eq!(pair.read(SECONDARY, NS, "db", "v1").as_deref(), Some("first"));
    wait_for("the application's two pods Running on cluster-b", || async {
        (running_pods(&kb).await == 2).then_some(())
    })
    .await;
    assert_eq!(
        annotation(&kb, "db", "volsync-dr.io/role").await.as_deref(),
        Some("primary")
    );
    wait_annotation(&ka, "during", "volsync-dr.io/state", "Protected").await;
    proxy.abort();
    second.assert_never_forbidden();
    b.assert_never_forbidden();
}

async fn events_about(kubectl: &Kubectl, reason: &str, mentioning: &str) -> usize {
    let out = kubectl.run(&["-n", NS, "get", "events", "-o", "json"]).await.stdout;
    let events: Value = serde_json::from_str(&out).unwrap_or_default();
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason && e["message"].as_str().is_some_and(|m| m.contains(mentioning)))
        .count()
}

async fn names(kubectl: &Kubectl, kind: &str) -> Vec<String> {
    let mut names: Vec<String> = list(kubectl, kind, NS)
        .await
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_down_for_five_minutes_degrades_then_recovers_by_itself() {
    /// How long cluster-b's API server stays down: across two scheduled syncs (every 2 minutes).
    const OUTAGE: Duration = Duration::from_secs(300);
    let _serial = serial().await;
    let mut pair = RealPair::start().await;
    let (a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    let pvcs = ["p0", "p1", "p2"];
    for name in pvcs {
        let annotations = json!({"volsync-dr.io/protect": "true", "volsync-dr.io/schedule": "*/2 * * * *"});
        create(&ka, &pvc(name, annotations)).await;
    }
    for name in pvcs {
        wait_annotation(&ka, name, "volsync-dr.io/state", "Protected").await;
    }

    // cluster-b's control plane goes down (its VolSync with it); its operator keeps running.
    pair.simulator.pause(SECONDARY);
    pair.cluster_mut(SECONDARY).apiserver.kill();
    let down = Instant::now();
    for name in pvcs {
        wait_annotation(&ka, name, "volsync-dr.io/state", "Degraded").await;
    }
    wait_for("Degraded Events on a naming cluster-b", || async {
        (events_about(&ka, "Degraded", "cluster-b").await >= pvcs.len()).then_some(())
    })
    .await;
    // The outage lasts its full length; the PVCs stay Degraded meanwhile.
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    for name in pvcs {
        let state = annotation(&ka, name, "volsync-dr.io/state").await;
        assert_eq!(state.as_deref(), Some("Degraded"), "{name} during the outage");
    }

    // b returns: everything is Protected again by itself, and nothing is duplicated.
    pair.cluster_mut(SECONDARY).apiserver.start_again();
    pair.b
        .wait_for(&["get", "--raw", "/readyz"], "ok", "cluster-b's API server back")
        .await;
    pair.simulator.resume(SECONDARY);
    let back = Instant::now();
    for name in pvcs {
        wait_annotation(&ka, name, "volsync-dr.io/state", "Protected").await;
    }
    println!(
        "peer down for {:.0}s: all {} PVCs Protected again {:.1}s after it returned",
        OUTAGE.as_secs_f64(),
        pvcs.len(),
        back.elapsed().as_secs_f64()
    );
    assert_eq!(names(&ka, "replicationsource").await, ["rs-p0", "rs-p1", "rs-p2"]);
    assert_eq!(names(&kb, "replicationdestination").await, ["rd-p0", "rd-p1", "rd-p2"]);
    assert_eq!(names(&kb, "pvc").await, pvcs);
    for kubectl in [&ka, &kb] {
        let keys: Vec<String> = names(kubectl, "secret")
            .await
            .into_iter()
            .filter(|n| n.starts_with("volsync-dr-"))
            .collect();
        assert_eq!(keys, ["volsync-dr-p0", "volsync-dr-p1", "volsync-dr-p2"]);
    }
    // Syncs run again on the schedule.
    synced_by_schedule(&pair, PRIMARY, "p0", "after", "written after the outage").await;
    a.assert_never_forbidden();
    b.assert_never_forbidden();
}

/// The restore points cluster-b keeps for `db`, newest first, as its PVC lists them.
async fn listed_points(kubectl: &Kubectl) -> Vec<String> {
    annotation(kubectl, "db", "volsync-dr.io/restore-points-kept")
        .await
        .unwrap_or_default()
        .split(',')
        .filter_map(|e| e.split_once('=').map(|(_, name)| name.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_points_and_failover_to_a_chosen_one_on_real_clusters() {
    let _serial = serial().await;
    let mut pair = RealPair::start().await;
    let (mut a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    create(
        &ka,
        &pvc(
            "db",
            json!({"volsync-dr.io/protect": "true", "volsync-dr.io/restore-points": "3"}),
        ),
    )
    .await;
    pair.a.apply(&[app(1)]).await;
    pair.b.apply(&[app(0)]).await;
    wait_annotation(&ka, "db", "volsync-dr.io/state", "Protected").await;
    wait_annotation(&kb, "db", "volsync-dr.io/restore-points", "3").await;

    // Four syncs of four generations; each image is kept as it lands, the oldest pruned.
    let mut images: Vec<String> = Vec::new();
    for generation in 1..=4 {
        let content = format!("v{generation}");
        synced_by_schedule(&pair, PRIMARY, "db", "generation", &content).await;
        let image = wait_for("the new image kept and listed first", || async {
            let rd = get(&kb, "replicationdestination", NS, "rd-db").await?;
            let image = rd["status"]["latestImage"]["name"].as_str()?.to_string();
            let listed = listed_points(&kb).await;
            (!images.contains(&image) && listed.first() == Some(&image) && listed.len() <= 3).then_some(image)
        })
        .await;
        images.push(image);
    }
    let listed = listed_points(&kb).await;
    assert_eq!(listed, images.iter().rev().take(3).cloned().collect::<Vec<_>>());
    let labelled: Vec<String> = list(&kb, "volumesnapshots", NS)
        .await
        .iter()
        .filter(|s| s["metadata"]["labels"]["volsync-dr.io/restore-point"] == "true")
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(labelled.len(), 3, "exactly three kept: {labelled:?}");

    // Cluster a dies. The real API server calls the webhook, which refuses a pruned point.
    lose_a(&mut pair, &mut a);
    let pruned = format!("volsync-dr.io/restore-point={}", images[0]);
    let refused = kb
        .run(&["annotate", "pvc", "db", &pruned, "volsync-dr.io/action=failover:1"])
        .await;
    assert!(!refused.success, "a pruned point is refused");
    assert!(
        refused.stderr.contains(&format!(
            "restore point \"{}\" does not exist; kept: {}",
            images[0], listed[0]
        )),
        "{}",
        refused.stderr
    );
    // The second-newest, by name: the application starts on generation 3.
    let chosen = format!("volsync-dr.io/restore-point={}", listed[1]);
    kb.ok(&["annotate", "pvc", "db", &chosen, "volsync-dr.io/action=failover:1"])
        .await;
    wait_succeeded(&kb, "failover:1").await;
    assert_eq!(pair.read(SECONDARY, NS, "db", "generation").as_deref(), Some("v3"));
    wait_for("the application Running on cluster-b", || async {
        (running_pods(&kb).await >= 1).then_some(())
    })
    .await;
    b.assert_never_forbidden();
}

/// The pair's key as `kubectl` reads it from `volsync-dr-db` (base64, as stored).
async fn stored_key(kubectl: &Kubectl) -> Option<String> {
    get(kubectl, "secret", NS, "volsync-dr-db").await?["data"]["psk.txt"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_during_a_running_sync_on_real_clusters() {
    let _serial = serial().await;
    let pair = RealPair::start().await;
    let (a, b) = deploy(&pair, volsync_dr()).await;
    let (ka, kb) = (pair.a.kubectl(), pair.b.kubectl());
    create(&ka, &pvc("db", json!({"volsync-dr.io/protect": "true"}))).await;
    wait_annotation(&ka, "db", "volsync-dr.io/state", "Protected").await;
    synced_by_schedule(&pair, PRIMARY, "db", "before", "before the rotation").await;
    let old = stored_key(&ka).await.expect("key on a");
    assert_eq!(stored_key(&kb).await.as_deref(), Some(old.as_str()));

    // A sync runs for 5 s; the rotation is requested while it does.
    pair.simulator.hold_next_sync(Duration::from_secs(5));
    pair.write(PRIMARY, NS, "db", "during", "carried by the running sync");
    pair.simulator.run_schedules_now();
    wait_for("a sync running on cluster-a", || async {
        let rs = get(&ka, "replicationsource", NS, "rs-db").await?;
        (rs["status"]["conditions"][0]["reason"] == "SyncInProgress").then_some(())
    })
    .await;
    let timeline = watch_steps(pair.a.client().await, "db", "rotate-key:1");
    ka.ok(&["annotate", "pvc", "db", "volsync-dr.io/action=rotate-key:1"])
        .await;
    wait_succeeded(&ka, "rotate-key:1").await;
    report_timing(&ka, "db", "rotate-key", timeline).await;

    // The running sync finished with the old key (its file arrived, no failure); both sides
    // hold one new key; the next sync uses it.
    assert_eq!(
        pair.read(SECONDARY, NS, "db", "during").as_deref(),
        Some("carried by the running sync")
    );
    let rs = get(&ka, "replicationsource", NS, "rs-db").await.expect("rs-db");
    assert_eq!(
        rs["status"]["latestMoverStatus"]["result"], "Successful",
        "{}",
        rs["status"]
    );
    assert!(rs["spec"]["paused"].is_null(), "resumed: {}", rs["spec"]);
    let new = stored_key(&ka).await.expect("key on a");
    assert_ne!(new, old, "a new key");
    assert_eq!(stored_key(&kb).await, Some(new), "the same new key on both clusters");
    synced_by_schedule(&pair, PRIMARY, "db", "after", "after the rotation").await;
    a.assert_never_forbidden();
    b.assert_never_forbidden();
}
