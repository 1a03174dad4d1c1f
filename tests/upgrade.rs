//! Upgrade and downgrade. `tests/fixtures/upgrade/v0.1.0.json` holds what version 0.1.0 left
//! on both clusters (PVCs with their annotations and finalizer, the PSK Secrets, the
//! ReplicationSources and Destinations, VolSync's Services and snapshots, the workloads), recorded
//! from a run of that version. This binary takes them over:
//!
//! - upgrade: nothing is created again, deleted, or given a new key; every setting and
//!   record the old version wrote is still there; syncs go on both ways;
//! - downgrade: it writes no object and no `volsync-dr.io/` key that the old version does not
//!   know, so the old binary, started again, finds only what it wrote.
//!
//! To record the fixture of a release (the next release's N−1), run this test with
//! `VOLSYNC_DR_RECORD_UPGRADE_FIXTURE=1` at that release: it sets the clusters up with the
//! binary being built, writes the fixture, then checks it as above.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::{DrProcess, annotate, deployment, settle, wait_annotation};
use testkit::apiserver::store::{PatchType, Subresource, WriteOptions};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const NS: &str = "default";
const FIXTURE: &str = "tests/fixtures/upgrade/v0.1.0.json";
const RECORD: &str = "VOLSYNC_DR_RECORD_UPGRADE_FIXTURE";

/// The resources the fixture holds, in the order they are created again (owners first).
const RESOURCES: &[(&str, &str, &str)] = &[
    ("", "v1", "persistentvolumeclaims"),
    ("apps", "v1", "deployments"),
    ("", "v1", "secrets"),
    ("volsync.backube", "v1alpha1", "replicationdestinations"),
    ("volsync.backube", "v1alpha1", "replicationsources"),
    ("", "v1", "services"),
    ("snapshot.storage.k8s.io", "v1", "volumesnapshots"),
];

/// Written by the API server, not by the version being recorded.
const SERVER_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
];

fn pvc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS, "annotations": {"volsync-dr.io/protect": "true"}},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

fn list(pair: &ClusterPair, cluster: &str, group: &str, version: &str, plural: &str) -> Vec<Value> {
    let store = pair.server(cluster).store();
    let rt = store
        .find_type(group, version, plural)
        .unwrap_or_else(|| panic!("{cluster} serves no {plural}"));
    store.list(&rt, Some(NS), &Default::default(), &Default::default()).0
}

/// What the version that ran left in `NS`: objects of `RESOURCES` (without the server's
/// fields, owners named by kind and name instead of uid) and Events left out.
fn snapshot(pair: &ClusterPair, cluster: &str) -> Vec<Value> {
    let mut uid_names = BTreeMap::new();
    let mut out = Vec::new();
    for (group, version, plural) in RESOURCES {
        for object in list(pair, cluster, group, version, plural) {
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if let Some(uid) = object["metadata"]["uid"].as_str() {
                uid_names.insert(uid.to_string(), format!("{kind}/{name}"));
            }
            out.push(object);
        }
    }
    for object in &mut out {
        let meta = object["metadata"].as_object_mut().expect("metadata");
        for field in SERVER_FIELDS {
            meta.remove(*field);
        }
        if let Some(refs) = meta.get_mut("ownerReferences").and_then(Value::as_array_mut) {
            for r in refs {
                let uid = r["uid"].as_str().unwrap_or_default();
                r["uid"] = json!(
                    uid_names
                        .get(uid)
                        .map_or_else(|| "outside".to_string(), |n| format!("owner:{n}"))
                );
            }
        }
    }
    out
}

/// The annotation and label keys `src/model/keys.rs` names: what the recorded version knows.
fn known_keys() -> Vec<String> {
    let source = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/model/keys.rs"))
        .expect("read src/model/keys.rs");
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for quoted in source.split('"').skip(1).step_by(2) {
        if quoted.starts_with("volsync-dr.io/") && quoted.len() > "volsync-dr.io/".len() {
            keys.insert(quoted.to_string());
        }
    }
    keys.into_iter().collect()
}

/// Set the clusters up with the binary being built and write the fixture: `db` protected from
/// A and synced, then synced again on request; `web` protected from A and migrated to B (so
/// B is its primary and the takeover is recorded on both sides).
async fn record() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    for name in ["db", "web"] {
        pair.create_bound_pvc(PRIMARY, pvc(name)).await;
        pair.create(PRIMARY, deployment(name, name, 1, json!({})));
        pair.write(PRIMARY, NS, name, "v1", "written by 0.1.0's run");
        wait_annotation(&pair, PRIMARY, name, "volsync-dr.io/state", "Protected").await;
        wait_annotation(&pair, SECONDARY, name, "volsync-dr.io/role", "secondary").await;
        pair.create(SECONDARY, deployment(name, name, 0, json!({})));
    }
    for name in ["db", "web"] {
        pair.wait_for(60, "first sync", |p| {
            let rd = p.object(SECONDARY, "replicationdestinations", NS, &format!("rd-{name}"))?;
            (rd["status"]["latestImage"]["kind"] == "VolumeSnapshot").then_some(())
        })
        .await;
    }
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "sync-now:1");
    annotate(&pair, PRIMARY, "web", "volsync-dr.io/action", "migrate:1");
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", "sync-now:1").await;
    wait_annotation(&pair, PRIMARY, "web", "volsync-dr.io/last-action", "migrate:1").await;
    wait_annotation(&pair, SECONDARY, "web", "volsync-dr.io/role", "primary").await;
    wait_annotation(&pair, PRIMARY, "web", "volsync-dr.io/state", "Protected").await;
    settle(&pair, Duration::from_secs(3), Duration::from_secs(60)).await;
    pair.simulator.pause(PRIMARY);
    pair.simulator.pause(SECONDARY);
    settle(&pair, Duration::from_secs(2), Duration::from_secs(60)).await;
    let fixture = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "knownKeys": known_keys(),
        "clusters": {PRIMARY: snapshot(&pair, PRIMARY), SECONDARY: snapshot(&pair, SECONDARY)},
    });
    let path = fixture_path();
    std::fs::create_dir_all(path.parent().expect("parent")).expect("fixture directory");
    std::fs::write(&path, serde_json::to_string_pretty(&fixture).expect("json") + "\n").expect("write fixture");
}

/// Create the fixture's objects again on one cluster (owners first, their references given the
/// new uids; status through the status subresource, as VolSync and the binder wrote it).
fn load(pair: &ClusterPair, cluster: &str, objects: &[Value]) {
    let store = pair.server(cluster).store();
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    for object in objects {
        let mut object = object.clone();
        let kind = object["kind"].as_str().expect("kind").to_string();
        let name = object["metadata"]["name"].as_str().expect("name").to_string();
        if let Some(refs) = object["metadata"]["ownerReferences"].as_array_mut() {
            for r in refs {
                let owner = r["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches("owner:")
                    .to_string();
                let uid = uids
                    .get(&owner)
                    .unwrap_or_else(|| panic!("{kind}/{name}: owner {owner} is not in the fixture before it"));
                r["uid"] = json!(uid);
            }
        }
        let status = object.get("status").cloned();
        let api_version = object["apiVersion"].as_str().expect("apiVersion").to_string();
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let rt = store.find_kind(group, &kind).expect("served kind");
        let created = store
            .create(&rt, NS, object, &WriteOptions::default())
            .unwrap_or_else(|e| panic!("{cluster}: create {kind}/{name}: {}", e.message));
        uids.insert(
            format!("{kind}/{name}"),
            created.object["metadata"]["uid"].as_str().expect("uid").to_string(),
        );
        if let Some(status) = status.filter(|_| rt.status) {
            store
                .patch(
                    &rt,
                    NS,
                    &name,
                    PatchType::Merge,
                    &json!({"status": status}),
                    Subresource::Status,
                    &WriteOptions::default(),
                )
                .unwrap_or_else(|e| panic!("{cluster}: status of {kind}/{name}: {}", e.message));
        }
    }
}

/// Every object by kind/name with its uid.
fn uids(pair: &ClusterPair, cluster: &str) -> BTreeMap<String, String> {
    RESOURCES
        .iter()
        .flat_map(|(g, v, p)| list(pair, cluster, g, v, p))
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                ),
                o["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn creates_and_deletes(pair: &ClusterPair, cluster: &str) -> Vec<String> {
    pair.server(cluster)
        .stats()
        .by_verb_resource
        .iter()
        .filter(|(k, n)| {
            **n > 0
                && (k.starts_with("create ") || k.starts_with("delete "))
                && !k.contains(" events.")
                && !k.contains(" leases.")
                && !k.contains(" selfsubjectaccessreviews.")
        })
        .map(|(k, n)| format!("{k}: {n}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_versions_objects_are_taken_over_and_nothing_unknown_to_it_is_written() {
    if std::env::var_os(RECORD).is_some() {
        record().await;
    }
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path()).unwrap_or_else(|e| panic!("read {FIXTURE}: {e}")),
    )
    .expect("fixture is JSON");
    let known: BTreeSet<&str> = fixture["knownKeys"]
        .as_array()
        .expect("knownKeys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let recorded =
        |cluster: &str| -> &Vec<Value> { fixture["clusters"][cluster].as_array().expect("cluster's objects") };

    // The old version's clusters, with VolSync still (it runs no sync while the new binary
    // looks), then the new binary on both.
    let pair = ClusterPair::start().await;
    pair.simulator.pause(PRIMARY);
    pair.simulator.pause(SECONDARY);
    for cluster in [PRIMARY, SECONDARY] {
        load(&pair, cluster, recorded(cluster));
    }
    let before = [uids(&pair, PRIMARY), uids(&pair, SECONDARY)];
    pair.a.reset_stats();
    pair.b.reset_stats();
    let a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let b = DrProcess::start(&pair, SECONDARY, &[]).await;
    settle(&pair, Duration::from_secs(3), Duration::from_secs(60)).await;

    // Upgrade: nothing made again or removed, no new key, every recorded value kept.
    for (i, cluster) in [PRIMARY, SECONDARY].into_iter().enumerate() {
        assert_eq!(
            creates_and_deletes(&pair, cluster),
            Vec::<String>::new(),
            "{cluster}: objects made or removed"
        );
        assert_eq!(
            uids(&pair, cluster),
            before[i],
            "{cluster}: the same objects, none recreated"
        );
        for old in recorded(cluster) {
            let kind = old["kind"].as_str().unwrap_or_default();
            let name = old["metadata"]["name"].as_str().unwrap_or_default();
            let api_version = old["apiVersion"].as_str().unwrap_or_default();
            let group = api_version.split_once('/').map_or("", |(g, _)| g);
            let store = pair.server(cluster).store();
            let rt = store.find_kind(group, kind).expect("served kind");
            let now = store
                .get(&rt, NS, name)
                .unwrap_or_else(|_| panic!("{cluster} {kind}/{name} is gone"));
            for field in ["spec", "data", "type"] {
                assert_eq!(now[field], old[field], "{cluster} {kind}/{name}: {field} kept");
            }
            assert_eq!(
                now["metadata"]["finalizers"], old["metadata"]["finalizers"],
                "{cluster} {kind}/{name}: finalizers"
            );
            for (key, value) in old["metadata"]["annotations"].as_object().into_iter().flatten() {
                // Times to come are recomputed; the rest, settings and records, stay as written.
                if key != "volsync-dr.io/next-sync-time" {
                    assert_eq!(
                        &now["metadata"]["annotations"][key], value,
                        "{cluster} {kind}/{name}: annotation {key} kept"
                    );
                }
            }
            for (key, value) in old["metadata"]["labels"].as_object().into_iter().flatten() {
                assert_eq!(
                    &now["metadata"]["labels"][key], value,
                    "{cluster} {kind}/{name}: label {key} kept"
                );
            }
        }
    }

    // Downgrade: every key the new binary left is one the old version knows.
    for cluster in [PRIMARY, SECONDARY] {
        for (group, version, plural) in RESOURCES {
            for object in list(&pair, cluster, group, version, plural) {
                for field in ["annotations", "labels"] {
                    for key in object["metadata"][field]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                    {
                        assert!(
                            !key.starts_with("volsync-dr.io/") || known.contains(key.as_str()),
                            "{cluster} {plural}/{}: {key} is unknown to version {}",
                            object["metadata"]["name"],
                            fixture["version"]
                        );
                    }
                }
            }
        }
    }

    // And protection goes on: `db` syncs from A to B, `web` (migrated) from B to A.
    pair.simulator.resume(PRIMARY);
    pair.simulator.resume(SECONDARY);
    pair.write(PRIMARY, NS, "db", "after-upgrade", "db, written after the upgrade");
    pair.write(SECONDARY, NS, "web", "after-upgrade", "web, written after the upgrade");
    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "sync-now:after-upgrade");
    annotate(
        &pair,
        SECONDARY,
        "web",
        "volsync-dr.io/action",
        "sync-now:after-upgrade",
    );
    wait_annotation(
        &pair,
        PRIMARY,
        "db",
        "volsync-dr.io/last-action",
        "sync-now:after-upgrade",
    )
    .await;
    wait_annotation(
        &pair,
        SECONDARY,
        "web",
        "volsync-dr.io/last-action",
        "sync-now:after-upgrade",
    )
    .await;
    for (cluster, pvc) in [(PRIMARY, "db"), (SECONDARY, "web")] {
        assert_eq!(
            support::annotation(&pair, cluster, pvc, "volsync-dr.io/action-phase").as_deref(),
            Some("Succeeded"),
            "{cluster} {pvc}: sync-now after the upgrade"
        );
    }
    pair.wait_for(30, "db's new file on B", |p| {
        p.read(SECONDARY, NS, "db", "after-upgrade")
    })
    .await;
    pair.wait_for(30, "web's new file on A", |p| {
        p.read(PRIMARY, NS, "web", "after-upgrade")
    })
    .await;
    drop((a, b));
}
