//! The Helm chart (`deploy/helm/volsync-dr`): rendered and linted offline with Helm's SDK
//! (`helm-python-sdk`, no helm binary), checked against the Kubernetes 1.32 schemas, and kept in
//! step with the kustomize overlays: for the same settings both give the same objects (Helm's
//! own labels, the config checksum and the CRD's keep policy aside).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("deploy/helm/volsync-dr")
}

/// (rendered objects, lint report) for these values, or the SDK's error text.
fn helm(values: &Value) -> Result<(Vec<Value>, Value), String> {
    let out = Command::new("python3")
        .arg(root().join("tests/helm_chart.py"))
        .arg(chart())
        .arg(values.to_string())
        .arg("volsync-dr")
        .output()
        .expect("python3 (pip install -r tests/requirements.txt for helm-python-sdk)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let reply: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut docs = Vec::new();
    for (template, text) in reply["manifests"].as_object().expect("manifests") {
        if template.ends_with("NOTES.txt") {
            continue;
        }
        let parsed: Vec<Value> = serde_saphyr::from_multiple(text.as_str().expect("text")).expect("yaml");
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    Ok((docs, reply["lint"].clone()))
}

fn kustomize(overlay: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", root().join("deploy").join(overlay).to_str().expect("path")])
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("yaml")
}

const HELM_LABELS: &[&str] = &[
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
];

/// Objects by kind/namespace/name, with what only one tool adds taken out.
fn normalize(docs: Vec<Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for mut d in docs {
        // get_mut, not indexing: indexing a missing key would add it as null.
        let metadata = d.get_mut("metadata").and_then(Value::as_object_mut).expect("metadata");
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            for l in HELM_LABELS {
                labels.remove(*l);
            }
        }
        if let Some(a) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("helm.sh/resource-policy");
            if a.is_empty() {
                metadata.remove("annotations");
            }
        }
        if d["kind"] == "ConfigMap" {
            d["metadata"]["name"] = json!("volsync-dr");
        }
        if d["kind"] == "Deployment" {
            let template = &mut d["spec"]["template"];
            if let Some(m) = template.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("annotations");
            }
            template["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"] = json!("volsync-dr");
        }
        let key = format!(
            "{}/{}/{}",
            d["kind"].as_str().unwrap_or(""),
            d["metadata"]["namespace"].as_str().unwrap_or(""),
            d["metadata"]["name"].as_str().unwrap_or("")
        );
        out.insert(key, d);
    }
    out
}

fn assert_lint_clean(lint: &Value) {
    assert_eq!(lint["errors"], json!([]), "{lint}");
    for m in lint["messages"].as_array().expect("messages") {
        // 1 = info (e.g. "icon is recommended"); warnings and errors fail.
        assert!(m["severity"].as_i64().unwrap_or(3) <= 1, "{lint}");
    }
}

#[test]
fn chart_and_kustomize_give_the_same_objects_for_the_same_settings() {
    for (values, overlay) in [
        (
            json!({"clusterName": "cluster-a", "peerName": "cluster-b"}),
            "overlays/cluster-a",
        ),
        (
            json!({"clusterName": "cluster-b", "peerName": "cluster-a"}),
            "overlays/cluster-b",
        ),
        (
            json!({"clusterName": "cluster-a", "peerName": "cluster-b", "certManager": {"enabled": true}}),
            "overlays/cluster-a-cert-manager",
        ),
        (
            json!({"clusterName": "cluster-a", "peerName": "cluster-b", "monitoring": {"enabled": true}}),
            "overlays/cluster-a-monitoring",
        ),
    ] {
        let (docs, lint) = helm(&values).unwrap_or_else(|e| panic!("{values}: {e}"));
        assert_lint_clean(&lint);
        let crd = docs
            .iter()
            .find(|d| d["kind"] == "CustomResourceDefinition")
            .expect("CRD in the chart");
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("Deployment");
        assert!(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"].is_string());
        let from_helm = normalize(docs);
        let from_kustomize = normalize(kustomize(overlay));
        let keys = |m: &BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&from_helm), keys(&from_kustomize), "{overlay}: different objects");
        for (key, object) in &from_kustomize {
            assert_eq!(
                &from_helm[key], object,
                "{overlay}: {key} differs between the chart and kustomize"
            );
        }
    }
}

#[test]
fn chart_output_passes_the_kubernetes_schemas_and_missing_names_are_refused() {
    let (docs, _) = helm(&json!({"clusterName": "cluster-a", "peerName": "cluster-b"})).expect("render");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chart.yaml");
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_saphyr::to_string(d).expect("yaml")))
        .collect();
    std::fs::write(&path, text).expect("write");
    let (ok, report) = support::kubernetes_validate(&[&path]);
    assert!(ok && !report.contains("ERROR") && !report.contains("WARN"), "{report}");

    // Without the cluster names the chart does not render, and says which value is missing.
    let err = helm(&json!({})).expect_err("names are required");
    assert!(err.contains("clusterName"), "{err}");
    let err = helm(&json!({"clusterName": "Cluster_A", "peerName": "cluster-b"})).expect_err("bad name");
    assert!(err.contains("clusterName") && err.contains("pattern"), "{err}");
}

#[test]
fn the_chart_ships_the_same_alerts_as_the_kustomize_component() {
    let shipped = std::fs::read_to_string(chart().join("files/prometheusrule.yaml")).expect("chart rules");
    let component = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/components/monitoring/prometheusrule.yaml"),
    )
    .expect("component rules");
    assert!(
        shipped == component,
        "deploy/helm/volsync-dr/files/prometheusrule.yaml is out of date: cp deploy/components/monitoring/prometheusrule.yaml deploy/helm/volsync-dr/files/"
    );
    // Off by default where the Prometheus Operator is not installed ("auto").
    let (docs, _) = helm(&json!({"clusterName": "cluster-a", "peerName": "cluster-b"})).expect("render");
    assert!(
        docs.iter()
            .all(|d| d["kind"] != "PrometheusRule" && d["kind"] != "ServiceMonitor"),
        "monitoring objects without the Prometheus Operator"
    );
}

#[test]
fn the_chart_ships_the_generated_crd() {
    let shipped = std::fs::read_to_string(chart().join("files/drpolicy.yaml")).expect("chart CRD");
    let generated = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds/drpolicy.yaml"))
        .expect("deploy CRD");
    assert!(
        shipped == generated,
        "deploy/helm/volsync-dr/files/drpolicy.yaml is out of date: cp deploy/crds/drpolicy.yaml deploy/helm/volsync-dr/files/"
    );
}
