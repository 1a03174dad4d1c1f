//! Two test clusters side by side, each with VolSync's CRDs and volsync-dr's DRPolicy CRD, a Ready node and a kubeconfig,
//! and one VolSync simulator over both: the stage for end-to-end tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::apiserver::store::WriteOptions;
use crate::apiserver::{ApiServer, Config};
use crate::cluster::install_crds;
use crate::simulator::{SimCluster, Simulator};

pub const PRIMARY: &str = "cluster-a";
pub const SECONDARY: &str = "cluster-b";

pub struct ClusterPair {
    pub a: Arc<ApiServer>,
    pub b: Arc<ApiServer>,
    pub simulator: Simulator,
    pub dir: tempfile::TempDir,
}

impl ClusterPair {
    pub async fn start() -> ClusterPair {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut servers = Vec::new();
        let mut sims = Vec::new();
        for (name, node_address, service_network) in
            [(PRIMARY, "192.0.2.101", "10.96"), (SECONDARY, "192.0.2.102", "10.97")]
        {
            let server = Arc::new(ApiServer::start(Config::default()).await.expect("start API server"));
            server.store().set_cluster_ip_prefix(service_network);
            install_crds(&server, &crate::cluster::crd_dir()).expect("install CRDs");
            install_crds(&server, &crate::cluster::volsync_dr_crd_dir()).expect("install the DRPolicy CRD");
            add_node(&server, &format!("{name}-node-1"), node_address);
            // volsync-dr's own namespace, as an install creates it (its Lease lives there).
            let namespaces = server.store().find_type("", "v1", "namespaces").expect("namespaces");
            server
                .store()
                .create(
                    &namespaces,
                    "",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "volsync-dr"}}),
                    &WriteOptions::default(),
                )
                .expect("namespace volsync-dr");
            server
                .write_kubeconfig(&dir.path().join(format!("{name}.kubeconfig")), name)
                .expect("kubeconfig");
            sims.push(SimCluster {
                name: name.to_string(),
                backend: crate::simulator::Backend::Store(server.clone()),
                data_dir: dir.path().join(name),
                node_address: node_address.to_string(),
            });
            servers.push(server);
        }
        let simulator = Simulator::start(sims);
        let b = servers.pop().expect("b");
        let a = servers.pop().expect("a");
        ClusterPair { a, b, simulator, dir }
    }

    pub fn server(&self, cluster: &str) -> &ApiServer {
        if cluster == PRIMARY { &self.a } else { &self.b }
    }

    pub fn kubeconfig(&self, cluster: &str) -> PathBuf {
        self.dir.path().join(format!("{cluster}.kubeconfig"))
    }

    /// The directory standing for a PVC's volume on a cluster.
    pub fn volume(&self, cluster: &str, namespace: &str, pvc: &str) -> PathBuf {
        self.simulator.cluster(cluster).volume_path(namespace, pvc)
    }

    /// Write a file into a PVC's volume. The PVC must exist: a directory without a PVC is
    /// garbage the simulator deletes, as a real volume would not exist at all.
    pub fn write(&self, cluster: &str, namespace: &str, pvc: &str, file: &str, content: &str) {
        assert!(
            self.get(cluster, "", "v1", "persistentvolumeclaims", namespace, pvc)
                .is_some(),
            "write into {cluster}/{namespace}/{pvc}: no such PVC"
        );
        let path = self.volume(cluster, namespace, pvc).join(file);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/"))).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    pub fn read(&self, cluster: &str, namespace: &str, pvc: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.volume(cluster, namespace, pvc).join(file)).ok()
    }

    /// Apply objects straight into a cluster's store (as an admin would with kubectl).
    pub fn create(&self, cluster: &str, object: Value) -> Value {
        let server = self.server(cluster);
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let kind = object["kind"].as_str().unwrap_or("");
        let rt = server
            .store()
            .find_kind(group, kind)
            .unwrap_or_else(|| panic!("{cluster} does not serve {kind}"));
        assert_eq!(rt.version, version, "served version of {kind}");
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        server
            .store()
            .create(&rt, &ns, object, &WriteOptions::default())
            .unwrap_or_else(|e| panic!("create: {}", e.message))
            .object
    }

    pub fn get(
        &self,
        cluster: &str,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let server = self.server(cluster);
        let rt = server.store().find_type(group, version, plural)?;
        server.store().get(&rt, namespace, name).ok()
    }

    /// An object by its resource's plural alone (`replicationsources`, `leases`, ...); panics
    /// when the plural is not served or is served by more than one group.
    pub fn object(&self, cluster: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let server = self.server(cluster);
        let rt = server
            .store()
            .find_plural(plural)
            .unwrap_or_else(|| panic!("{cluster} serves no single resource {plural:?}"));
        server.store().get(&rt, namespace, name).ok()
    }

    /// Create a PVC and wait until the simulator has bound it.
    pub async fn create_bound_pvc(&self, cluster: &str, pvc: Value) {
        let ns = pvc["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let name = pvc["metadata"]["name"].as_str().unwrap_or("").to_string();
        self.create(cluster, pvc);
        self.wait_for(10, "PVC bound", |p| {
            (p.get(cluster, "", "v1", "persistentvolumeclaims", &ns, &name)?["status"]["phase"] == "Bound")
                .then_some(())
        })
        .await;
    }

    /// Poll until `check` returns `Some`, for up to `secs` seconds.
    pub async fn wait_for<T>(&self, secs: u64, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {secs}s waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn add_node(server: &ApiServer, name: &str, address: &str) {
    let rt = server.store().find_type("", "v1", "nodes").expect("nodes");
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
    let created = server
        .store()
        .create(&rt, "", node, &WriteOptions::default())
        .expect("node");
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
                                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}]}});
    server
        .store()
        .patch(
            &rt,
            "",
            name,
            crate::apiserver::store::PatchType::Merge,
            &status,
            crate::apiserver::store::Subresource::Status,
            &WriteOptions::default(),
        )
        .expect("node status");
    debug_assert!(created.created);
}
