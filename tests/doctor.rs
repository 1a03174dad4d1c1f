//! `volsync-dr doctor` on two test clusters: every problem it is built to find is found, with a
//! line saying what to do, and the exit status says whether any check failed; once fixed, all
//! checks are OK.

mod support;

use base64::Engine as _;
use serde_json::{Value, json};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

fn doctor(pair: &ClusterPair) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .args([
            "doctor",
            "--cluster-name",
            PRIMARY,
            "--peer-name",
            SECONDARY,
            "--timeout-seconds",
            "5",
        ])
        .args(["--destination-volume-snapshot-class", "snap-b"])
        .arg("--peer-kubeconfig")
        .arg(pair.kubeconfig(SECONDARY))
        .env("KUBECONFIG", pair.kubeconfig(PRIMARY))
        .output()
        .expect("volsync-dr doctor");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn webhook_secret(pair: &ClusterPair, cluster: &str, days: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .args(["certs", "--days", &days.to_string(), "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("certs");
    assert!(out.status.success());
    let b64 =
        |f: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.path().join(f)).expect("read"));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "volsync-dr-webhook-tls", "namespace": "volsync-dr"},
        "data": {"tls.crt": b64("tls.crt"), "tls.key": b64("tls.key")}});
    let server = pair.server(cluster);
    let rt = server.store().find_type("", "v1", "secrets").expect("secrets");
    let _ = server
        .store()
        .delete(&rt, "volsync-dr", "volsync-dr-webhook-tls", &json!({}), false);
    pair.create(cluster, secret);
}

fn class(kind: &str, name: &str) -> Value {
    match kind {
        "StorageClass" => json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                 "metadata": {"name": name}, "provisioner": "test.csi"}),
        _ => json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                    "metadata": {"name": name}, "driver": "test.csi", "deletionPolicy": "Delete"}),
    }
}

fn line<'a>(text: &'a str, cluster: &str, check: &str) -> &'a str {
    text.lines()
        .find(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.get(1) == Some(&cluster) && l.contains(&format!(" {check} "))
        })
        .unwrap_or_else(|| panic!("no {cluster} {check} line:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_each_problem_and_says_what_to_do() {
    let pair = ClusterPair::start().await;
    for cluster in [PRIMARY, SECONDARY] {
        pair.create(cluster, class("StorageClass", "standard"));
    }
    pair.create(
        PRIMARY,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "db", "namespace": "default", "annotations": {"volsync-dr.io/protect": "true"}},
               "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    pair.create(PRIMARY, class("StorageClass", "fast"));
    webhook_secret(&pair, PRIMARY, 365);
    webhook_secret(&pair, SECONDARY, 10);
    pair.b.deny_access("patch", "apps", "deployments");

    let (ok, text) = doctor(&pair);
    assert!(!ok, "problems make the exit status fail:\n{text}");
    assert!(text.contains("error: 4 of 9 checks failed"), "{text}");
    assert!(line(&text, PRIMARY, "CRDs").starts_with("OK"), "{text}");
    assert!(line(&text, PRIMARY, "webhook certificate").starts_with("OK"), "{text}");
    let storage = line(&text, SECONDARY, "storage classes");
    assert!(
        storage.starts_with("FAIL") && storage.contains("StorageClass fast not found (needed by default/db)"),
        "{text}"
    );
    let snapshots = line(&text, SECONDARY, "snapshot classes");
    assert!(
        snapshots.starts_with("FAIL")
            && snapshots.contains("snap-b not found (needed by --destination-volume-snapshot-class)"),
        "{text}"
    );
    let cert = line(&text, SECONDARY, "webhook certificate");
    assert!(
        cert.starts_with("FAIL") && cert.contains("expires in") && cert.contains("days (less than 30)"),
        "{text}"
    );
    let access = line(&text, SECONDARY, "access");
    assert!(
        access.starts_with("FAIL") && access.contains("not allowed: patch apps/deployments"),
        "{text}"
    );
    // Every FAIL is followed by what to do.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("FAIL") {
            assert!(
                lines.get(i + 1).is_some_and(|n| n.trim_start().starts_with("fix: ")),
                "{text}"
            );
        }
    }

    // Fixed: every check OK, exit status 0.
    pair.create(SECONDARY, class("StorageClass", "fast"));
    pair.create(SECONDARY, class("VolumeSnapshotClass", "snap-b"));
    webhook_secret(&pair, SECONDARY, 365);
    pair.b.allow_all_access();
    let (ok, text) = doctor(&pair);
    assert!(ok, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("OK")).count(), 9, "{text}");

    // "Come back later" (429, as a real API server answers while a new CRD's storage is still
    // initializing) is asked again after its Retry-After, not reported as a failure.
    pair.b.inject(testkit::apiserver::Fault {
        verb: Some("list"),
        resource: Some("volumesnapshotclasses".into()),
        count: 1,
        code: 429,
    });
    let (ok, text) = doctor(&pair);
    assert!(ok, "a 429 is retried: {text}");

    // The peer's API server gone: said as such, not as a crash.
    pair.b.stop().await;
    let (ok, text) = doctor(&pair);
    assert!(!ok);
    assert!(line(&text, SECONDARY, "reachable").starts_with("FAIL"), "{text}");
    assert!(line(&text, PRIMARY, "CRDs").starts_with("OK"), "{text}");
}
