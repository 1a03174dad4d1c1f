//! The real tier: two real control planes (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kwok; built from Go modules by `tests/realk8s/build-control-plane.sh`),
//! `deploy/` applied on both as the README's install steps say, and each cluster's
//! `volsync-dr run` as a host process holding only its ServiceAccount's token, so the real API
//! server enforces the shipped RBAC, the CRD schemas, admission (the webhook is called by the
//! API server) and Pod Security. The VolSync simulator works through the API.
//!
//! Each test starts its own pair; they run one at a time (`serial`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use testkit::kubectl::Kubectl;
use testkit::realk8s::{PRIMARY, Process, RealPair, SECONDARY, free_port, kubeconfig, serial};

const NS: &str = "default";

/// The operator of one cluster, deployed: `deploy/` applied, its ServiceAccount's token, the
/// peer's, the webhook registered at the host process.
struct Operator {
    cluster: String,
    process: Process,
    admin: SocketAddr,
    /// This cluster's `volsync-dr` ServiceAccount (what the process runs as).
    kubeconfig: PathBuf,
    /// The peer's `volsync-dr` ServiceAccount (what the process reaches the peer with).
    peer_kubeconfig: PathBuf,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

async fn kubectl_ok(kubectl: &Kubectl, args: &[&str]) -> String {
    kubectl.ok(args).await
}

/// Install steps 2 to 4 of the README on both clusters, then start both processes.
async fn deploy(pair: &RealPair) -> (Operator, Operator) {
    for c in [&pair.a, &pair.b] {
        let overlay = root().join("deploy/overlays").join(&c.name);
        kubectl_ok(&c.kubectl(), &["apply", "-k", &overlay.to_string_lossy()]).await;
        c.wait_for(
            &["-n", "volsync-dr", "get", "serviceaccount", "volsync-dr", "-o", "name"],
            "serviceaccount/volsync-dr",
            "volsync-dr's ServiceAccount",
        )
        .await;
    }
    // Step 3: a kubeconfig with each side's ServiceAccount token, stored on the other side.
    let mut sa_kubeconfigs = Vec::new();
    for c in [&pair.a, &pair.b] {
        let token = kubectl_ok(
            &c.kubectl(),
            &["-n", "volsync-dr", "create", "token", "volsync-dr", "--duration", "2h"],
        )
        .await;
        let path = c.dir.join("volsync-dr.kubeconfig");
        std::fs::write(
            &path,
            kubeconfig(&c.name, &c.url, &c.ca_pem, "volsync-dr", token.trim()),
        )
        .expect("write");
        sa_kubeconfigs.push(path);
    }
    let mut operators = Vec::new();
    for (i, c) in [&pair.a, &pair.b].into_iter().enumerate() {
        let peer = RealPair::peer_of(&c.name);
        let peer_kubeconfig = sa_kubeconfigs[1 - i].clone();
        kubectl_ok(
            &c.kubectl(),
            &[
                "-n",
                "volsync-dr",
                "create",
                "secret",
                "generic",
                &format!("volsync-dr-peer-{peer}"),
                &format!("--from-file=kubeconfig={}", peer_kubeconfig.display()),
            ],
        )
        .await;
        // Step 4: the webhook certificate, its Secret, and the registration's caBundle; the
        // registration points at the host process (as envtest does) instead of the Service.
        let certs = c.dir.join("webhook-certs");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
            .args([
                "certs",
                "--out-dir",
                &certs.to_string_lossy(),
                "--extra-name",
                "127.0.0.1",
            ])
            .output()
            .expect("volsync-dr certs");
        assert!(out.status.success(), "certs: {}", String::from_utf8_lossy(&out.stderr));
        kubectl_ok(
            &c.kubectl(),
            &[
                "-n",
                "volsync-dr",
                "create",
                "secret",
                "tls",
                "volsync-dr-webhook-tls",
                &format!("--cert={}", certs.join("tls.crt").display()),
                &format!("--key={}", certs.join("tls.key").display()),
            ],
        )
        .await;
        let ca = std::fs::read(certs.join("ca.crt")).expect("ca.crt");
        let webhook = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let client_config = json!({"url": format!("https://{webhook}/mutate-pvc"),
                                   "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)});
        let patch = json!([{"op": "replace", "path": "/webhooks/0/clientConfig", "value": client_config}]);
        kubectl_ok(
            &c.kubectl(),
            &[
                "patch",
                "mutatingwebhookconfiguration",
                "volsync-dr",
                "--type=json",
                "-p",
                &patch.to_string(),
            ],
        )
        .await;
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let args: Vec<String> = [
            "run",
            "--cluster-name",
            &c.name,
            "--peer-name",
            peer,
            "--peer-kubeconfig",
            &peer_kubeconfig.to_string_lossy(),
            "--admin-addr",
            &admin.to_string(),
            "--webhook-addr",
            &webhook.to_string(),
            "--tls-cert-file",
            &certs.join("tls.crt").to_string_lossy(),
            "--tls-key-file",
            &certs.join("tls.key").to_string_lossy(),
            "--peer-timeout-seconds",
            "3",
            "--resync-seconds",
            "30",
            "--pod-name",
            &format!("{}-host", c.name),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let process = Process::start(
            "volsync-dr",
            Path::new(env!("CARGO_BIN_EXE_volsync-dr")),
            args,
            vec![
                ("KUBECONFIG".into(), sa_kubeconfigs[i].to_string_lossy().into_owned()),
                ("RUST_LOG".into(), "info,volsync_dr=debug".into()),
            ],
            c.dir.join("volsync-dr.log"),
        );
        let op = Operator {
            cluster: c.name.clone(),
            process,
            admin,
            kubeconfig: sa_kubeconfigs[i].clone(),
            peer_kubeconfig,
        };
        op.wait_ready().await;
        operators.push(op);
    }
    let b = operators.pop().expect("b");
    let a = operators.pop().expect("a");
    (a, b)
}

impl Operator {
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(self.admin).await.is_ok() {
                let reply = testkit::http::request(self.admin, "GET", "/readyz", "text/plain", "").await;
                if reply.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "volsync-dr on {} not ready; log:\n{}",
                self.cluster,
                self.process.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    /// The shipped RBAC covers everything it did: the API server refused nothing.
    fn assert_never_forbidden(&self) {
        let log = self.log();
        let denied: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
            .take(5)
            .collect();
        assert!(
            denied.is_empty(),
            "volsync-dr on {} was refused by RBAC:\n{}",
            self.cluster,
            denied.join("\n")
        );
    }

    /// `volsync-dr <subcommand>` as this cluster's ServiceAccount; (success, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let peer = RealPair::peer_of(&self.cluster);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
            .args(args)
            .args([
                "--cluster-name",
                &self.cluster,
                "--peer-name",
                peer,
                "--peer-kubeconfig",
            ])
            .arg(&self.peer_kubeconfig)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("volsync-dr");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
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

async fn wait_annotation(kubectl: &Kubectl, name: &str, key: &str, want: &str) {
    wait_for(&format!("{name} {key}={want}"), || async {
        (annotation(kubectl, name, key).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_on_real_clusters_under_the_shipped_rbac() {
    let _serial = serial();
    let pair = RealPair::start().await;
    eprintln!("two control planes up in {:.1}s", pair.started_in.as_secs_f64());
    let (mut a, b) = deploy(&pair).await;
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
    pair.write(PRIMARY, NS, "db", "table", "row 1");
    pair.simulator.run_schedules_now();
    wait_for("the file on cluster-b's replica", || async {
        (pair.read(SECONDARY, NS, "db", "table").as_deref() == Some("row 1")).then_some(())
    })
    .await;
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
    let _serial = serial();
    let pair = RealPair::start().await;
    let (a, b) = deploy(&pair).await;
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
