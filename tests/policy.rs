//! Cluster-wide protection with DRPolicy, end to end: two test clusters, two real `volsync-dr`
//! processes, policies applied with kubectl as a platform engineer would. Selection by
//! namespace label, PVC label and storage class; class mappings reaching the peer; opt-out and
//! explicit annotations; two policies; a policy changed, made invalid, deleted; the webhook's
//! policy hook and, with the webhook down, the sweep.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::DrProcess;
use testkit::kubectl::Kubectl;
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

fn pvc(namespace: &str, name: &str, labels: Value, annotations: Value, class: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                    "resources": {"requests": {"storage": "1Gi"}}}})
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "volsync-dr.io/v1alpha1", "kind": "DRPolicy", "metadata": {"name": name}, "spec": spec})
}

async fn apply(k: &Kubectl, object: &Value) {
    let out = k
        .run_with_stdin(&["apply", "--validate=strict", "-f", "-"], &object.to_string())
        .await;
    assert!(out.success, "kubectl apply: {}\n{object}", out.stderr);
}

fn annotations_of(pair: &ClusterPair, cluster: &str, ns: &str, name: &str) -> Value {
    pair.object(cluster, "persistentvolumeclaims", ns, name)
        .map(|p| p["metadata"]["annotations"].clone())
        .unwrap_or(Value::Null)
}

/// Wait until the PVC shows `state` and, when `policy` is given, names that policy.
async fn wait_protected(pair: &ClusterPair, ns: &str, name: &str, policy: Option<&str>) {
    pair.wait_for(30, &format!("{ns}/{name} Protected by {policy:?}"), |p| {
        let a = annotations_of(p, PRIMARY, ns, name);
        (a["volsync-dr.io/state"] == "Protected" && a["volsync-dr.io/policy"].as_str() == policy).then_some(())
    })
    .await;
}

fn rs(pair: &ClusterPair, ns: &str, pvc: &str) -> Option<Value> {
    pair.object(PRIMARY, "replicationsources", ns, &format!("rs-{pvc}"))
}

fn rd(pair: &ClusterPair, ns: &str, pvc: &str) -> Option<Value> {
    pair.object(SECONDARY, "replicationdestinations", ns, &format!("rd-{pvc}"))
}

#[test]
fn the_crd_in_deploy_is_the_one_the_code_generates() {
    let out = Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .arg("crd")
        .output()
        .expect("volsync-dr crd");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crds/drpolicy.yaml");
    let shipped = std::fs::read_to_string(path).expect("deploy/crds/drpolicy.yaml");
    assert!(
        generated == shipped,
        "deploy/crds/drpolicy.yaml is out of date: run `cargo run -- crd > deploy/crds/drpolicy.yaml`"
    );
    // A real API server's schema for CRDs accepts it (unknown fields refused).
    let (ok, text) = support::kubernetes_validate(&[path]);
    assert!(ok && !text.contains("ERROR"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_protect_by_namespace_label_pvc_label_and_storage_class_and_release_when_deleted() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    let k = Kubectl::new(pair.kubeconfig(PRIMARY));
    for (name, labels) in [("shop", json!({"dr": "on"})), ("lab", json!({}))] {
        apply(&k, &namespace(name, labels.clone())).await;
        // The counterpart's namespace exists on the peer (volsync-dr does not create namespaces).
        pair.create(SECONDARY, namespace(name, labels));
    }
    // PVCs first: the sweep must find PVCs that existed before any policy.
    let existing = [
        ("shop", "orders", json!({}), json!({}), "standard"),
        (
            "shop",
            "cache",
            json!({}),
            json!({"volsync-dr.io/protect": "false"}),
            "standard",
        ),
        (
            "shop",
            "ledger",
            json!({}),
            json!({"volsync-dr.io/schedule": "@daily"}),
            "standard",
        ),
        ("lab", "results", json!({"tier": "db"}), json!({}), "standard"),
        ("lab", "scratch", json!({}), json!({}), "standard"),
        ("lab", "models", json!({}), json!({}), "fast"),
        ("shop", "both", json!({"tier": "db"}), json!({}), "standard"),
    ];
    for (ns, name, labels, annotations, class) in existing {
        pair.create_bound_pvc(PRIMARY, pvc(ns, name, labels, annotations, class))
            .await;
    }
    // An explicitly protected PVC in the selected namespace: the policy must never touch it.
    pair.create_bound_pvc(
        PRIMARY,
        pvc(
            "shop",
            "manual",
            json!({}),
            json!({"volsync-dr.io/protect": "true"}),
            "standard",
        ),
    )
    .await;

    apply(
        &k,
        &policy(
            "by-namespace",
            json!({"namespaceSelector": {"matchLabels": {"dr": "on"}},
                   "defaults": {"schedule": "0 * * * *", "service-type": "NodePort"}}),
        ),
    )
    .await;
    apply(
        &k,
        &policy(
            "by-label",
            json!({"pvcSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]},
                   "defaults": {"schedule": "30 * * * *"}}),
        ),
    )
    .await;
    apply(
        &k,
        &policy(
            "by-class",
            json!({"storageClassNames": ["fast"], "peer": SECONDARY,
                   "defaults": {"volume-snapshot-class": "snap-a"},
                   "storageClassMapping": {"fast": "fast-b"},
                   "volumeSnapshotClassMapping": {"snap-a": "snap-b"}}),
        ),
    )
    .await;

    wait_protected(&pair, "shop", "orders", Some("by-namespace")).await;
    wait_protected(&pair, "lab", "results", Some("by-label")).await;
    wait_protected(&pair, "lab", "models", Some("by-class")).await;
    // Two policies select `both`: the name that sorts first wins, and the PVC says which.
    wait_protected(&pair, "shop", "both", Some("by-label")).await;
    // The explicit schedule wins over the policy's.
    wait_protected(&pair, "shop", "ledger", Some("by-namespace")).await;
    let ledger = annotations_of(&pair, PRIMARY, "shop", "ledger");
    assert_eq!(ledger["volsync-dr.io/schedule"], "@daily");
    assert_eq!(
        rs(&pair, "shop", "ledger").expect("rs")["spec"]["trigger"]["schedule"],
        "@daily"
    );

    // The policy's settings reached the VolSync objects.
    let orders = annotations_of(&pair, PRIMARY, "shop", "orders");
    assert_eq!(orders["volsync-dr.io/schedule"], "0 * * * *");
    assert_eq!(orders["volsync-dr.io/service-type"], "NodePort");
    assert_eq!(
        rs(&pair, "shop", "orders").expect("rs")["spec"]["trigger"]["schedule"],
        "0 * * * *"
    );
    assert_eq!(
        rd(&pair, "shop", "orders").expect("rd")["spec"]["rsyncTLS"]["serviceType"],
        "NodePort"
    );
    assert_eq!(
        rs(&pair, "shop", "both").expect("rs")["spec"]["trigger"]["schedule"],
        "30 * * * *"
    );
    // Mappings: the counterpart PVC and the RD on the peer use the peer's classes.
    let models_rd = rd(&pair, "lab", "models").expect("rd");
    assert_eq!(models_rd["spec"]["rsyncTLS"]["storageClassName"], "fast-b");
    assert_eq!(models_rd["spec"]["rsyncTLS"]["volumeSnapshotClassName"], "snap-b");
    let counterpart = pair
        .object(SECONDARY, "persistentvolumeclaims", "lab", "models")
        .expect("counterpart");
    assert_eq!(counterpart["spec"]["storageClassName"], "fast-b");
    assert_eq!(
        rs(&pair, "lab", "models").expect("rs")["spec"]["rsyncTLS"]["volumeSnapshotClassName"],
        "snap-a"
    );

    // Opt-out, not selected, and explicit: left alone.
    assert!(
        annotations_of(&pair, PRIMARY, "shop", "cache")
            .get("volsync-dr.io/policy")
            .is_none()
    );
    assert!(rs(&pair, "shop", "cache").is_none());
    assert!(
        annotations_of(&pair, PRIMARY, "lab", "scratch")
            .get("volsync-dr.io/protect")
            .is_none()
    );
    assert!(rs(&pair, "lab", "scratch").is_none());
    wait_protected(&pair, "shop", "manual", None).await;

    // Status and printer columns.
    let table = k.ok(&["get", "drpolicies"]).await;
    let row = table.lines().find(|l| l.starts_with("by-namespace")).expect("row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    // NAME READY REASON PAUSED PROTECTED LAST-SWEEP AGE
    assert_eq!(cells[1..5], ["True", "Active", "false", "2"], "{table}");
    let header: Vec<&str> = table.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "REASON", "PAUSED", "PROTECTED", "LAST-SWEEP", "AGE"]
    );

    // A new PVC in a selected namespace, the webhook not configured: the watcher applies the
    // policy by itself.
    pair.create_bound_pvc(PRIMARY, pvc("shop", "late", json!({}), json!({}), "standard"))
        .await;
    wait_protected(&pair, "shop", "late", Some("by-namespace")).await;

    // The policy changes its schedule: PVCs follow, except where the PVC's own annotation wins.
    apply(
        &k,
        &policy(
            "by-namespace",
            json!({"namespaceSelector": {"matchLabels": {"dr": "on"}},
                   "defaults": {"schedule": "15 * * * *", "service-type": "NodePort"}}),
        ),
    )
    .await;
    pair.wait_for(30, "new schedule on rs-orders", |p| {
        (rs(p, "shop", "orders")?["spec"]["trigger"]["schedule"] == "15 * * * *").then_some(())
    })
    .await;
    assert_eq!(
        annotations_of(&pair, PRIMARY, "shop", "ledger")["volsync-dr.io/schedule"],
        "@daily"
    );

    // The namespace loses its label: its PVCs are released (protection removed on both
    // clusters, the replica kept on the peer), except the explicit one.
    let out = k.run(&["label", "namespace", "shop", "dr-"]).await;
    assert!(out.success, "{}", out.stderr);
    // Releasing the finalizer is unprotect's last write: wait for it, then look at the rest.
    pair.wait_for(30, "orders released (its finalizer removed)", |p| {
        let pvc = p.object(PRIMARY, "persistentvolumeclaims", "shop", "orders")?;
        let finalizers = pvc["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        (!finalizers.iter().any(|f| f == "volsync-dr.io/protection")
            && pvc["metadata"]["annotations"].get("volsync-dr.io/protect").is_none())
        .then_some(())
    })
    .await;
    assert!(rs(&pair, "shop", "orders").is_none());
    assert!(rd(&pair, "shop", "orders").is_none());
    let orders = annotations_of(&pair, PRIMARY, "shop", "orders");
    for key in [
        "volsync-dr.io/policy",
        "volsync-dr.io/policy-applied",
        "volsync-dr.io/schedule",
        "volsync-dr.io/state",
    ] {
        assert!(orders.get(key).is_none(), "{key} left on a released PVC: {orders}");
    }
    assert!(
        pair.object(SECONDARY, "persistentvolumeclaims", "shop", "orders")
            .is_some(),
        "the replica on the peer is kept"
    );
    // `ledger` keeps the schedule its user wrote; `both` moves to the other policy selecting it.
    pair.wait_for(30, "ledger released", |p| {
        annotations_of(p, PRIMARY, "shop", "ledger")
            .get("volsync-dr.io/protect")
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        annotations_of(&pair, PRIMARY, "shop", "ledger")["volsync-dr.io/schedule"],
        "@daily"
    );
    assert_eq!(
        annotations_of(&pair, PRIMARY, "shop", "both")["volsync-dr.io/policy"],
        "by-label"
    );
    assert!(rs(&pair, "shop", "manual").is_some(), "explicit protection untouched");

    // The policy deleted: what it protected is released.
    let out = k.run(&["delete", "drpolicy", "by-class"]).await;
    assert!(out.success, "{}", out.stderr);
    pair.wait_for(30, "models released", |p| {
        let a = annotations_of(p, PRIMARY, "lab", "models");
        (a.get("volsync-dr.io/protect").is_none() && rs(p, "lab", "models").is_none()).then_some(())
    })
    .await;
    wait_protected(&pair, "lab", "results", Some("by-label")).await;
    wait_protected(&pair, "shop", "manual", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_or_paused_policy_leaves_its_pvcs_alone_and_says_why() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    let k = Kubectl::new(pair.kubeconfig(PRIMARY));
    pair.create_bound_pvc(PRIMARY, pvc("default", "data", json!({}), json!({}), "standard"))
        .await;
    apply(&k, &policy("all", json!({"defaults": {"schedule": "0 * * * *"}}))).await;
    wait_protected(&pair, "default", "data", Some("all")).await;

    // A typo in the schedule: the status says what is wrong; the PVC stays protected as it was.
    apply(&k, &policy("all", json!({"defaults": {"schedule": "0 */5 * * * *"}}))).await;
    let status = pair
        .wait_for(30, "InvalidSpec in the status", |p| {
            let s = p.object(PRIMARY, "drpolicies", "", "all")?["status"].clone();
            (s["conditions"][0]["reason"] == "InvalidSpec").then_some(s)
        })
        .await;
    let condition = &status["conditions"][0];
    assert_eq!(condition["status"], "False");
    let message = condition["message"].as_str().expect("message");
    assert!(
        message.contains("spec.defaults.schedule \"0 */5 * * * *\"") && message.contains("five cron fields"),
        "{message}"
    );
    assert_eq!(status["protectedPVCs"], 1, "{status}");
    assert!(status["lastSweepTime"].is_string(), "{status}");
    let a = annotations_of(&pair, PRIMARY, "default", "data");
    assert_eq!(a["volsync-dr.io/schedule"], "0 * * * *");
    assert_eq!(a["volsync-dr.io/protect"], "true");
    let table = k.ok(&["get", "drp", "all"]).await;
    assert!(table.contains("False") && table.contains("InvalidSpec"), "{table}");

    // Paused, even with no PVC matching any more: nothing is released or added.
    apply(
        &k,
        &policy(
            "all",
            json!({"paused": true, "pvcSelector": {"matchLabels": {"none": "x"}}}),
        ),
    )
    .await;
    pair.wait_for(30, "Paused in the status", |p| {
        let s = p.object(PRIMARY, "drpolicies", "", "all")?["status"].clone();
        (s["conditions"][0]["reason"] == "Paused").then_some(())
    })
    .await;
    pair.create_bound_pvc(
        PRIMARY,
        pvc("default", "new", json!({"none": "x"}), json!({}), "standard"),
    )
    .await;
    // Paused: for two seconds, `data` stays protected and `new` is not taken.
    support::holds_for(
        std::time::Duration::from_secs(2),
        "a paused policy changes nothing",
        || {
            if annotations_of(&pair, PRIMARY, "default", "data")["volsync-dr.io/protect"] != "true" {
                return Err("data was released".into());
            }
            match annotations_of(&pair, PRIMARY, "default", "new").get("volsync-dr.io/protect") {
                Some(v) => Err(format!("new was given protect={v}")),
                None => Ok(()),
            }
        },
    )
    .await;
    // Resumed: the policy selects only `new` now; `data` is released, `new` protected.
    apply(
        &k,
        &policy("all", json!({"pvcSelector": {"matchLabels": {"none": "x"}}})),
    )
    .await;
    wait_protected(&pair, "default", "new", Some("all")).await;
    pair.wait_for(30, "data released", |p| {
        annotations_of(p, PRIMARY, "default", "data")
            .get("volsync-dr.io/protect")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_applies_policies_at_creation_and_the_sweep_covers_its_outage() {
    let pair = ClusterPair::start().await;
    let mut dr = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    let k = Kubectl::new(pair.kubeconfig(PRIMARY));
    support::install_webhook(&pair, &dr).await;
    apply(
        &k,
        &policy("everything", json!({"defaults": {"schedule": "5 * * * *"}})),
    )
    .await;
    pair.wait_for(30, "policy seen", |p| {
        let s = p.object(PRIMARY, "drpolicies", "", "everything")?;
        s["status"]["lastSweepTime"].is_string().then_some(())
    })
    .await;

    // The API server's answer to the create already carries the policy: the webhook's doing.
    let created = k
        .run_with_stdin(
            &["create", "-o", "json", "-f", "-"],
            &pvc("default", "fresh", json!({}), json!({}), "standard").to_string(),
        )
        .await;
    assert!(created.success, "{}", created.stderr);
    let created: Value = serde_json::from_str(&created.stdout).expect("json");
    let a = &created["metadata"]["annotations"];
    assert_eq!(a["volsync-dr.io/policy"], "everything", "{created}");
    assert_eq!(a["volsync-dr.io/protect"], "true");
    assert_eq!(a["volsync-dr.io/schedule"], "5 * * * *");
    assert_eq!(created["metadata"]["finalizers"], json!(["volsync-dr.io/protection"]));
    assert_eq!(created["metadata"]["labels"]["volsync-dr.io/protected"], "true");

    // volsync-dr down (webhook and watcher): the PVC is admitted untouched; once back, the
    // sweep protects it.
    dr.kill().await;
    let created = k
        .run_with_stdin(
            &["create", "-o", "json", "-f", "-"],
            &pvc("default", "during-outage", json!({}), json!({}), "standard").to_string(),
        )
        .await;
    assert!(
        created.success,
        "a webhook outage must not block PVCs: {}",
        created.stderr
    );
    let created: Value = serde_json::from_str(&created.stdout).expect("json");
    assert!(
        created["metadata"]["annotations"].get("volsync-dr.io/policy").is_none(),
        "{created}"
    );
    dr.start_again().await;
    pair.a
        .route_service("volsync-dr", "volsync-dr-webhook", 443, dr.webhook);
    wait_protected(&pair, "default", "during-outage", Some("everything")).await;
    wait_protected(&pair, "default", "fresh", Some("everything")).await;
}
