//! The VolSync simulator moves real data between two test clusters for the objects volsync-dr's
//! planner produces, over every service type, and reports status as VolSync does.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};
use volsync_dr::model::names::volsync_rsync_tls_service;
use volsync_dr::model::volsync::ServiceType;
use volsync_dr::plan::{self, Endpoint, InstanceSettings, ProtectPlan, Psk, resolve_endpoint};

fn app_pvc(name: &str, service_type: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"volsync-dr.io/protect": "true", "volsync-dr.io/service-type": service_type}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc")
}

fn instance() -> InstanceSettings {
    InstanceSettings {
        cluster_name: Some(PRIMARY.into()),
        peer_name: SECONDARY.into(),
        default_service_type: ServiceType::ClusterIP,
        volume_snapshot_class: Some("snap".into()),
        destination_volume_snapshot_class: Some("snap".into()),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("json")
}

/// Everything but the RS, then the RS once the RD's endpoint is known: the protect flow, done
/// by hand for an application PVC that already exists on A.
async fn protect(pair: &ClusterPair, pvc: &PersistentVolumeClaim, psk: &Psk) -> (ProtectPlan, Endpoint) {
    let plan = plan::protect(pvc, &instance(), psk, None).expect("plan");
    pair.create(PRIMARY, to_json(&plan.primary_secret));
    pair.create(SECONDARY, to_json(&plan.secondary_secret));
    pair.create(SECONDARY, to_json(&plan.secondary_pvc));
    pair.create(SECONDARY, to_json(&plan.replication_destination));
    let rd_name = plan.names.replication_destination.clone();
    let service_type = plan.settings.service_type;
    let endpoint = pair
        .wait_for(10, "the RD's endpoint", |p| {
            let rd = p.object(SECONDARY, "replicationdestinations", "default", &rd_name)?;
            let service = p.object(SECONDARY, "services", "default", &volsync_rsync_tls_service(&rd_name))?;
            let node = p.object(SECONDARY, "nodes", "", "cluster-b-node-1")?;
            resolve_endpoint(
                service_type,
                rd["status"]["rsyncTLS"]["address"].as_str(),
                node["status"]["addresses"][0]["address"].as_str(),
                service["spec"]["ports"][0]["nodePort"].as_i64().map(|p| p as i32),
            )
        })
        .await;
    let plan = plan::protect(pvc, &instance(), psk, Some(&endpoint)).expect("plan with endpoint");
    pair.create(PRIMARY, to_json(plan.replication_source.as_ref().expect("rs")));
    (plan, endpoint)
}

fn status_of(pair: &ClusterPair, cluster: &str, plural: &str, name: &str) -> Value {
    pair.get(cluster, "volsync.backube", "v1alpha1", plural, "default", name)
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_type_replicates_data_and_reports_status() {
    let pair = ClusterPair::start().await;
    for (pvc_name, service_type) in [("c-ip", "ClusterIP"), ("n-port", "NodePort"), ("l-b", "LoadBalancer")] {
        let pvc = app_pvc(pvc_name, service_type);
        let psk = Psk::from_random_bytes(rand_bytes(pvc_name));
        // Data on the primary volume before protection starts.
        pair.create_bound_pvc(PRIMARY, to_json(&pvc)).await;
        pair.write(PRIMARY, "default", pvc_name, "db/table.dat", "v1");
        let (plan, endpoint) = protect(&pair, &pvc, &psk).await;
        match service_type {
            "NodePort" => assert_eq!(endpoint.address, "192.0.2.102", "a node address of the peer"),
            _ => assert_eq!(endpoint.port, 8000),
        }
        let rs_name = plan.names.replication_source.clone();
        let rd_name = plan.names.replication_destination.clone();
        // A new RS syncs at once.
        let first = pair
            .wait_for(10, "first sync", |p| {
                status_of(p, PRIMARY, "replicationsources", &rs_name)["lastSyncTime"]
                    .as_str()
                    .map(str::to_string)
            })
            .await;
        assert_eq!(
            pair.read(SECONDARY, "default", pvc_name, "db/table.dat").as_deref(),
            Some("v1"),
            "{service_type}"
        );
        let rs_status = status_of(&pair, PRIMARY, "replicationsources", &rs_name);
        assert!(
            rs_status["nextSyncTime"].as_str().is_some_and(|n| n > first.as_str()),
            "{rs_status}"
        );
        assert!(rs_status["lastSyncDuration"].as_str().is_some_and(|d| d.ends_with('s')));
        let rd_status = status_of(&pair, SECONDARY, "replicationdestinations", &rd_name);
        let image = rd_status["latestImage"]["name"]
            .as_str()
            .expect("latestImage")
            .to_string();
        assert_eq!(rd_status["latestImage"]["kind"], "VolumeSnapshot");
        assert!(pair.object(SECONDARY, "volumesnapshots", "default", &image).is_some());

        // A later scheduled sync carries changes and deletions, and replaces the snapshot.
        pair.write(PRIMARY, "default", pvc_name, "db/table.dat", "v2");
        pair.write(PRIMARY, "default", pvc_name, "db/new.dat", "n");
        pair.write(SECONDARY, "default", pvc_name, "stray.tmp", "x");
        pair.simulator.run_schedules_now();
        pair.wait_for(10, "second sync", |p| {
            (p.read(SECONDARY, "default", pvc_name, "db/table.dat").as_deref() == Some("v2")).then_some(())
        })
        .await;
        assert_eq!(
            pair.read(SECONDARY, "default", pvc_name, "db/new.dat").as_deref(),
            Some("n")
        );
        assert_eq!(
            pair.read(SECONDARY, "default", pvc_name, "stray.tmp"),
            None,
            "rsync removes extra files"
        );
        let newer = pair
            .wait_for(10, "new image", |p| {
                let n = status_of(p, SECONDARY, "replicationdestinations", &rd_name)["latestImage"]["name"]
                    .as_str()
                    .map(str::to_string)?;
                (n != image).then_some(n)
            })
            .await;
        pair.wait_for(10, "old snapshot deleted", |p| {
            p.object(SECONDARY, "volumesnapshots", "default", &image)
                .is_none()
                .then_some(())
        })
        .await;
        assert!(pair.object(SECONDARY, "volumesnapshots", "default", &newer).is_some());
    }
}

fn rand_bytes(seed: &str) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, c) in seed.bytes().cycle().take(32).enumerate() {
        b[i] = c.wrapping_mul(31).wrapping_add(i as u8);
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_trigger_and_key_mismatch() {
    let pair = ClusterPair::start().await;
    let pvc = app_pvc("m", "ClusterIP");
    pair.create_bound_pvc(PRIMARY, to_json(&pvc)).await;
    pair.write(PRIMARY, "default", "m", "f", "1");
    let (plan, endpoint) = protect(&pair, &pvc, &Psk::from_random_bytes([3; 32])).await;
    pair.wait_for(10, "first sync", |p| {
        status_of(p, PRIMARY, "replicationsources", "rs-m")["lastSyncTime"]
            .as_str()
            .map(|_| ())
    })
    .await;

    // A one-time sync: done when lastManualSync equals the trigger.
    let mut latest = plan.replication_source.clone().expect("rs");
    latest.metadata.name = Some(plan.names.replication_source_latest.clone());
    if let Some(t) = latest.spec.trigger.as_mut() {
        t.schedule = None;
        t.manual = Some("t-1".into());
    }
    pair.write(PRIMARY, "default", "m", "f", "2");
    pair.create(PRIMARY, to_json(&latest));
    pair.wait_for(10, "manual sync", |p| {
        (status_of(p, PRIMARY, "replicationsources", "rs-m-latest")["lastManualSync"] == "t-1").then_some(())
    })
    .await;
    assert_eq!(pair.read(SECONDARY, "default", "m", "f").as_deref(), Some("2"));

    // A source whose key differs from the destination's never syncs.
    let pvc2 = app_pvc("k", "ClusterIP");
    pair.create_bound_pvc(PRIMARY, to_json(&pvc2)).await;
    pair.write(PRIMARY, "default", "k", "f", "secret data");
    let mut wrong = plan.primary_secret.clone();
    wrong.metadata.name = Some("wrong-key".into());
    wrong.data = Some(
        [(
            "psk.txt".to_string(),
            k8s_openapi::ByteString(b"volsync-dr:00000000000000000000000000000000".to_vec()),
        )]
        .into(),
    );
    pair.create(PRIMARY, to_json(&wrong));
    let mut rs = plan.replication_source.clone().expect("rs");
    rs.metadata.name = Some("rs-k".into());
    rs.spec.source_pvc = Some("k".into());
    if let Some(tls) = rs.spec.rsync_tls.as_mut() {
        tls.key_secret = Some("wrong-key".into());
        tls.address = Some(endpoint.address.clone());
    }
    pair.create(PRIMARY, to_json(&rs));
    let logs = pair
        .wait_for(10, "failed mover", |p| {
            status_of(p, PRIMARY, "replicationsources", "rs-k")["latestMoverStatus"]["logs"]
                .as_str()
                .map(str::to_string)
        })
        .await;
    assert!(logs.contains("pre-shared keys differ"), "{logs}");
    assert!(status_of(&pair, PRIMARY, "replicationsources", "rs-k")["lastSyncTime"].is_null());
    assert_eq!(
        pair.read(SECONDARY, "default", "m", "f").as_deref(),
        Some("2"),
        "nothing written over the destination"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_sync_restore_from_last_image_and_kept_snapshot() {
    let pair = ClusterPair::start().await;
    let pvc = app_pvc("db", "ClusterIP");
    pair.create_bound_pvc(PRIMARY, to_json(&pvc)).await;
    for i in 0..4 {
        pair.write(PRIMARY, "default", "db", &format!("part-{i}"), "old");
    }
    let (plan, _) = protect(&pair, &pvc, &Psk::from_random_bytes([5; 32])).await;
    let rd_name = plan.names.replication_destination.clone();
    let image = pair
        .wait_for(10, "first image", |p| {
            status_of(p, SECONDARY, "replicationdestinations", &rd_name)["latestImage"]["name"]
                .as_str()
                .map(str::to_string)
        })
        .await;

    // The next sync is cut off halfway: the destination volume is half old, half new.
    for i in 0..4 {
        pair.write(PRIMARY, "default", "db", &format!("part-{i}"), "new");
    }
    pair.simulator.interrupt_next_sync();
    pair.simulator.run_schedules_now();
    pair.wait_for(10, "cut-off sync", |p| {
        status_of(p, PRIMARY, "replicationsources", "rs-db")["latestMoverStatus"]["result"]
            .as_str()
            .filter(|r| *r == "Failed")
            .map(|_| ())
    })
    .await;
    let parts: Vec<String> = (0..4)
        .map(|i| {
            pair.read(SECONDARY, "default", "db", &format!("part-{i}"))
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(parts, ["new", "new", "old", "old"], "a partial copy");
    assert_eq!(
        status_of(&pair, SECONDARY, "replicationdestinations", &rd_name)["latestImage"]["name"],
        image.as_str()
    );

    // Failover's restore point: keep the snapshot, restore a PVC from the RD's latest image.
    pair.server(SECONDARY)
        .store()
        .patch(
            &pair
                .server(SECONDARY)
                .store()
                .find_type("snapshot.storage.k8s.io", "v1", "volumesnapshots")
                .expect("type"),
            "default",
            &image,
            testkit::apiserver::store::PatchType::Merge,
            &json!({"metadata": {"labels": {"volsync.backube/do-not-delete": "true"}}}),
            testkit::apiserver::store::Subresource::Main,
            &Default::default(),
        )
        .expect("label snapshot");
    pair.create(SECONDARY, json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": plan.names.restored_pvc, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "dataSourceRef": {"apiGroup": "volsync.backube", "kind": "ReplicationDestination", "name": rd_name}}
    }));
    pair.wait_for(10, "restored PVC bound", |p| {
        (p.object(SECONDARY, "persistentvolumeclaims", "default", "restored-db")?["status"]["phase"] == "Bound")
            .then_some(())
    })
    .await;
    for i in 0..4 {
        assert_eq!(
            pair.read(SECONDARY, "default", "restored-db", &format!("part-{i}"))
                .as_deref(),
            Some("old"),
            "last complete sync"
        );
    }
    // Deleting the RD takes its Service but not the kept snapshot.
    let rt = pair
        .server(SECONDARY)
        .store()
        .find_type("volsync.backube", "v1alpha1", "replicationdestinations")
        .expect("type");
    pair.server(SECONDARY)
        .store()
        .delete(&rt, "default", &rd_name, &json!({}), false)
        .expect("delete RD");
    pair.wait_for(10, "service collected", |p| {
        p.object(SECONDARY, "services", "default", &volsync_rsync_tls_service(&rd_name))
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        pair.object(SECONDARY, "volumesnapshots", "default", &image).is_some(),
        "kept snapshot survives"
    );
}
