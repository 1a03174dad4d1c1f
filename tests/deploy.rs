//! `deploy/`: every kustomization renders with the installed `kubectl kustomize`, passes the
//! Kubernetes 1.32 schemas (unknown fields refused), runs the pods under Pod Security
//! `restricted`, grants exactly the RBAC the code uses, and configures `volsync-dr run` with
//! settings it accepts: the rendered configuration of cluster-a starts the real binary.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const KUSTOMIZATIONS: &[&str] = &[
    "overlays/cluster-a",
    "overlays/cluster-b",
    "overlays/cluster-a-cert-manager",
    "overlays/cluster-b-cert-manager",
    "overlays/cluster-a-monitoring",
    "base",
    "webhook/base",
    "webhook/cert-manager",
    "crds",
];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn render(kustomization: &str) -> (String, Vec<Value>) {
    let out = Command::new("kubectl")
        .args(["kustomize", deploy().join(kustomization).to_str().expect("path")])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {kustomization}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("yaml");
    (text, docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn every_kustomization_renders_and_passes_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for k in KUSTOMIZATIONS {
        let (text, docs) = render(k);
        assert!(!docs.is_empty(), "{k} renders nothing");
        let path = dir.path().join(format!("{}.yaml", k.replace('/', "-")));
        std::fs::write(&path, text).expect("write");
        files.push(path);
    }
    let (ok, text) = support::kubernetes_validate(&files);
    assert!(ok && !text.contains("ERROR"), "{text}");
    // Built-in kinds were checked, not skipped: only cert-manager's and the Prometheus
    // Operator's kinds have no schema here.
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("WARN")).collect();
    assert!(
        skipped
            .iter()
            .all(|l| l.contains("kind Certificate with api version cert-manager.io/")
                || l.contains("kind Issuer with api version cert-manager.io/")
                || l.contains("kind PrometheusRule with api version monitoring.coreos.com/")
                || l.contains("kind ServiceMonitor with api version monitoring.coreos.com/")),
        "{}",
        skipped.join("\n")
    );
}

#[test]
fn pods_run_under_pod_security_restricted_with_two_replicas_and_a_disruption_budget() {
    for k in ["overlays/cluster-a", "overlays/cluster-b"] {
        let (_, docs) = render(k);
        let namespace = of_kind(&docs, "Namespace")[0];
        assert_eq!(
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        let deployment = of_kind(&docs, "Deployment")[0];
        assert_eq!(deployment["spec"]["replicas"], 2, "{k}");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        for forbidden in ["hostNetwork", "hostPID", "hostIPC"] {
            assert!(pod.get(forbidden).is_none(), "{k}: {forbidden}");
        }
        for volume in pod["volumes"].as_array().expect("volumes") {
            assert!(volume.get("hostPath").is_none(), "{k}: {volume}");
        }
        for c in pod["containers"].as_array().expect("containers") {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{k}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{k}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{k}");
            assert!(sc["capabilities"].get("add").is_none(), "{k}");
        }
        let pdb = of_kind(&docs, "PodDisruptionBudget")[0];
        assert_eq!(pdb["spec"]["minAvailable"], 1);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"]
        );
    }
}

#[test]
fn rbac_is_exactly_what_the_code_uses_and_doctor_checks() {
    let (_, docs) = render("base");
    let rules = |kind: &str| -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for rule in of_kind(&docs, kind)[0]["rules"].as_array().expect("rules") {
            for group in rule["apiGroups"].as_array().expect("groups") {
                for resource in rule["resources"].as_array().expect("resources") {
                    let verbs: Vec<String> = rule["verbs"]
                        .as_array()
                        .expect("verbs")
                        .iter()
                        .map(|v| v.as_str().expect("verb").to_string())
                        .collect();
                    let key = format!(
                        "{}/{}",
                        group.as_str().expect("group"),
                        resource.as_str().expect("resource")
                    );
                    out.insert(key, verbs);
                }
            }
        }
        out
    };
    let v = |verbs: &[&str]| verbs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // The contract is the code's: what `doctor` asks the peer for is what the role grants.
    let expected: BTreeMap<String, Vec<String>> = volsync_dr::report::doctor::REQUIRED_ACCESS
        .iter()
        .map(|(group, resource, verbs)| (format!("{group}/{resource}"), v(verbs)))
        .collect();
    assert_eq!(rules("ClusterRole"), expected);
    assert_eq!(
        rules("Role"),
        BTreeMap::from([("coordination.k8s.io/leases".to_string(), v(&["get", "create", "patch"]))])
    );
    let role = of_kind(&docs, "Role")[0];
    assert_eq!(
        role["metadata"]["namespace"], "volsync-dr",
        "the Lease permission is namespaced"
    );
    for binding in of_kind(&docs, "ClusterRoleBinding")
        .into_iter()
        .chain(of_kind(&docs, "RoleBinding"))
    {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "volsync-dr", "namespace": "volsync-dr"}])
        );
    }
}

/// The Deployment's environment (config map merged in) for an overlay.
fn environment(docs: &[Value]) -> BTreeMap<String, Value> {
    let deployment = of_kind(docs, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let config_name = container["envFrom"][0]["configMapRef"]["name"]
        .as_str()
        .expect("config map");
    let config = of_kind(docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == config_name)
        .expect("the referenced ConfigMap is rendered (kustomize rewrote its hashed name)");
    let mut env: BTreeMap<String, Value> = config["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for e in container["env"].as_array().expect("env") {
        let value = e.get("value").cloned().unwrap_or_else(|| e["valueFrom"].clone());
        env.insert(e["name"].as_str().expect("name").to_string(), value);
    }
    env
}

#[test]
fn each_side_names_itself_its_peer_and_only_settings_run_knows() {
    let help = Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .args(["run", "--help"])
        .output()
        .expect("volsync-dr run --help");
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    for (k, me, peer) in [
        ("overlays/cluster-a", "cluster-a", "cluster-b"),
        ("overlays/cluster-b", "cluster-b", "cluster-a"),
    ] {
        let (_, docs) = render(k);
        let env = environment(&docs);
        assert_eq!(env["VOLSYNC_DR_CLUSTER_NAME"], me);
        assert_eq!(env["VOLSYNC_DR_PEER_NAME"], peer);
        for name in env.keys() {
            assert!(
                help.contains(&format!("[env: {name}=")),
                "{k}: {name} is not a setting of `volsync-dr run`"
            );
        }
        let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][1]["secret"]["secretName"],
            format!("volsync-dr-peer-{peer}")
        );
        assert_eq!(pod["volumes"][0]["secret"]["secretName"], "volsync-dr-webhook-tls");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_configuration_starts_volsync_dr() {
    // cluster-a's environment as rendered; only what a pod gets from its volumes and network
    // (file paths, listen addresses, the downward API) is replaced by this machine's.
    let pair = ClusterPair::start().await;
    let (_, docs) = render("overlays/cluster-a");
    let certs = pair.dir.path().join("certs");
    support::generate_certs(&certs);
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().expect("addr");
    let webhook: std::net::SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().expect("addr");
    let mut env: BTreeMap<String, String> = environment(&docs)
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
        .collect();
    let local: [(&str, String); 7] = [
        (
            "VOLSYNC_DR_PEER_KUBECONFIG",
            pair.kubeconfig(SECONDARY).display().to_string(),
        ),
        ("VOLSYNC_DR_TLS_CERT_FILE", certs.join("tls.crt").display().to_string()),
        ("VOLSYNC_DR_TLS_KEY_FILE", certs.join("tls.key").display().to_string()),
        ("VOLSYNC_DR_WEBHOOK_ADDR", webhook.to_string()),
        ("VOLSYNC_DR_ADMIN_ADDR", admin.to_string()),
        ("VOLSYNC_DR_POD_NAME", "volsync-dr-7d9f-abcde".to_string()),
        ("VOLSYNC_DR_OWN_NAMESPACE", "volsync-dr".to_string()),
    ];
    for (k, v) in local {
        assert!(
            env.contains_key(k) || k.ends_with("POD_NAME") || k.ends_with("OWN_NAMESPACE"),
            "{k} is set by the Deployment"
        );
        env.insert(k.to_string(), v);
    }
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .arg("run")
        .env_clear()
        .envs(&env)
        .env("KUBECONFIG", pair.kubeconfig(PRIMARY))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            let reply = testkit::http::request(admin, "GET", "/readyz", "text/plain", "").await;
            if reply.status == 200 {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                let _ = e.read_to_string(&mut err).await;
            }
            panic!("volsync-dr exited ({status}) with the rendered configuration:\n{err}");
        }
        assert!(tokio::time::Instant::now() < deadline, "not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It elected itself with the pod's name, in the Deployment's namespace.
    pair.wait_for(10, "the Lease held by the pod", |p| {
        (support::lease(p, PRIMARY)?["spec"]["holderIdentity"] == "volsync-dr-7d9f-abcde").then_some(())
    })
    .await;
    child.kill().await.expect("kill");
}

/// The Dockerfile's dependency layer stubs every bench Cargo.toml names: cargo refuses a
/// manifest whose bench file is missing, so a bench left out breaks the image build (one was).
#[test]
fn the_dockerfile_stubs_every_bench() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let stubbed = dockerfile
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("&& for b in"))
        .and_then(|l| l.split("; do").next())
        .expect("the bench stub loop");
    let stubbed: Vec<&str> = stubbed.split_whitespace().collect();
    let benches: Vec<&str> = manifest
        .split("[[bench]]")
        .skip(1)
        .filter_map(|section| section.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|n| n.trim_matches('"'))
        .collect();
    assert!(!benches.is_empty());
    for bench in &benches {
        assert!(
            stubbed.contains(bench),
            "the Dockerfile does not stub bench {bench}: {stubbed:?}"
        );
    }
}
