//! A VolSync simulator: plays VolSync's (and a few kube-controller-manager) parts on test clusters.
//!
//! - PVCs bind at once (a directory stands for the volume); a PVC whose `dataSourceRef` is a
//!   ReplicationDestination stays Pending until the RD has a `latestImage`, then is populated
//!   from it, as VolSync's volume populator does.
//! - A ReplicationDestination (rsync-tls) gets its Service, named as VolSync names it, and
//!   publishes `status.rsyncTLS.address` (the cluster IP, or the load balancer's address).
//! - A ReplicationSource (rsync-tls) syncs when its trigger says so (at once when new, then on
//!   its schedule; or once per new `trigger.manual`) to the RD whose endpoint matches its
//!   address and port on any cluster, if both sides hold the same pre-shared key: the source
//!   directory is copied over the destination's (extra files removed, as rsync does). Then
//!   status is set as VolSync sets it: `lastSyncTime`, `lastSyncStartTime`,
//!   `lastSyncDuration`, `nextSyncTime`, `lastManualSync`; and the RD gets a new `latestImage`
//!   (a VolumeSnapshot whose data is a copy of the destination) for copyMethod Snapshot.
//!   A snapshot is owned by its RD, so deleting the RD deletes it, unless it carries
//!   `volsync.backube/do-not-delete`.
//! - Deployments and StatefulSets get Pods for their replicas and a matching status.
//! - As a CSI snapshotter: a VolumeSnapshot of a PVC (`spec.source.persistentVolumeClaimName`)
//!   not ready yet gets a copy of the volume and `readyToUse: true`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::apiserver::store::{Subresource, now};
pub use crate::cluster_api::Backend;

/// VolSync's Service name rule for an rsync-tls RD.
pub fn rsync_tls_service_name(rd: &str) -> String {
    let full = format!("volsync-rsync-tls-dst-{rd}");
    if full.len() <= 63 {
        full
    } else {
        format!("volsync-rsync-tls-dst-{:08x}", crc32fast::hash(rd.as_bytes()))
    }
}

/// One simulated cluster.
pub struct SimCluster {
    pub name: String,
    pub backend: Backend,
    /// Where volume and snapshot directories live.
    pub data_dir: PathBuf,
    /// The address of this cluster's node (NodePort endpoints use it).
    pub node_address: String,
}

impl SimCluster {
    pub fn volume_path(&self, namespace: &str, pvc: &str) -> PathBuf {
        self.data_dir.join("volumes").join(namespace).join(pvc)
    }

    pub fn snapshot_path(&self, namespace: &str, snapshot: &str) -> PathBuf {
        self.data_dir.join("snapshots").join(namespace).join(snapshot)
    }
}

/// Faults a test can arm.
#[derive(Default)]
struct Faults {
    /// The next sync copies only half the files, then fails (a sync cut off halfway).
    interrupt_next_sync: bool,
    /// Scheduled sources sync now whatever their schedule says.
    run_schedules_now: bool,
    /// The next sync to start runs this long (its keys checked when it starts, as a TLS
    /// session is), reporting itself in progress meanwhile.
    hold_next_sync: Option<Duration>,
    /// Syncs running: (cluster index, namespace, RS) → (when it ends, when it started).
    running: std::collections::HashMap<(usize, String, String), (std::time::Instant, chrono::DateTime<chrono::Utc>)>,
}

/// A running simulator; dropping it stops it.
pub struct Simulator {
    clusters: Arc<Vec<SimCluster>>,
    faults: Arc<Mutex<Faults>>,
    task: tokio::task::JoinHandle<()>,
    paused: Arc<Mutex<BTreeSet<String>>>,
}

/// How often the simulator looks: every 50 ms at the in-process store; through a real API
/// server, where each look is a few lists over HTTP, every 250 ms.
const TICK: Duration = Duration::from_millis(50);
const TICK_OVER_API: Duration = Duration::from_millis(250);

impl Simulator {
    pub fn start(clusters: Vec<SimCluster>) -> Simulator {
        let clusters = Arc::new(clusters);
        let faults = Arc::new(Mutex::new(Faults::default()));
        let paused = Arc::new(Mutex::new(BTreeSet::new()));
        let task = {
            let (clusters, faults, paused) = (clusters.clone(), faults.clone(), paused.clone());
            tokio::spawn(async move {
                let tick = if clusters.iter().any(|c| c.backend.has_controllers()) {
                    TICK_OVER_API
                } else {
                    TICK
                };
                loop {
                    let started = tokio::time::Instant::now();
                    let paused = paused.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let force_schedules =
                        std::mem::take(&mut faults.lock().unwrap_or_else(|p| p.into_inner()).run_schedules_now);
                    for (i, c) in clusters.iter().enumerate() {
                        if paused.contains(&c.name) {
                            continue;
                        }
                        reconcile_cluster(&clusters, i, &faults, &paused, force_schedules).await;
                    }
                    // Rest at least as long as the look took: at 10,000 PVCs a look takes longer
                    // than a tick, and looking back to back would starve the API servers and
                    // the operator it simulates VolSync for.
                    tokio::time::sleep(tick.max(started.elapsed())).await;
                }
            })
        };
        Simulator {
            clusters,
            faults,
            task,
            paused,
        }
    }

    pub fn cluster(&self, name: &str) -> &SimCluster {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no simulated cluster {name}"))
    }

    /// The next sync copies half its files and fails, leaving the destination partial.
    pub fn interrupt_next_sync(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .interrupt_next_sync = true;
    }

    /// Every scheduled ReplicationSource syncs on the next tick, as if its time had come.
    /// The next sync to start takes `how_long` (a sync running while a test acts).
    pub fn hold_next_sync(&self, how_long: Duration) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).hold_next_sync = Some(how_long);
    }

    pub fn run_schedules_now(&self) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).run_schedules_now = true;
    }

    /// Stop simulating one cluster (its VolSync is down, or the cluster is); syncs to or from it stop.
    pub fn pause(&self, cluster: &str) {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cluster.to_string());
    }

    pub fn resume(&self, cluster: &str) {
        self.paused.lock().unwrap_or_else(|p| p.into_inner()).remove(cluster);
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === reconciliation, one pass over one cluster ===

async fn list(b: &Backend, group: &str, version: &str, plural: &str) -> Vec<Value> {
    b.list(group, version, plural).await
}

async fn get(b: &Backend, group: &str, version: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
    b.get(group, version, plural, ns, name).await
}

/// A merge patch; a conflict or a vanished object is retried on the next tick, as a
/// controller would.
async fn patch(b: &Backend, group: &str, version: &str, plural: &str, obj: &Value, body: Value, sub: Subresource) {
    let (ns, name) = ns_name(obj);
    b.patch(group, version, plural, &ns, &name, body, sub).await;
}

async fn create(b: &Backend, group: &str, version: &str, plural: &str, ns: &str, obj: Value) {
    b.create(group, version, plural, ns, obj).await;
}

async fn delete(b: &Backend, group: &str, version: &str, plural: &str, ns: &str, name: &str) {
    b.delete(group, version, plural, ns, name).await;
}

fn ns_name(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
        obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

fn owner_ref(obj: &Value) -> Value {
    json!([{"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
}

async fn reconcile_cluster(
    clusters: &[SimCluster],
    index: usize,
    faults: &Mutex<Faults>,
    paused: &BTreeSet<String>,
    force_schedules: bool,
) {
    let c = &clusters[index];
    let claims = list(&c.backend, "", "v1", "persistentvolumeclaims").await;
    bind_pvcs(c, &claims).await;
    let services = services_by_name(c).await;
    for rd in list(&c.backend, "volsync.backube", "v1alpha1", "replicationdestinations").await {
        reconcile_rd(c, &rd, &services).await;
    }
    release_kept_snapshots(c).await;
    take_snapshots(c).await;
    let mut endpoints = None;
    for rs in list(&c.backend, "volsync.backube", "v1alpha1", "replicationsources").await {
        reconcile_rs(clusters, index, &rs, faults, paused, force_schedules, &mut endpoints).await;
    }
    if !c.backend.has_controllers() {
        reconcile_workloads(c).await;
    }
    collect_data(c).await;
}

async fn bind_pvcs(c: &SimCluster, claims: &[Value]) {
    for pvc in claims {
        if pvc["status"]["phase"] == "Bound" || !pvc["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let (ns, name) = ns_name(pvc);
        let source = &pvc["spec"]["dataSourceRef"];
        let path = c.volume_path(&ns, &name);
        if source["kind"] == "ReplicationDestination" {
            let rd_name = source["name"].as_str().unwrap_or("");
            let Some(rd) = get(
                &c.backend,
                "volsync.backube",
                "v1alpha1",
                "replicationdestinations",
                &ns,
                rd_name,
            )
            .await
            else {
                continue;
            };
            let image = &rd["status"]["latestImage"];
            let image_dir = match image["kind"].as_str() {
                Some("VolumeSnapshot") => c.snapshot_path(&ns, image["name"].as_str().unwrap_or("")),
                Some("PersistentVolumeClaim") => c.volume_path(&ns, image["name"].as_str().unwrap_or("")),
                _ => continue,
            };
            if !image_dir.is_dir() || mirror(&image_dir, &path, None).is_err() {
                continue;
            }
        } else if source["kind"] == "VolumeSnapshot" {
            // A CSI driver restoring a snapshot: the new volume starts as its copy.
            let snapshot_dir = c.snapshot_path(&ns, source["name"].as_str().unwrap_or(""));
            if !snapshot_dir.is_dir() || mirror(&snapshot_dir, &path, None).is_err() {
                continue;
            }
        } else if std::fs::create_dir_all(&path).is_err() {
            continue;
        }
        let capacity = pvc["spec"]["resources"]["requests"].clone();
        if c.backend.has_controllers() {
            // As a provisioner: a PersistentVolume bound ahead to the claim; the cluster's
            // persistent-volume binder binds the claim to it.
            provision(c, pvc, &path).await;
            continue;
        }
        let status =
            json!({"status": {"phase": "Bound", "accessModes": pvc["spec"]["accessModes"], "capacity": capacity}});
        patch(
            &c.backend,
            "",
            "v1",
            "persistentvolumeclaims",
            pvc,
            status,
            Subresource::Status,
        )
        .await;
    }
}

/// Labels the PersistentVolumes the simulator provisions.
const PROVISIONED: &str = "volsync-dr.test/simulated";

async fn provision(c: &SimCluster, pvc: &Value, path: &Path) {
    if pvc["spec"]["volumeName"].as_str().is_some_and(|v| !v.is_empty()) {
        return;
    }
    let uid = pvc["metadata"]["uid"].as_str().unwrap_or("");
    let name = format!("pv-{uid}");
    if get(&c.backend, "", "v1", "persistentvolumes", "", &name)
        .await
        .is_some()
    {
        return;
    }
    let (ns, claim) = ns_name(pvc);
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {PROVISIONED: "true"}},
        "spec": {
            "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
            "accessModes": pvc["spec"]["accessModes"],
            "volumeMode": pvc["spec"]["volumeMode"].as_str().unwrap_or("Filesystem"),
            "storageClassName": pvc["spec"]["storageClassName"].as_str().unwrap_or(""),
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": path.to_string_lossy()},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "uid": uid}
        }
    });
    create(&c.backend, "", "v1", "persistentvolumes", "", pv).await;
}

/// Every Service of a cluster by (namespace, name): one list per tick instead of a read per
/// ReplicationDestination (a thousand reads a tick through a real API server).
async fn services_by_name(c: &SimCluster) -> HashMap<(String, String), Value> {
    list(&c.backend, "", "v1", "services")
        .await
        .into_iter()
        .map(|s| (ns_name(&s), s))
        .collect()
}

async fn reconcile_rd(c: &SimCluster, rd: &Value, services: &HashMap<(String, String), Value>) {
    let tls = &rd["spec"]["rsyncTLS"];
    if !tls.is_object() || !rd["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let (ns, name) = ns_name(rd);
    let service_type = tls["serviceType"].as_str().unwrap_or("ClusterIP");
    let service_name = rsync_tls_service_name(&name);
    let service = match services.get(&(ns.clone(), service_name.clone())).cloned() {
        Some(s) => s,
        None => {
            create(
                &c.backend,
                "",
                "v1",
                "services",
                &ns,
                json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": service_name, "namespace": ns, "ownerReferences": owner_ref(rd),
                                 "labels": {"app.kubernetes.io/created-by": "volsync"}},
                    "spec": {"type": service_type, "selector": {"app.kubernetes.io/name": format!("volsync-rsync-tls-dst-{name}")},
                             "ports": [{"name": "rsync-tls", "port": 8000, "targetPort": 8000, "protocol": "TCP"}]}
                }),
            ).await;
            return;
        }
    };
    if service["spec"]["type"].as_str() != Some(service_type) {
        // VolSync replaces the Service when the RD's service type changes.
        delete(&c.backend, "", "v1", "services", &ns, &service_name).await;
        return;
    }
    if service_type == "LoadBalancer" && service["status"]["loadBalancer"]["ingress"].is_null() {
        let ip = format!("192.0.2.{}", 1 + crc32fast::hash(service_name.as_bytes()) % 250);
        patch(
            &c.backend,
            "",
            "v1",
            "services",
            &service,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}),
            Subresource::Status,
        )
        .await;
        return;
    }
    let address = match service_type {
        "LoadBalancer" => service["status"]["loadBalancer"]["ingress"][0]["ip"].clone(),
        _ => service["spec"]["clusterIP"].clone(),
    };
    let published = &rd["status"]["rsyncTLS"];
    if published["address"] != address || published["keySecret"] != tls["keySecret"] {
        // VolSync publishes only the address (never the port).
        patch(
            &c.backend,
            "volsync.backube",
            "v1alpha1",
            "replicationdestinations",
            rd,
            json!({"status": {"rsyncTLS": {"address": address, "keySecret": tls["keySecret"]},
                                "conditions": [{"type": "Synchronizing", "status": "True", "reason": "SyncInProgress",
                                                "message": "Synchronization in-progress", "lastTransitionTime": now()}]}}),
            Subresource::Status,
        ).await;
    }
}

/// A VolumeSnapshot of a PVC that is not ready yet: the volume copied, then ready to use.
async fn take_snapshots(c: &SimCluster) {
    for snap in list(&c.backend, "snapshot.storage.k8s.io", "v1", "volumesnapshots").await {
        let Some(pvc) = snap["spec"]["source"]["persistentVolumeClaimName"].as_str() else {
            continue;
        };
        if snap["status"]["readyToUse"] == true {
            continue;
        }
        let (ns, name) = ns_name(&snap);
        let volume = c.volume_path(&ns, pvc);
        let _ = std::fs::create_dir_all(&volume);
        let taken = mirror(&volume, &c.snapshot_path(&ns, &name), None);
        if taken.is_ok() {
            patch(
                &c.backend,
                "snapshot.storage.k8s.io",
                "v1",
                "volumesnapshots",
                &snap,
                json!({"status": {"readyToUse": true, "creationTime": now()}}),
                Subresource::Status,
            )
            .await;
        }
    }
}

/// VolSync lets go of a snapshot labelled do-not-delete, so deleting its RD keeps it.
async fn release_kept_snapshots(c: &SimCluster) {
    for snap in list(&c.backend, "snapshot.storage.k8s.io", "v1", "volumesnapshots").await {
        let kept = snap["metadata"]["labels"]
            .get("volsync.backube/do-not-delete")
            .is_some();
        if kept
            && snap["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        {
            patch(
                &c.backend,
                "snapshot.storage.k8s.io",
                "v1",
                "volumesnapshots",
                &snap,
                json!({"metadata": {"ownerReferences": null}}),
                Subresource::Main,
            )
            .await;
        }
    }
}

async fn psk(c: &SimCluster, ns: &str, secret: &str) -> Option<String> {
    let s = get(&c.backend, "", "v1", "secrets", ns, secret).await?;
    s["data"]["psk.txt"].as_str().map(str::to_string)
}

/// Which RD (cluster index, RD object) answers at each address and port, built at most once
/// per tick so a thousand sources do not each scan every destination.
type Endpoints = HashMap<(String, i64), (usize, Value)>;

async fn endpoints(clusters: &[SimCluster]) -> Endpoints {
    let mut out = HashMap::new();
    for (i, c) in clusters.iter().enumerate() {
        let services = services_by_name(c).await;
        for rd in list(&c.backend, "volsync.backube", "v1alpha1", "replicationdestinations").await {
            let (ns, name) = ns_name(&rd);
            let Some(service) = services.get(&(ns.clone(), rsync_tls_service_name(&name))) else {
                continue;
            };
            if let Some(published) = rd["status"]["rsyncTLS"]["address"].as_str().filter(|a| !a.is_empty()) {
                out.insert((published.to_string(), 8000), (i, rd.clone()));
            }
            if service["spec"]["type"] == "NodePort"
                && let Some(port) = service["spec"]["ports"][0]["nodePort"].as_i64()
            {
                out.insert((c.node_address.clone(), port), (i, rd.clone()));
            }
        }
    }
    out
}

/// A sync that could not run: the mover's failure on the source, as VolSync reports it.
async fn fail_sync(c: &SimCluster, rs: &Value, why: String) {
    let message = format!("mover: {why}");
    if rs["status"]["latestMoverStatus"]["logs"].as_str() != Some(message.as_str()) {
        patch(
            &c.backend,
            "volsync.backube",
            "v1alpha1",
            "replicationsources",
            rs,
            json!({"status": {"latestMoverStatus": {"result": "Failed", "logs": message},
                                "conditions": [{"type": "Synchronizing", "status": "True", "reason": "SyncInProgress",
                                                "message": why, "lastTransitionTime": now()}]}}),
            Subresource::Status,
        )
        .await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_rs(
    clusters: &[SimCluster],
    cluster: usize,
    rs: &Value,
    faults: &Mutex<Faults>,
    paused: &BTreeSet<String>,
    force_schedules: bool,
    index: &mut Option<Endpoints>,
) {
    let c = &clusters[cluster];
    let tls = &rs["spec"]["rsyncTLS"];
    if !tls.is_object() || !rs["metadata"]["deletionTimestamp"].is_null() || rs["spec"]["paused"] == true {
        return;
    }
    let (ns, _) = ns_name(rs);
    let trigger = &rs["spec"]["trigger"];
    let status = &rs["status"];
    let manual = trigger["manual"].as_str().filter(|m| !m.is_empty());
    let schedule = trigger["schedule"].as_str();
    let now_time = chrono::Utc::now();
    let due = match (manual, schedule) {
        (Some(m), _) => status["lastManualSync"].as_str() != Some(m),
        (None, Some(_)) => {
            status["lastSyncTime"].is_null()
                || force_schedules
                || status["nextSyncTime"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t <= now_time)
        }
        (None, None) => status["lastSyncTime"].is_null(),
    };
    let running_key = (cluster, ns.clone(), ns_name(rs).1);
    let running = faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .running
        .get(&running_key)
        .copied();
    let resumed = match running {
        Some((until, _)) if std::time::Instant::now() < until => return,
        Some((_, started)) => {
            faults
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .running
                .remove(&running_key);
            Some(started)
        }
        None if !due => return,
        None => None,
    };
    let address = tls["address"].as_str().unwrap_or("");
    let port = tls["port"].as_i64().unwrap_or(8000);
    let source_dir = c.volume_path(&ns, rs["spec"]["sourcePVC"].as_str().unwrap_or(""));
    let fail = |why: String| fail_sync(c, rs, why);
    if index.is_none() {
        *index = Some(endpoints(clusters).await);
    }
    let found = index
        .as_ref()
        .and_then(|i| i.get(&(address.to_string(), port)))
        .cloned();
    let Some((dst_index, rd)) = found else {
        return fail(format!("no rsync-tls destination answers at {address}:{port}")).await;
    };
    let dst = &clusters[dst_index];
    if paused.contains(&dst.name) {
        return fail(format!("{address}:{port} does not answer")).await;
    }
    let (dst_ns, rd_name) = ns_name(&rd);
    let key_here = match tls["keySecret"].as_str() {
        Some(s) => psk(c, &ns, s).await,
        None => None,
    };
    let key_there = match rd["spec"]["rsyncTLS"]["keySecret"].as_str() {
        Some(s) => psk(dst, &dst_ns, s).await,
        None => None,
    };
    // A running sync checked the keys when it started.
    if resumed.is_none() && (key_here.is_none() || key_here != key_there) {
        return fail("TLS handshake failed: pre-shared keys differ".to_string()).await;
    }
    if !source_dir.is_dir() {
        return fail("source volume not bound".to_string()).await;
    }
    let dst_pvc = rd["spec"]["rsyncTLS"]["destinationPVC"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("volsync-{rd_name}-dst"));
    let dst_dir = dst.volume_path(&dst_ns, &dst_pvc);
    let hold = match resumed {
        None => std::mem::take(&mut faults.lock().unwrap_or_else(|p| p.into_inner()).hold_next_sync),
        Some(_) => None,
    };
    if let Some(how_long) = hold {
        let started = chrono::Utc::now();
        faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .insert(running_key, (std::time::Instant::now() + how_long, started));
        patch(
            &c.backend,
            "volsync.backube",
            "v1alpha1",
            "replicationsources",
            rs,
            json!({"status": {"lastSyncStartTime": started.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                              "conditions": [{"type": "Synchronizing", "status": "True", "reason": "SyncInProgress",
                                              "message": "Synchronization in-progress", "lastTransitionTime": now()}]}}),
            Subresource::Status,
        )
        .await;
        return;
    }
    let start = resumed.unwrap_or_else(chrono::Utc::now);
    let interrupt = std::mem::take(&mut faults.lock().unwrap_or_else(|p| p.into_inner()).interrupt_next_sync);
    if interrupt {
        let _ = mirror(&source_dir, &dst_dir, Some(0.5));
        return fail("connection reset during transfer".to_string()).await;
    }
    if mirror(&source_dir, &dst_dir, None).is_err() {
        return fail("copy failed".to_string()).await;
    }
    let end = chrono::Utc::now();
    let duration = format!("{:.3}s", (end - start).num_milliseconds() as f64 / 1000.0);
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();

    // Destination side: new image, status.
    let mut rd_status = json!({"lastSyncTime": stamp(end), "lastSyncStartTime": stamp(start), "lastSyncDuration": duration,
                               "latestMoverStatus": {"result": "Successful", "logs": "sent and received"}});
    match rd["spec"]["rsyncTLS"]["copyMethod"].as_str().unwrap_or("Direct") {
        "Snapshot" => {
            let snap_name = format!("volsync-{rd_name}-dst-{}", end.format("%Y%m%d%H%M%S%3f"));
            if mirror(&dst_dir, &dst.snapshot_path(&dst_ns, &snap_name), None).is_err() {
                return fail("snapshot failed".to_string()).await;
            }
            create(
                &dst.backend,
                "snapshot.storage.k8s.io",
                "v1",
                "volumesnapshots",
                &dst_ns,
                json!({
                    "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                    "metadata": {"name": snap_name, "namespace": dst_ns, "ownerReferences": owner_ref(&rd),
                                 "labels": {"app.kubernetes.io/created-by": "volsync"}},
                    "spec": {"source": {"persistentVolumeClaimName": dst_pvc},
                             "volumeSnapshotClassName": rd["spec"]["rsyncTLS"]["volumeSnapshotClassName"]}
                }),
            )
            .await;
            if let Some(snap) = get(
                &dst.backend,
                "snapshot.storage.k8s.io",
                "v1",
                "volumesnapshots",
                &dst_ns,
                &snap_name,
            )
            .await
            {
                patch(
                    &dst.backend,
                    "snapshot.storage.k8s.io",
                    "v1",
                    "volumesnapshots",
                    &snap,
                    json!({"status": {"readyToUse": true, "creationTime": stamp(end)}}),
                    Subresource::Status,
                )
                .await;
            }
            // VolSync keeps one image: the previous one goes unless it is to be kept.
            if let Some(old) = rd["status"]["latestImage"]["name"].as_str()
                && let Some(old_snap) = get(
                    &dst.backend,
                    "snapshot.storage.k8s.io",
                    "v1",
                    "volumesnapshots",
                    &dst_ns,
                    old,
                )
                .await
                && old_snap["metadata"]["labels"]
                    .get("volsync.backube/do-not-delete")
                    .is_none()
            {
                delete(
                    &dst.backend,
                    "snapshot.storage.k8s.io",
                    "v1",
                    "volumesnapshots",
                    &dst_ns,
                    old,
                )
                .await;
            }
            rd_status["latestImage"] =
                json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap_name});
        }
        _ => rd_status["latestImage"] = json!({"apiGroup": "", "kind": "PersistentVolumeClaim", "name": dst_pvc}),
    }
    patch(
        &dst.backend,
        "volsync.backube",
        "v1alpha1",
        "replicationdestinations",
        &rd,
        json!({"status": rd_status}),
        Subresource::Status,
    )
    .await;

    // Source side.
    let mut rs_status = json!({"lastSyncTime": stamp(end), "lastSyncStartTime": stamp(start), "lastSyncDuration": duration,
                               "latestMoverStatus": {"result": "Successful", "logs": "sent and received"},
                               "rsyncTLS": {"keySecret": tls["keySecret"]}});
    let reason = match (manual, schedule) {
        (Some(m), _) => {
            rs_status["lastManualSync"] = json!(m);
            "WaitingForManual"
        }
        (None, Some(s)) => {
            let next = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Disallowed)
                .sloppy_ranges(true)
                .build()
                .parse(s)
                .ok()
                .and_then(|c| c.find_next_occurrence(&end, false).ok());
            if let Some(next) = next {
                rs_status["nextSyncTime"] = json!(stamp(next));
            }
            "WaitingForSchedule"
        }
        _ => "WaitingForSchedule",
    };
    rs_status["conditions"] = json!([{"type": "Synchronizing", "status": "False", "reason": reason,
                                      "message": "Waiting for next trigger", "lastTransitionTime": now()}]);
    patch(
        &c.backend,
        "volsync.backube",
        "v1alpha1",
        "replicationsources",
        rs,
        json!({"status": rs_status}),
        Subresource::Status,
    )
    .await;
}

async fn reconcile_workloads(c: &SimCluster) {
    for (plural, kind) in [("deployments", "Deployment"), ("statefulsets", "StatefulSet")] {
        for w in list(&c.backend, "apps", "v1", plural).await {
            let (ns, name) = ns_name(&w);
            let want = w["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
            let pods: Vec<Value> = list(&c.backend, "", "v1", "pods")
                .await
                .into_iter()
                .filter(|p| {
                    p["metadata"]["namespace"] == ns.as_str()
                        && p["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|o| o["uid"] == w["metadata"]["uid"]))
                })
                .collect();
            for i in 0..want {
                let pod_name = format!("{name}-{i}");
                if pods.iter().any(|p| p["metadata"]["name"] == pod_name.as_str()) {
                    continue;
                }
                let mut spec = w["spec"]["template"]["spec"].clone();
                if kind == "StatefulSet" {
                    // Claims from volumeClaimTemplates are named <template>-<set>-<ordinal>.
                    for t in w["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
                        let tname = t["metadata"]["name"].as_str().unwrap_or("");
                        let claim = format!("{tname}-{name}-{i}");
                        let vols = spec["volumes"].as_array().cloned().unwrap_or_default();
                        let mut vols: Vec<Value> = vols.into_iter().filter(|v| v["name"] != tname).collect();
                        vols.push(json!({"name": tname, "persistentVolumeClaim": {"claimName": claim}}));
                        spec["volumes"] = json!(vols);
                    }
                }
                create(
                    &c.backend,
                    "",
                    "v1",
                    "pods",
                    &ns,
                    json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": pod_name, "namespace": ns, "labels": w["spec"]["template"]["metadata"]["labels"],
                                     "ownerReferences": owner_ref(&w)},
                        "spec": spec
                    }),
                ).await;
            }
            for p in &pods {
                let ordinal = p["metadata"]["name"]
                    .as_str()
                    .and_then(|n| n.rsplit('-').next())
                    .and_then(|o| o.parse::<i64>().ok());
                if ordinal.is_none_or(|o| o >= want) {
                    let (pns, pname) = ns_name(p);
                    delete(&c.backend, "", "v1", "pods", &pns, &pname).await;
                } else if p["status"]["phase"] != "Running" {
                    patch(
                        &c.backend,
                        "",
                        "v1",
                        "pods",
                        p,
                        json!({"status": {"phase": "Running"}}),
                        Subresource::Status,
                    )
                    .await;
                }
            }
            let running = pods.iter().filter(|p| p["status"]["phase"] == "Running").count() as i64;
            let ready = running.min(want);
            let status = &w["status"];
            if status["replicas"] != want
                || status["readyReplicas"] != ready
                || status["observedGeneration"] != w["metadata"]["generation"]
            {
                patch(
                    &c.backend,
                    "apps",
                    "v1",
                    plural,
                    &w,
                    json!({"status": {"replicas": want, "readyReplicas": ready, "availableReplicas": ready,
                                        "observedGeneration": w["metadata"]["generation"]}}),
                    Subresource::Status,
                )
                .await;
            }
        }
    }
}

/// Volume and snapshot directories whose objects are gone are deleted (reclaim policy
/// Delete), and so are the PersistentVolumes provisioned for claims that are gone.
async fn collect_data(c: &SimCluster) {
    // Listed again, not shared with `bind_pvcs`: a claim created during this tick must not
    // lose its data.
    let claims = list(&c.backend, "", "v1", "persistentvolumeclaims").await;
    let pvcs: BTreeSet<(String, String)> = claims.iter().map(ns_name).collect();
    if c.backend.has_controllers() {
        let uids: BTreeSet<&str> = claims.iter().filter_map(|p| p["metadata"]["uid"].as_str()).collect();
        for pv in list(&c.backend, "", "v1", "persistentvolumes").await {
            let ours = pv["metadata"]["labels"][PROVISIONED] == "true";
            let claim = pv["spec"]["claimRef"]["uid"].as_str().unwrap_or("");
            if ours && !uids.contains(claim) {
                let (_, name) = ns_name(&pv);
                delete(&c.backend, "", "v1", "persistentvolumes", "", &name).await;
            }
        }
    }
    let snaps: BTreeSet<(String, String)> = list(&c.backend, "snapshot.storage.k8s.io", "v1", "volumesnapshots")
        .await
        .iter()
        .map(ns_name)
        .collect();
    for (dir, live) in [("volumes", &pvcs), ("snapshots", &snaps)] {
        let Ok(namespaces) = std::fs::read_dir(c.data_dir.join(dir)) else {
            continue;
        };
        for ns in namespaces.flatten() {
            let ns_name = ns.file_name().to_string_lossy().into_owned();
            let Ok(entries) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !live.contains(&(ns_name.clone(), name)) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Make `to` a copy of `from` (files added, changed and removed), as rsync would. With
/// `fraction`, stop after that share of the files: a transfer cut off halfway.
pub fn mirror(from: &Path, to: &Path, fraction: Option<f64>) -> std::io::Result<()> {
    let files = walk(from)?;
    std::fs::create_dir_all(to)?;
    let limit = fraction
        .map(|f| ((files.len() as f64) * f).floor() as usize)
        .unwrap_or(files.len());
    for rel in files.iter().take(limit) {
        let target = to.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from.join(rel), &target)?;
    }
    if fraction.is_none() {
        let keep: BTreeSet<&PathBuf> = files.iter().collect();
        for rel in walk(to)? {
            if !keep.contains(&rel) {
                std::fs::remove_file(to.join(&rel))?;
            }
        }
    }
    Ok(())
}

/// Relative paths of every file under `root`, sorted.
fn walk(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        if !dir.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let child = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                stack.push(child);
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}
