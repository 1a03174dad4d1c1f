//! `volsync-dr render`: golden output for the design's example, errors, and output that real
//! API servers accept (Kubernetes 1.32 schemas for built-in kinds via `kubernetes-validate`,
//! VolSync's CRD schemas via the test API server with strict field validation).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use testkit::apiserver::Config;
use testkit::cluster::start_with_volsync;
use testkit::kubectl::Kubectl;

const BIN: &str = env!("CARGO_BIN_EXE_volsync-dr");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn render(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BIN)
        .arg("render")
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run volsync-dr");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const EXAMPLE_FLAGS: &[&str] = &[
    "-f",
    "examples/pvc-01.yaml",
    "--cluster-name",
    "cluster-a",
    "--peer-name",
    "cluster-b",
    "--peer-address",
    "192.168.129.201",
    "--peer-port",
    "30532",
    "--volume-snapshot-class",
    "csi-cephfs-snapshotclass",
    "--destination-volume-snapshot-class",
    "csi-cephfs-snapshotclass",
];

/// (cluster comment, document) pairs of a render's output.
fn documents(yaml: &str) -> Vec<(String, Value)> {
    yaml.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            let (comment, body) = d.split_once('\n').expect("comment line");
            let doc: Value = serde_saphyr::from_str(body).unwrap_or_else(|e| panic!("YAML: {e}\n{body}"));
            (comment.to_string(), doc)
        })
        .collect()
}

fn psk_of(doc: &Value) -> String {
    use base64::Engine as _;
    let b64 = doc["data"]["psk.txt"].as_str().expect("psk.txt");
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
    String::from_utf8(raw).expect("utf8")
}

#[test]
fn design_example_matches_golden_and_the_manual_procedure() {
    let run = render(EXAMPLE_FLAGS, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let docs = documents(&run.stdout);
    let kinds: Vec<(&str, &str, &str)> = docs
        .iter()
        .map(|(c, d)| {
            (
                c.as_str(),
                d["kind"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("# cluster: primary", "Secret", "volsync-dr-pvc-01"),
            ("# cluster: secondary", "Secret", "volsync-dr-pvc-01"),
            ("# cluster: secondary", "PersistentVolumeClaim", "pvc-01"),
            ("# cluster: secondary", "ReplicationDestination", "rd-pvc-01"),
            ("# cluster: primary", "ReplicationSource", "rs-pvc-01"),
        ]
    );
    // One random 256-bit key, the same on both clusters, `<id>:<64 hex digits>`.
    let (a, b) = (psk_of(&docs[0].1), psk_of(&docs[1].1));
    assert_eq!(a, b);
    let (id, hex) = a.split_once(':').expect("id:hex");
    assert_eq!(id, "volsync-dr");
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
    let again = documents(&render(EXAMPLE_FLAGS, None).stdout);
    assert_ne!(psk_of(&again[0].1), a, "a fresh key per render");

    // The manual procedure's values.
    let rd = &docs[3].1["spec"]["rsyncTLS"];
    assert_eq!(rd["copyMethod"], "Snapshot");
    assert_eq!(rd["destinationPVC"], "pvc-01");
    assert_eq!(rd["serviceType"], "NodePort");
    assert_eq!(rd["storageClassName"], "sc-cephfs");
    assert_eq!(rd["volumeSnapshotClassName"], "csi-cephfs-snapshotclass");
    assert_eq!(rd["moverSecurityContext"]["runAsUser"], 65534);
    assert_eq!(rd["moverSecurityContext"]["runAsNonRoot"], true);
    assert_eq!(rd["moverSecurityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let rs = &docs[4].1["spec"];
    assert_eq!(rs["sourcePVC"], "pvc-01");
    assert_eq!(rs["trigger"]["schedule"], "*/10 * * * *");
    assert_eq!(rs["rsyncTLS"]["address"], "192.168.129.201");
    assert_eq!(rs["rsyncTLS"]["port"], 30532);
    assert_eq!(rs["rsyncTLS"]["keySecret"], "volsync-dr-pvc-01");
    let counterpart = &docs[2].1["spec"];
    assert_eq!(counterpart["resources"]["requests"]["storage"], "10Gi");
    assert_eq!(counterpart["accessModes"][0], "ReadWriteMany");
    assert_eq!(counterpart["storageClassName"], "sc-cephfs");
    assert_eq!(counterpart["volumeMode"], "Filesystem");

    // Golden output, with the random key masked.
    let masked = run.stdout.replace(
        &docs[0].1["data"]["psk.txt"].as_str().unwrap_or("").to_string(),
        "<PSK>",
    );
    let golden = root().join("tests/fixtures/render/pvc-01.golden.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &masked).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        masked, expected,
        "render output changed; if intended, rerun with UPDATE_GOLDEN=1"
    );
}

#[test]
fn stdin_and_leaving_out_the_source_without_an_address() {
    let pvc = std::fs::read_to_string(root().join("examples/pvc-01.yaml")).expect("example");
    let run = render(&["-f", "-"], Some(&pvc));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        documents(&run.stdout).len(),
        4,
        "no rs-P without the destination's address"
    );
    assert!(
        run.stderr.contains("rs-pvc-01 left out") && run.stderr.contains("--peer-port"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_input_fails_with_one_line_naming_the_problem() {
    let pvc = std::fs::read_to_string(root().join("examples/pvc-01.yaml")).expect("example");
    let cases = [
        (
            pvc.replace("\"*/10 * * * *\"", "\"0 */5 * * * *\""),
            "volsync-dr.io/schedule=\"0 */5 * * * *\" is invalid",
        ),
        (
            pvc.replace("\"*/10 * * * *\"", "\"0 0 L * *\""),
            "volsync-dr.io/schedule=\"0 0 L * *\" is invalid",
        ),
        (
            pvc.replace("service-type: NodePort", "service-type: Ingress"),
            "volsync-dr.io/service-type=\"Ingress\" is invalid",
        ),
        (
            pvc.replace("service-type: NodePort", "copy-method: Copy"),
            "volsync-dr.io/copy-method=\"Copy\" is invalid",
        ),
        (
            pvc.replace("kind: PersistentVolumeClaim", "kind: Secret"),
            "expected a PersistentVolumeClaim",
        ),
        (
            pvc.replace("storage: 10Gi", "other: 1"),
            "spec.resources.requests.storage",
        ),
        ("key: [unclosed".to_string(), "not valid YAML"),
    ];
    for (input, want) in cases {
        let run = render(&["-f", "-"], Some(&input));
        assert_eq!(run.code, 1, "{want}: {}", run.stdout);
        assert!(run.stdout.is_empty(), "nothing on stdout on failure");
        assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error: ") && run.stderr.contains(want),
            "{want} in {}",
            run.stderr
        );
    }
    let missing = render(&["-f", "no-such-file.yaml"], None);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("cannot read no-such-file.yaml"),
        "{}",
        missing.stderr
    );
}

/// A PVC with the given annotations and name, for the validation matrix.
fn pvc_yaml(name: &str, annotations: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n"
    );
    for (k, v) in annotations {
        yaml.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    yaml.push_str("spec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: standard\n  resources: {requests: {storage: 5Gi}}\n");
    yaml
}

/// Every combination of service type and copy method, plus the longest PVC name.
fn matrix() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (i, service) in ["ClusterIP", "LoadBalancer", "NodePort"].iter().enumerate() {
        for (j, method) in ["Snapshot", "Clone", "Direct"].iter().enumerate() {
            let yaml = pvc_yaml(
                &format!("v-{i}-{j}"),
                &[
                    ("volsync-dr.io/service-type", service),
                    ("volsync-dr.io/copy-method", method),
                    ("volsync-dr.io/schedule", "@hourly"),
                ],
            );
            out.push((
                yaml,
                vec![
                    "--peer-address".into(),
                    "192.0.2.1".into(),
                    "--peer-port".into(),
                    "30001".into(),
                ],
            ));
        }
    }
    let long = format!("{}z", "a".repeat(252));
    out.push((
        pvc_yaml(&long, &[("volsync-dr.io/schedule", "5,35 1-5 * * 1-5")]),
        vec!["--peer-address".into(), "192.0.2.1".into()],
    ));
    out
}

#[test]
fn builtin_objects_pass_kubernetes_1_32_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (i, (pvc, flags)) in matrix().into_iter().enumerate() {
        let mut args: Vec<&str> = vec!["-f", "-"];
        args.extend(flags.iter().map(String::as_str));
        let run = render(&args, Some(&pvc));
        assert_eq!(run.code, 0, "{}", run.stderr);
        // Built-in kinds only: VolSync's kinds are checked against their CRDs below.
        let builtin: String = run
            .stdout
            .split("---\n")
            .filter(|d| d.contains("\napiVersion: v1\n"))
            .map(|d| format!("---\n{d}"))
            .collect();
        let path = dir.path().join(format!("render-{i}.yaml"));
        std::fs::write(&path, builtin).expect("write");
        files.push(path);
    }
    let (ok, text) = support::kubernetes_validate(&files);
    assert!(ok && !text.contains("ERROR"), "schema errors:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_objects_are_accepted_by_an_api_server_with_volsyncs_crds() {
    let server = start_with_volsync(Config::default()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig, "test").expect("kubeconfig");
    let k = Kubectl::new(&kubeconfig);
    for (pvc, flags) in matrix() {
        let mut args: Vec<&str> = vec!["-f", "-"];
        args.extend(flags.iter().map(String::as_str));
        let run = render(&args, Some(&pvc));
        assert_eq!(run.code, 0, "{}", run.stderr);
        // One cluster stands for both here; the two Secrets are the same object.
        let out = k
            .run_with_stdin(&["apply", "--validate=strict", "-f", "-"], &run.stdout)
            .await;
        assert!(
            out.success,
            "apply failed:\n{}\n{}\n{}",
            out.stderr, out.stdout, run.stdout
        );
        assert!(
            out.stdout.contains("replicationdestination.volsync.backube/rd-"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("replicationsource.volsync.backube/rs-"),
            "{}",
            out.stdout
        );
        assert!(!out.stderr.contains("unknown field"), "no field pruned: {}", out.stderr);
    }
    let rds = k.ok(&["get", "replicationdestinations", "-o", "name"]).await;
    assert_eq!(rds.lines().count(), 10, "{rds}");
}
