//! The installed kubectl drives the test API server: apply, get, annotate, scale, watch, delete.

use std::time::Duration;

use serde_json::Value;
use testkit::apiserver::Config;
use testkit::cluster::start_with_volsync;
use testkit::kubectl::Kubectl;
use tokio::io::{AsyncBufReadExt, BufReader};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: apps
  annotations:
    volsync-dr.io/protect: "true"
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: db
  namespace: apps
spec:
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: postgres:17
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql}]
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: data}
"#;

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("watch event within 20s")
        .expect("read")
        .expect("watch still open")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_annotate_scale_delete() {
    let server = start_with_volsync(Config::default()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig, "test").expect("kubeconfig");
    let k = Kubectl::new(&kubeconfig);

    // apply creates, a second apply changes nothing.
    let out = k.run_with_stdin(&["apply", "-f", "-"], APP).await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("namespace/apps created"), "{}", out.stdout);
    assert!(
        out.stdout.contains("persistentvolumeclaim/data created"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("deployment.apps/db created"), "{}", out.stdout);
    let rv_before = server.store().current_rv();
    let out = k.run_with_stdin(&["apply", "-f", "-"], APP).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout.matches("unchanged").count(), 3, "{}", out.stdout);
    assert_eq!(
        server.store().current_rv(),
        rv_before,
        "an unchanged apply writes nothing"
    );

    // get: table output and JSON, with server-set fields.
    let table = k.ok(&["get", "pvc", "-n", "apps"]).await;
    assert!(table.starts_with("NAME") && table.contains("data"), "{table}");
    let pvc = json(&k.ok(&["get", "pvc", "data", "-n", "apps", "-o", "json"]).await);
    assert_eq!(pvc["status"]["phase"], "Pending");
    assert!(pvc["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // annotate, overwrite, remove.
    k.ok(&[
        "annotate",
        "pvc",
        "data",
        "-n",
        "apps",
        "volsync-dr.io/action=sync-now:1",
    ])
    .await;
    let refused = k
        .run(&["annotate", "pvc", "data", "-n", "apps", "volsync-dr.io/action=migrate"])
        .await;
    assert!(
        !refused.success && refused.stderr.contains("--overwrite"),
        "{}",
        refused.stderr
    );
    k.ok(&[
        "annotate",
        "--overwrite",
        "pvc",
        "data",
        "-n",
        "apps",
        "volsync-dr.io/action=migrate:2",
    ])
    .await;
    let pvc = json(&k.ok(&["get", "pvc", "data", "-n", "apps", "-o", "json"]).await);
    assert_eq!(pvc["metadata"]["annotations"]["volsync-dr.io/action"], "migrate:2");
    k.ok(&["annotate", "pvc", "data", "-n", "apps", "volsync-dr.io/action-"])
        .await;
    let pvc = json(&k.ok(&["get", "pvc", "data", "-n", "apps", "-o", "json"]).await);
    assert!(pvc["metadata"]["annotations"].get("volsync-dr.io/action").is_none());

    // scale goes through the scale subresource and shows in the Deployment.
    let out = k.ok(&["scale", "deployment", "db", "-n", "apps", "--replicas=3"]).await;
    assert!(out.contains("scaled"), "{out}");
    let deploy = json(&k.ok(&["get", "deployment", "db", "-n", "apps", "-o", "json"]).await);
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(deploy["metadata"]["generation"], 2);
    let stale = k
        .run(&[
            "scale",
            "deployment",
            "db",
            "-n",
            "apps",
            "--replicas=1",
            "--current-replicas=2",
        ])
        .await;
    assert!(!stale.success, "a failed precondition must not scale: {}", stale.stdout);

    // watch: events for changes made while kubectl watches.
    let mut watch = k
        .command(&[
            "get",
            "pvc",
            "-n",
            "apps",
            "--watch",
            "--output-watch-events",
            "-o",
            r#"jsonpath={.type} {.object.metadata.name}{"\n"}"#,
        ])
        .spawn()
        .expect("kubectl watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    assert_eq!(next_line(&mut lines).await, "ADDED data");
    k.ok(&["label", "pvc", "data", "-n", "apps", "tier=gold"]).await;
    assert_eq!(next_line(&mut lines).await, "MODIFIED data");

    // delete honours finalizers: marked first, gone once the finalizer is removed.
    k.ok(&[
        "patch",
        "pvc",
        "data",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["volsync-dr.io/protection"]}}"#,
    ])
    .await;
    assert_eq!(next_line(&mut lines).await, "MODIFIED data");
    k.ok(&["delete", "pvc", "data", "-n", "apps", "--wait=false"]).await;
    assert_eq!(next_line(&mut lines).await, "MODIFIED data");
    let pvc = json(&k.ok(&["get", "pvc", "data", "-n", "apps", "-o", "json"]).await);
    assert!(pvc["metadata"]["deletionTimestamp"].is_string(), "marked for deletion");
    k.ok(&[
        "patch",
        "pvc",
        "data",
        "-n",
        "apps",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    assert_eq!(next_line(&mut lines).await, "DELETED data");
    let gone = k.run(&["get", "pvc", "data", "-n", "apps"]).await;
    assert!(!gone.success && gone.stderr.contains("NotFound"), "{}", gone.stderr);
    watch.kill().await.expect("stop watch");

    // delete of a namespace takes its contents with it.
    k.ok(&["delete", "namespace", "apps"]).await;
    let out = k.run(&["get", "deployment", "db", "-n", "apps"]).await;
    assert!(!out.success, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_crd_validation_like_a_real_server() {
    let server = start_with_volsync(Config::default()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig, "test").expect("kubeconfig");
    let k = Kubectl::new(&kubeconfig);
    let rs = |extra: &str, schedule: &str| {
        format!(
            "apiVersion: volsync.backube/v1alpha1\nkind: ReplicationSource\nmetadata: {{name: rs-x, namespace: default}}\n\
             spec:\n  sourcePVC: x\n  trigger: {{schedule: \"{schedule}\"}}\n  rsyncTLS: {{copyMethod: Snapshot{extra}}}\n"
        )
    };
    let unknown = k
        .run_with_stdin(&["apply", "-f", "-"], &rs(", bogus: 1", "0 * * * *"))
        .await;
    assert!(
        !unknown.success && unknown.stderr.contains(r#"unknown field "spec.rsyncTLS.bogus""#),
        "{}",
        unknown.stderr
    );
    let bad_enum = k
        .run_with_stdin(&["apply", "-f", "-"], &rs("", "0 * * * *").replace("Snapshot", "Copy"))
        .await;
    assert!(
        !bad_enum.success && bad_enum.stderr.contains("spec.rsyncTLS.copyMethod: Unsupported value"),
        "{}",
        bad_enum.stderr
    );
    let bad_cron = k.run_with_stdin(&["apply", "-f", "-"], &rs("", "garbage")).await;
    assert!(
        !bad_cron.success && bad_cron.stderr.contains("spec.trigger.schedule"),
        "{}",
        bad_cron.stderr
    );
    let ok = k.run_with_stdin(&["apply", "-f", "-"], &rs("", "*/10 * * * *")).await;
    assert!(ok.success, "{}", ok.stderr);
    let listed = k.ok(&["get", "replicationsources"]).await;
    assert!(
        listed.contains("SOURCE") && listed.contains("rs-x"),
        "printer columns: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_over_https_verifies_the_servers_ca() {
    let server = testkit::apiserver::ApiServer::start(Config {
        tls: true,
        ..Config::default()
    })
    .await
    .expect("server");
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig, "tls").expect("kubeconfig");
    let k = Kubectl::new(&kubeconfig);
    let out = k.run_with_stdin(&["apply", "-f", "-"], APP).await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        k.ok(&["get", "pvc", "-n", "apps", "-o", "name"])
            .await
            .contains("persistentvolumeclaim/data")
    );

    // A kubeconfig trusting another CA is refused.
    let other = testkit::tls::generate().expect("other CA");
    use base64::Engine as _;
    let wrong = std::fs::read_to_string(&kubeconfig)
        .expect("read")
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("certificate-authority-data:") {
                format!(
                    "    certificate-authority-data: {}",
                    base64::engine::general_purpose::STANDARD.encode(&other.ca_pem)
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let wrong_path = dir.path().join("wrong");
    std::fs::write(&wrong_path, wrong).expect("write");
    let refused = Kubectl::new(&wrong_path).run(&["get", "ns"]).await;
    assert!(
        !refused.success && refused.stderr.contains("certificate"),
        "{}",
        refused.stderr
    );
}
