//! Two real Kubernetes control planes on 127.0.0.1: one etcd (a key prefix per cluster), and
//! per cluster kube-apiserver (secure port, token and ServiceAccount authentication, RBAC, the
//! default admission plugins with PodSecurity and MutatingAdmissionWebhook),
//! kube-controller-manager, kube-scheduler and kwok with one fake node. The binaries come from
//! `tests/realk8s/build-control-plane.sh` (built from Go modules, cached per machine).
//!
//! Every process is a child started here and stopped by its PID (SIGKILL) when its handle
//! drops; `RealPair` stops everything it started, on success, failure or panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};

use crate::kubectl::Kubectl;
use crate::simulator::{Backend, SimCluster, Simulator};

pub const PRIMARY: &str = "cluster-a";
pub const SECONDARY: &str = "cluster-b";

/// Longest a control plane may take to come up (2 cores, both clusters at once).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The directory holding the control-plane binaries: `$VOLSYNC_DR_K8S_BIN`, else what the
/// build script prints (it builds only what its cache lacks).
pub fn control_plane_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("VOLSYNC_DR_K8S_BIN") {
            return PathBuf::from(dir);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../realk8s/build-control-plane.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
    })
    .clone()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

// === processes ===

const SETPRIV: &str = "/usr/bin/setpriv";

/// A child process with its log; SIGKILLed by PID when dropped.
pub struct Process {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn start(name: &str, program: &Path, args: Vec<String>, env: Vec<(String, String)>, log: PathBuf) -> Process {
        let mut p = Process {
            name: name.to_string(),
            program: program.to_path_buf(),
            args,
            env,
            log,
            child: None,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("log {}: {e}", self.log.display()));
        // The kernel SIGKILLs the child if this process dies without running its destructors
        // (a test binary killed by a signal): `setpriv` (util-linux) sets that up, then execs
        // the program under the same PID.
        let mut command = if Path::new(SETPRIV).exists() {
            let mut c = Command::new(SETPRIV);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        let child = command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash (or a cluster that dies); waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn start_again(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Set (`Some`) or remove (`None`) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value.to_string()));
        }
    }

    /// Whether it has exited (a crash at start, say).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    pub fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

// === certificates ===

/// One CA per pair: it signs the API servers' serving certificates and is in every kubeconfig.
struct Pki {
    ca_pem: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "volsync-dr test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_pem = ca_params.self_signed(&ca_key).expect("CA").pem();
        Pki {
            ca_pem,
            ca_params,
            ca_key,
        }
    }

    /// A serving certificate for 127.0.0.1 and localhost: (cert PEM, key PEM).
    fn serving(&self, common_name: &str) -> (String, String) {
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn random_token() -> String {
    use rand::Rng as _;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A kubeconfig for `server` with a bearer token.
pub fn kubeconfig(cluster: &str, server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n    namespace: default\n\
         current-context: {cluster}\n"
    )
}

// === one cluster ===

pub struct RealCluster {
    pub name: String,
    pub url: String,
    pub dir: PathBuf,
    pub ca_pem: String,
    /// Admin (system:masters) kubeconfig.
    pub admin_kubeconfig: PathBuf,
    /// The address of its node (kwok's node IP): NodePort endpoints use it.
    pub node_address: String,
    pub apiserver: Process,
    pub controller_manager: Process,
    pub scheduler: Process,
    pub kwok: Process,
}

/// What differs between the two clusters of a pair.
struct Layout {
    name: &'static str,
    service_cidr: &'static str,
    pod_cidr: &'static str,
    node_address: &'static str,
}

const LAYOUTS: [Layout; 2] = [
    Layout {
        name: PRIMARY,
        service_cidr: "10.96.0.0/16",
        pod_cidr: "10.244.0.0/24",
        node_address: "192.0.2.101",
    },
    Layout {
        name: SECONDARY,
        service_cidr: "10.97.0.0/16",
        pod_cidr: "10.245.0.0/24",
        node_address: "192.0.2.102",
    },
];

/// The controllers the tests need: workloads, garbage collection, namespaces, ServiceAccounts
/// and their tokens, the root CA ConfigMap, PV binding, PVC and PV protection (they lift the
/// `kubernetes.io/pvc-protection` finalizer the API server puts on every PVC, without which a
/// deleted PVC never goes), node lifecycle (lifts the not-ready taint).
const CONTROLLERS: &str = "deployment-controller,replicaset-controller,statefulset-controller,\
garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,\
root-ca-certificate-publisher-controller,persistentvolume-binder-controller,pod-garbage-collector-controller,\
persistentvolumeclaim-protection-controller,persistentvolume-protection-controller,node-lifecycle-controller";

impl RealCluster {
    fn start(bin: &Path, layout: &Layout, etcd: &str, pki: &Pki, root: &Path) -> RealCluster {
        let dir = root.join(layout.name);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let (cert, key) = pki.serving("kube-apiserver");
        write(&dir.join("ca.crt"), &pki.ca_pem);
        write(&dir.join("apiserver.crt"), &cert);
        write(&dir.join("apiserver.key"), &key);
        // The ServiceAccount token signing key and its public half.
        let sa_key = KeyPair::generate().expect("SA key");
        write(&dir.join("sa.key"), &sa_key.serialize_pem());
        write(&dir.join("sa.pub"), &sa_key.public_key_pem());
        let admin_token = random_token();
        write(
            &dir.join("tokens.csv"),
            &format!("{admin_token},admin,admin-uid,\"system:masters\"\n"),
        );
        // Writes only (reads are not logged): who changed what, for tests and benchmarks.
        write(
            &dir.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
             - level: None\n  verbs: [get, list, watch]\n- level: Metadata\n",
        );
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write(
            &admin_kubeconfig,
            &kubeconfig(layout.name, &url, &pki.ca_pem, "admin", &admin_token),
        );
        let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
        // Each component: its binary, its flags, its log in the cluster's directory.
        let component = |name: &str, args: Vec<String>| {
            Process::start(name, &bin.join(name), args, vec![], dir.join(format!("{name}.log")))
        };
        let apiserver = component(
            "kube-apiserver",
            vec![
                format!("--etcd-servers={etcd}"),
                format!("--etcd-prefix=/{}/registry", layout.name),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", path("apiserver.crt")),
                format!("--tls-private-key-file={}", path("apiserver.key")),
                format!("--client-ca-file={}", path("ca.crt")),
                format!("--token-auth-file={}", path("tokens.csv")),
                "--authorization-mode=Node,RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", path("sa.pub")),
                format!("--service-account-signing-key-file={}", path("sa.key")),
                format!("--service-cluster-ip-range={}", layout.service_cidr),
                "--endpoint-reconciler-type=none".into(),
                format!("--cert-dir={}", path("apiserver-certs")),
                "--profiling=false".into(),
                format!("--audit-policy-file={}", path("audit-policy.yaml")),
                format!("--audit-log-path={}", path("audit.log")),
                "--audit-log-format=json".into(),
                "--audit-log-maxsize=0".into(),
            ],
        );
        let kubeconfig_flag = format!("--kubeconfig={}", admin_kubeconfig.display());
        let controller_manager = component(
            "kube-controller-manager",
            vec![
                kubeconfig_flag.clone(),
                format!("--controllers={CONTROLLERS}"),
                format!("--service-account-private-key-file={}", path("sa.key")),
                format!("--root-ca-file={}", path("ca.crt")),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--profiling=false".into(),
            ],
        );
        let scheduler = component(
            "kube-scheduler",
            vec![
                kubeconfig_flag.clone(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--profiling=false".into(),
            ],
        );
        let kwok = component(
            "kwok",
            vec![
                kubeconfig_flag,
                "--manage-all-nodes=false".into(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
                format!("--node-ip={}", layout.node_address),
                format!("--cidr={}", layout.pod_cidr),
                "--node-lease-duration-seconds=40".into(),
            ],
        );
        RealCluster {
            name: layout.name.to_string(),
            url,
            dir,
            ca_pem: pki.ca_pem.clone(),
            admin_kubeconfig,
            node_address: layout.node_address.to_string(),
            apiserver,
            controller_manager,
            scheduler,
            kwok,
        }
    }

    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.admin_kubeconfig)
    }

    /// A client with the admin's credentials.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.admin_kubeconfig).expect("kubeconfig");
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("client config");
        config.read_timeout = Some(Duration::from_secs(30));
        kube::Client::try_from(config).expect("client")
    }

    /// Writes this API server completed for `user`, by `verb resource` (from its audit log).
    pub fn writes_by(&self, user: &str) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if entry["stage"] == "ResponseComplete" && entry["user"]["username"] == user {
                let resource = entry["objectRef"]["resource"].as_str().unwrap_or("?");
                let sub = entry["objectRef"]["subresource"]
                    .as_str()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default();
                let key = format!("{} {resource}{sub}", entry["verb"].as_str().unwrap_or("?"));
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Every process of this cluster that died, with its last log lines.
    pub fn dead_processes(&mut self) -> Vec<String> {
        let mut dead = Vec::new();
        for p in [
            &mut self.apiserver,
            &mut self.controller_manager,
            &mut self.scheduler,
            &mut self.kwok,
        ] {
            if p.exited() {
                dead.push(format!("{} exited; its log ends:\n{}", p.name, p.tail(20)));
            }
        }
        dead
    }

    /// Wait for `/readyz`, then make the cluster usable: a Ready fake node, the default
    /// ServiceAccount, a default StorageClass the simulator provisions.
    async fn settle(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let kubectl = self.kubectl();
        loop {
            let ready = kubectl.run(&["get", "--raw", "/readyz"]).await;
            if ready.success && ready.stdout.trim() == "ok" {
                break;
            }
            let dead = self.dead_processes();
            assert!(dead.is_empty(), "cluster {}: {}", self.name, dead.join("\n"));
            assert!(
                Instant::now() < deadline,
                "cluster {}: kube-apiserver not ready within {START_TIMEOUT:?}; its log ends:\n{}",
                self.name,
                self.apiserver.tail(30)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("{}-node-1", self.name), "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": format!("{}-node-1", self.name)}}
        });
        let class = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "volsync-dr.test/simulated", "volumeBindingMode": "Immediate", "reclaimPolicy": "Retain"
        });
        self.apply(&[node, class]).await;
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/volsync-crds");
        let crds = crds.to_string_lossy().into_owned();
        kubectl.ok(&["apply", "--server-side", "-f", &crds]).await;
        self.wait_for(
            &[
                "get",
                "node",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ],
            "True",
            "the node is Ready",
        )
        .await;
        self.wait_for(
            &["get", "node", "-o", "jsonpath={.items[*].spec.taints}"],
            "",
            "the node has no taint",
        )
        .await;
        self.wait_for(
            &["-n", "default", "get", "serviceaccount", "default", "-o", "name"],
            "serviceaccount/default",
            "the default ServiceAccount",
        )
        .await;
    }

    /// `kubectl apply` of these objects, as the admin.
    pub async fn apply(&self, objects: &[Value]) {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let out = self
            .kubectl()
            .run_with_stdin(&["apply", "-f", "-"], &list.to_string())
            .await;
        assert!(out.success, "apply on {}: {}", self.name, out.stderr);
    }

    /// Wait (60 s at most) until `kubectl ARGS` prints `want` (trimmed).
    pub async fn wait_for(&self, args: &[&str], want: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = self.kubectl().run(args).await;
            last = format!("{}{}", out.stdout.trim(), out.stderr.trim());
            if out.success && out.stdout.trim() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("cluster {}: {what}: never saw {want:?}; last: {last:?}", self.name);
    }
}

// === the pair ===

pub struct RealPair {
    pub a: RealCluster,
    pub b: RealCluster,
    pub etcd: Process,
    pub simulator: Simulator,
    pub dir: tempfile::TempDir,
    /// How long the control planes took to come up (both at once).
    pub started_in: Duration,
}

impl RealPair {
    /// Both clusters, VolSync's and the snapshot CRDs installed, the simulator running over both.
    pub async fn start() -> RealPair {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bin = control_plane_bin();
        let began = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let (client_port, peer_port) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Process::start(
            "etcd",
            &bin.join("etcd"),
            vec![
                format!("--data-dir={}", dir.path().join("etcd").display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            vec![],
            dir.path().join("etcd.log"),
        );
        let pki = Pki::new();
        let mut a = RealCluster::start(&bin, &LAYOUTS[0], &client_url, &pki, dir.path());
        let mut b = RealCluster::start(&bin, &LAYOUTS[1], &client_url, &pki, dir.path());
        tokio::join!(a.settle(), b.settle());
        let mut sims = Vec::new();
        for c in [&a, &b] {
            sims.push(SimCluster {
                name: c.name.clone(),
                backend: Backend::Api(c.client().await),
                data_dir: dir.path().join(&c.name).join("data"),
                node_address: c.node_address.clone(),
            });
        }
        let simulator = Simulator::start(sims);
        RealPair {
            a,
            b,
            etcd,
            simulator,
            dir,
            started_in: began.elapsed(),
        }
    }

    pub fn cluster(&self, name: &str) -> &RealCluster {
        if name == PRIMARY { &self.a } else { &self.b }
    }

    pub fn cluster_mut(&mut self, name: &str) -> &mut RealCluster {
        if name == PRIMARY { &mut self.a } else { &mut self.b }
    }

    pub fn peer_of(name: &str) -> &'static str {
        if name == PRIMARY { SECONDARY } else { PRIMARY }
    }

    /// The directory standing for a PVC's volume on a cluster.
    pub fn volume(&self, cluster: &str, namespace: &str, pvc: &str) -> PathBuf {
        self.simulator.cluster(cluster).volume_path(namespace, pvc)
    }

    pub fn write(&self, cluster: &str, namespace: &str, pvc: &str, file: &str, content: &str) {
        let path = self.volume(cluster, namespace, pvc).join(file);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/"))).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    pub fn read(&self, cluster: &str, namespace: &str, pvc: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.volume(cluster, namespace, pvc).join(file)).ok()
    }
}

// === volsync-dr deployed ===

/// The operator of one cluster, deployed: `deploy/` applied, its ServiceAccount's token, the
/// peer's, the webhook registered at the host process.
pub struct Operator {
    pub cluster: String,
    pub process: Process,
    pub admin: SocketAddr,
    binary: PathBuf,
    /// This cluster's `volsync-dr` ServiceAccount (what the process runs as).
    pub kubeconfig: PathBuf,
    /// The peer's `volsync-dr` ServiceAccount (what the process reaches the peer with).
    pub peer_kubeconfig: PathBuf,
}

/// The project's root (deploy/ is applied from there).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Install steps 2 to 4 of the README on both clusters, then start both processes of the
/// `volsync-dr` binary at `binary`.
pub async fn deploy(pair: &RealPair, binary: &Path) -> (Operator, Operator) {
    for c in [&pair.a, &pair.b] {
        let overlay = root().join("deploy/overlays").join(&c.name);
        c.kubectl().ok(&["apply", "-k", &overlay.to_string_lossy()]).await;
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
        let token = c
            .kubectl()
            .ok(&["-n", "volsync-dr", "create", "token", "volsync-dr", "--duration", "2h"])
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
        c.kubectl()
            .ok(&[
                "-n",
                "volsync-dr",
                "create",
                "secret",
                "generic",
                &format!("volsync-dr-peer-{peer}"),
                &format!("--from-file=kubeconfig={}", peer_kubeconfig.display()),
            ])
            .await;
        // Step 4: the webhook certificate, its Secret, and the registration's caBundle; the
        // registration points at the host process (as envtest does) instead of the Service.
        let certs = c.dir.join("webhook-certs");
        let out = std::process::Command::new(binary)
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
        c.kubectl()
            .ok(&[
                "-n",
                "volsync-dr",
                "create",
                "secret",
                "tls",
                "volsync-dr-webhook-tls",
                &format!("--cert={}", certs.join("tls.crt").display()),
                &format!("--key={}", certs.join("tls.key").display()),
            ])
            .await;
        let ca = std::fs::read(certs.join("ca.crt")).expect("ca.crt");
        let webhook = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let client_config = json!({"url": format!("https://{webhook}/mutate-pvc"),
                                   "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)});
        let patch = json!([{"op": "replace", "path": "/webhooks/0/clientConfig", "value": client_config}]);
        c.kubectl()
            .ok(&[
                "patch",
                "mutatingwebhookconfiguration",
                "volsync-dr",
                "--type=json",
                "-p",
                &patch.to_string(),
            ])
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
            binary,
            args,
            vec![
                ("KUBECONFIG".into(), sa_kubeconfigs[i].to_string_lossy().into_owned()),
                ("RUST_LOG".into(), "info,volsync_dr=debug".into()),
            ],
            c.dir.join("volsync-dr.log"),
        );
        let op = Operator {
            cluster: c.name.clone(),
            binary: binary.to_path_buf(),
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
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(self.admin).await.is_ok() {
                let reply = crate::http::request(self.admin, "GET", "/readyz", "text/plain", "").await;
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    /// Another replica of this operator (same ServiceAccount, Lease and certificate): its own
    /// admin and webhook ports, its own identity in the Lease, its own log; started and ready.
    pub async fn start_replica(&self, identity: &str) -> Operator {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let webhook = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut args = self.process.args.clone();
        for (flag, value) in [
            ("--admin-addr", admin.to_string()),
            ("--webhook-addr", webhook.to_string()),
            ("--pod-name", identity.to_string()),
        ] {
            let at = args.iter().position(|a| a == flag).expect("flag") + 1;
            args[at] = value;
        }
        let log = self.process.log.with_file_name(format!("volsync-dr-{identity}.log"));
        let process = Process::start("volsync-dr", &self.binary, args, self.process.env.clone(), log);
        let replica = Operator {
            cluster: self.cluster.clone(),
            binary: self.binary.clone(),
            process,
            admin,
            kubeconfig: self.kubeconfig.clone(),
            peer_kubeconfig: self.peer_kubeconfig.clone(),
        };
        replica.wait_ready().await;
        replica
    }

    /// Where this replica serves the webhook.
    pub fn webhook_addr(&self) -> SocketAddr {
        let args = &self.process.args;
        let at = args.iter().position(|a| a == "--webhook-addr").expect("flag") + 1;
        args[at].parse().expect("webhook address")
    }

    /// The shipped RBAC covers everything it did: the API server refused nothing. Except in the
    /// first seconds after this cluster's API server (re)started serving: until its RBAC
    /// authorizer's caches have synced, a real API server answers 403 to what the roles allow
    /// (seen: a Lease read 73 ms after "Serving securely"), and the operator retries. A refusal
    /// of a call to the peer is judged by the peer's API server's starts (seen: a Secret read
    /// 0.3 s after the peer's API server returned).
    pub fn assert_never_forbidden(&self) {
        let log = self.log();
        let own = api_server_starts(&self.process.log.with_file_name("kube-apiserver.log"));
        let peer = RealPair::peer_of(&self.cluster);
        let peer_starts = self
            .process
            .log
            .parent()
            .and_then(|dir| dir.parent())
            .map(|root| api_server_starts(&root.join(peer).join("kube-apiserver.log")))
            .unwrap_or_default();
        let from_peer = format!("peer cluster {peer}:");
        let denied: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
            .filter(|l| {
                let starts = if l.contains(&from_peer) { &peer_starts } else { &own };
                !during_a_start(l, starts)
            })
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
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let peer = RealPair::peer_of(&self.cluster);
        let out = std::process::Command::new(&self.binary)
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

impl Drop for RealPair {
    /// A failing test's temporary directory goes with it: keep its logs (every process's, the
    /// audit logs) where they can be read afterwards.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let keep = std::env::temp_dir().join(format!(
            "volsync-dr-real-failure-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f")
        ));
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "log") {
                    let relative = path.strip_prefix(self.dir.path()).unwrap_or(&path);
                    let target = keep.join(relative);
                    let _ = std::fs::create_dir_all(target.parent().unwrap_or(&keep));
                    let _ = std::fs::copy(&path, &target);
                }
            }
        }
        eprintln!("the failed test's logs are kept in {}", keep.display());
    }
}

/// How long after an API server starts serving its authorizer may still refuse (its caches
/// sync within a second or two; this leaves room on a busy machine).
const START_WINDOW_SECONDS: f64 = 15.0;

/// When the API server whose klog is `log` started serving: (month and day "MMDD", seconds of
/// the day).
fn api_server_starts(log: &Path) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("Serving securely on"))
        .filter_map(|l| {
            // "I1203 06:32:33.814833    2881 secure_serving.go:211] Serving securely on …"
            let mut words = l.split_whitespace();
            let day = words.next()?.get(1..5)?.to_string();
            Some((day, seconds_of_day(words.next()?)?))
        })
        .collect()
}

fn seconds_of_day(hms: &str) -> Option<f64> {
    let mut parts = hms.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Whether an operator log line ("2026-12-03T06:32:33.887171Z ERROR …") was written within
/// `START_WINDOW_SECONDS` after one of `starts`.
fn during_a_start(line: &str, starts: &[(String, f64)]) -> bool {
    let Some(stamp) = line.split_whitespace().next() else {
        return false;
    };
    let (Some(month), Some(day), Some(time)) = (stamp.get(5..7), stamp.get(8..10), stamp.get(11..)) else {
        return false;
    };
    let Some(at) = seconds_of_day(time.trim_end_matches('Z')) else {
        return false;
    };
    let today = format!("{month}{day}");
    starts
        .iter()
        .any(|(d, start)| *d == today && (0.0..START_WINDOW_SECONDS).contains(&(at - start)))
}

/// Longest one real-tier test may run (the longest, the five-minute outage, takes about 8);
/// `VOLSYNC_DR_REAL_TEST_LIMIT_SECS` changes it.
fn test_limit() -> Duration {
    let secs = std::env::var("VOLSYNC_DR_REAL_TEST_LIMIT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20 * 60);
    Duration::from_secs(secs)
}

/// One test's turn on the real tier: tests run one at a time, and none runs for ever.
pub struct Turn {
    _lock: tokio::sync::MutexGuard<'static, ()>,
    // Dropped with the turn: that tells the watchdog the test ended.
    _ended: std::sync::mpsc::Sender<()>,
}

/// Shared by the tests of one binary: a pair of real control planes takes a good part of two
/// cores, so its tests run one at a time. A test still running after `test_limit()` ends the
/// whole test binary, so that a hang (anything a bounded wait missed) fails CI with its name
/// instead of running into CI's own limit; the control-plane processes die with the binary
/// (they are started with a parent-death signal).
pub async fn serial() -> Turn {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let lock = LOCK.lock().await;
    let test = std::thread::current().name().unwrap_or("a real-tier test").to_string();
    let (ended, watch) = std::sync::mpsc::channel::<()>();
    let limit = test_limit();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(limit) {
            // Past libtest's capture of `eprintln!`, which would be lost with the binary.
            let said = format!("\n{test} still runs after {limit:?}: ending the test binary\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), said.as_bytes());
            std::process::exit(101);
        }
    });
    Turn {
        _lock: lock,
        _ended: ended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_excused_only_just_after_an_api_server_started_serving() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("kube-apiserver.log");
        std::fs::write(
            &log,
            "I1203 06:20:01.000000    11 secure_serving.go:211] Serving securely on 127.0.0.1:4001\n\
             I1203 06:25:00.000000    11 handler.go:288] Adding GroupVersion rbac.authorization.k8s.io v1\n\
             I1203 06:32:33.814833  2881 secure_serving.go:211] Serving securely on 127.0.0.1:44003\n",
        )
        .expect("write");
        let starts = api_server_starts(&log);
        assert_eq!(starts.len(), 2);
        let line = |at: &str| format!("2026-12-03T{at}Z ERROR kube_lease_manager: leases is forbidden");
        for (at, excused) in [
            ("06:32:33.887171", true),
            ("06:32:47.000000", true),
            ("06:32:49.000000", false),
            ("06:32:30.000000", false),
            ("06:20:05.500000", true),
            ("06:25:00.000000", false),
        ] {
            assert_eq!(during_a_start(&line(at), &starts), excused, "{at}");
        }
        assert!(!during_a_start("2026-12-04T06:32:34.000000Z x", &starts), "another day");
        assert!(!during_a_start("forbidden, no time", &starts));
    }
}
