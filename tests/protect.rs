//! `volsync-dr run` protects annotated PVCs across two test clusters, with the VolSync
//! simulator moving real data: every service type, status on both sides, annotation changes,
//! unprotect and deletion, peer outage, conflicts, a crash in the middle, and no writes when
//! nothing changed.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};
use support::{
    DrProcess, annotate, annotation, events_said, events_with_reason, metric_value, patch_pvc, wait_annotation,
};
use testkit::apiserver::Fault;
use testkit::apiserver::store::{PatchType, Subresource};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};
use volsync_dr::model::volsync::ServiceType;
use volsync_dr::plan::{self, Endpoint, InstanceSettings, Psk};

const NS: &str = "default";

fn pvc_json(name: &str, annotations: &[(&str, &str)]) -> Value {
    let annotations: serde_json::Map<String, Value> =
        annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS, "annotations": annotations},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}})
}

fn get(pair: &ClusterPair, cluster: &str, plural: &str, name: &str) -> Option<Value> {
    pair.object(cluster, plural, NS, name)
}

fn instance() -> InstanceSettings {
    InstanceSettings {
        cluster_name: Some(PRIMARY.into()),
        peer_name: SECONDARY.into(),
        default_service_type: ServiceType::ClusterIP,
        volume_snapshot_class: None,
        destination_volume_snapshot_class: None,
    }
}

fn psk_on(pair: &ClusterPair, cluster: &str, secret: &str) -> Option<String> {
    use base64::Engine as _;
    let data = get(pair, cluster, "secrets", secret)?["data"]["psk.txt"]
        .as_str()?
        .to_string();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data).ok()?).ok()
}

/// The objects on both clusters are what the planner (and so `render`) gives for the same PVC,
/// key and endpoint.
fn assert_matches_plan(pair: &ClusterPair, name: &str) {
    let pvc: PersistentVolumeClaim =
        serde_json::from_value(get(pair, PRIMARY, "persistentvolumeclaims", name).expect("pvc")).expect("typed");
    let names = volsync_dr::model::names::Names::for_pvc(name);
    let psk = Psk::parse(&psk_on(pair, PRIMARY, &names.secret).expect("key")).expect("valid key");
    let rs = get(pair, PRIMARY, "replicationsources", &names.replication_source).expect("rs");
    let endpoint = Endpoint {
        address: rs["spec"]["rsyncTLS"]["address"].as_str().expect("address").to_string(),
        port: rs["spec"]["rsyncTLS"]["port"].as_i64().expect("port") as i32,
    };
    let planned = plan::protect(&pvc, &instance(), &psk, Some(&endpoint)).expect("plan");
    let same = |cluster: &str, plural: &str, object: Value| {
        let actual = get(
            pair,
            cluster,
            plural,
            object["metadata"]["name"].as_str().expect("name"),
        )
        .expect("object exists");
        for field in ["spec", "data", "type"] {
            if !object[field].is_null() {
                assert_eq!(actual[field], object[field], "{cluster} {plural} {field}");
            }
        }
        for (k, v) in object["metadata"]["labels"].as_object().into_iter().flatten() {
            assert_eq!(&actual["metadata"]["labels"][k], v, "{cluster} {plural} label {k}");
        }
    };
    same(PRIMARY, "secrets", json(&planned.primary_secret));
    same(SECONDARY, "secrets", json(&planned.secondary_secret));
    same(
        SECONDARY,
        "replicationdestinations",
        json(&planned.replication_destination),
    );
    same(
        PRIMARY,
        "replicationsources",
        json(planned.replication_source.as_ref().expect("rs")),
    );
    let counterpart = get(pair, SECONDARY, "persistentvolumeclaims", name).expect("counterpart");
    let want = json(&planned.secondary_pvc);
    for field in ["accessModes", "resources", "storageClassName", "volumeMode"] {
        assert_eq!(counterpart["spec"][field], want["spec"][field], "counterpart {field}");
    }
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protects_every_service_type_and_mirrors_status() {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    // The long NodePort name makes VolSync hash its Service's name (`volsync-rsync-tls-dst-<crc32>`),
    // which the endpoint lookup must follow.
    let long_node_port = format!("n-port-{}", "x".repeat(50));
    let cases = [
        ("c-ip", "ClusterIP"),
        ("n-port", "NodePort"),
        ("l-b", "LoadBalancer"),
        (long_node_port.as_str(), "NodePort"),
    ];
    for (name, service_type) in cases {
        pair.create_bound_pvc(PRIMARY, pvc_json(name, &[])).await;
        pair.write(PRIMARY, NS, name, "data.txt", &format!("hello from {name}"));
        patch_pvc(
            &pair,
            PRIMARY,
            name,
            json!({"metadata": {"annotations": {
            "volsync-dr.io/protect": "true", "volsync-dr.io/service-type": service_type}}}),
        );
    }
    for (name, service_type) in cases {
        wait_annotation(&pair, PRIMARY, name, "volsync-dr.io/state", "Protected").await;
        let pvc = get(&pair, PRIMARY, "persistentvolumeclaims", name).expect("pvc");
        assert_eq!(
            pvc["metadata"]["finalizers"],
            json!(["volsync-dr.io/protection"]),
            "{name}"
        );
        assert_eq!(pvc["metadata"]["labels"]["volsync-dr.io/protected"], "true");
        assert_eq!(pvc["metadata"]["annotations"]["volsync-dr.io/role"], "primary");
        // The data arrives, and the status of the first sync reaches both PVCs.
        pair.wait_for(30, "data on the secondary", |p| {
            (p.read(SECONDARY, NS, name, "data.txt") == Some(format!("hello from {name}"))).then_some(())
        })
        .await;
        pair.wait_for(30, "last-sync-time on the primary", |p| {
            annotation(p, PRIMARY, name, "volsync-dr.io/last-sync-time")
        })
        .await;
        wait_annotation(&pair, SECONDARY, name, "volsync-dr.io/role", "secondary").await;
        wait_annotation(&pair, SECONDARY, name, "volsync-dr.io/state", "Protected").await;
        pair.wait_for(30, "last-sync-time on the secondary", |p| {
            annotation(p, SECONDARY, name, "volsync-dr.io/last-sync-time")
        })
        .await;
        assert!(annotation(&pair, PRIMARY, name, "volsync-dr.io/next-sync-time").is_some());
        let rs = get(&pair, PRIMARY, "replicationsources", &format!("rs-{name}")).expect("rs");
        if service_type == "NodePort" {
            assert_eq!(
                rs["spec"]["rsyncTLS"]["address"], "192.0.2.102",
                "a peer node's address"
            );
            assert_ne!(rs["spec"]["rsyncTLS"]["port"], 8000);
        } else {
            assert_eq!(rs["spec"]["rsyncTLS"]["port"], 8000);
        }
        assert_eq!(
            psk_on(&pair, PRIMARY, &format!("volsync-dr-{name}")),
            psk_on(&pair, SECONDARY, &format!("volsync-dr-{name}"))
        );
        assert_matches_plan(&pair, name);
    }
    // Keys are per volume.
    assert_ne!(
        psk_on(&pair, PRIMARY, "volsync-dr-c-ip"),
        psk_on(&pair, PRIMARY, "volsync-dr-n-port")
    );

    // Status advances with syncs.
    let before = annotation(&pair, PRIMARY, "c-ip", "volsync-dr.io/last-sync-time").expect("synced");
    // Sync times have whole seconds: the next sync must start in a later second to show.
    pair.wait_for(5, "the clock past the last sync's second", |_| {
        (chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string() > before).then_some(())
    })
    .await;
    pair.write(PRIMARY, NS, "c-ip", "data.txt", "second");
    pair.simulator.run_schedules_now();
    // Both: a sync that ran before the write also shows a newer time, without the data.
    pair.wait_for(30, "the new data on the peer and a newer last-sync-time", |p| {
        (p.read(SECONDARY, NS, "c-ip", "data.txt").as_deref() == Some("second"))
            .then(|| annotation(p, PRIMARY, "c-ip", "volsync-dr.io/last-sync-time"))
            .flatten()
            .filter(|t| *t > before)
    })
    .await;

    // A full resync with nothing changed writes nothing, on either cluster: once everything
    // is quiet, restart A's process and let it go through every PVC until quiet again.
    support::settle(&pair, Duration::from_millis(500), Duration::from_secs(20)).await;
    pair.a.reset_stats();
    pair.b.reset_stats();
    a.restart().await;
    support::settle(&pair, Duration::from_secs(1), Duration::from_secs(20)).await;
    assert_eq!(
        pair.a.stats().writes(),
        0,
        "writes on A: {:?}",
        pair.a.stats().by_verb_resource
    );
    assert_eq!(
        pair.b.stats().writes(),
        0,
        "writes on B: {:?}",
        pair.b.stats().by_verb_resource
    );
    assert!(pair.a.stats().count("list") > 0, "the restarted process did resync");
}

fn managed_objects(pair: &ClusterPair, cluster: &str, plural: &str, pvc: &str) -> usize {
    let server = pair.server(cluster);
    let (group, version) = if plural.starts_with("replication") {
        ("volsync.backube", "v1alpha1")
    } else {
        ("", "v1")
    };
    let rt = server.store().find_type(group, version, plural).expect("type");
    let selector =
        testkit::apiserver::selectors::LabelSelector::parse(&format!("volsync-dr.io/pvc={pvc}")).expect("selector");
    server
        .store()
        .list(&rt, Some(NS), &selector, &Default::default())
        .0
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_changes_unprotect_and_deletion() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc_json("app", &[("volsync-dr.io/protect", "true")]))
        .await;
    wait_annotation(&pair, PRIMARY, "app", "volsync-dr.io/state", "Protected").await;

    // A new schedule reaches the ReplicationSource; a new service type the RD and the endpoint.
    annotate(&pair, PRIMARY, "app", "volsync-dr.io/schedule", "@hourly");
    pair.wait_for(30, "new schedule", |p| {
        (get(p, PRIMARY, "replicationsources", "rs-app")?["spec"]["trigger"]["schedule"] == "@hourly").then_some(())
    })
    .await;
    annotate(&pair, PRIMARY, "app", "volsync-dr.io/service-type", "NodePort");
    pair.wait_for(30, "NodePort endpoint", |p| {
        let rd = get(p, SECONDARY, "replicationdestinations", "rd-app")?;
        let rs = get(p, PRIMARY, "replicationsources", "rs-app")?;
        (rd["spec"]["rsyncTLS"]["serviceType"] == "NodePort" && rs["spec"]["rsyncTLS"]["address"] == "192.0.2.102")
            .then_some(())
    })
    .await;
    patch_pvc(
        &pair,
        PRIMARY,
        "app",
        json!({"metadata": {"annotations": {
            "volsync-dr.io/volume-snapshot-class": "fast-a", "volsync-dr.io/destination-volume-snapshot-class": "fast-b"}}}),
    );
    pair.wait_for(30, "new snapshot classes", |p| {
        let rd = get(p, SECONDARY, "replicationdestinations", "rd-app")?;
        let rs = get(p, PRIMARY, "replicationsources", "rs-app")?;
        let rd_class = &rd["spec"]["rsyncTLS"]["volumeSnapshotClassName"];
        let rs_class = &rs["spec"]["rsyncTLS"]["volumeSnapshotClassName"];
        (rd_class == "fast-b" && rs_class == "fast-a").then_some(())
    })
    .await;
    assert_matches_plan(&pair, "app");

    // protect: "false" removes protection on both sides and keeps the counterpart's data.
    pair.write(PRIMARY, NS, "app", "keep.txt", "replica");
    pair.simulator.run_schedules_now();
    pair.wait_for(30, "replica", |p| p.read(SECONDARY, NS, "app", "keep.txt"))
        .await;
    annotate(&pair, PRIMARY, "app", "volsync-dr.io/protect", "false");
    pair.wait_for(30, "finalizer released", |p| {
        get(p, PRIMARY, "persistentvolumeclaims", "app")?["metadata"]["finalizers"]
            .is_null()
            .then_some(())
    })
    .await;
    for (cluster, plural) in [
        (PRIMARY, "replicationsources"),
        (PRIMARY, "secrets"),
        (SECONDARY, "replicationdestinations"),
        (SECONDARY, "secrets"),
    ] {
        assert_eq!(
            managed_objects(&pair, cluster, plural, "app"),
            0,
            "{cluster} {plural} left behind"
        );
    }
    let here = get(&pair, PRIMARY, "persistentvolumeclaims", "app").expect("pvc kept");
    assert!(here["metadata"]["annotations"].get("volsync-dr.io/state").is_none());
    assert!(here["metadata"]["labels"].get("volsync-dr.io/protected").is_none());
    let there = get(&pair, SECONDARY, "persistentvolumeclaims", "app").expect("counterpart kept");
    assert!(
        there["metadata"]["annotations"].get("volsync-dr.io/role").is_none(),
        "{there}"
    );
    assert!(there["metadata"]["annotations"].get("volsync-dr.io/protect").is_none());
    assert_eq!(
        pair.read(SECONDARY, NS, "app", "keep.txt").as_deref(),
        Some("replica"),
        "the replica is kept"
    );
    assert!(events_with_reason(&pair, PRIMARY, "CounterpartKept") >= 1);

    // Deleting a protected PVC cleans both sides before it goes.
    pair.create_bound_pvc(PRIMARY, pvc_json("gone", &[("volsync-dr.io/protect", "true")]))
        .await;
    wait_annotation(&pair, PRIMARY, "gone", "volsync-dr.io/state", "Protected").await;
    let rt = pair
        .a
        .store()
        .find_type("", "v1", "persistentvolumeclaims")
        .expect("type");
    pair.a
        .store()
        .delete(&rt, NS, "gone", &json!({}), false)
        .expect("delete");
    pair.wait_for(30, "PVC gone", |p| {
        get(p, PRIMARY, "persistentvolumeclaims", "gone")
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(managed_objects(&pair, SECONDARY, "replicationdestinations", "gone"), 0);
    assert_eq!(managed_objects(&pair, SECONDARY, "secrets", "gone"), 0);
    assert_eq!(managed_objects(&pair, PRIMARY, "replicationsources", "gone"), 0);
}

/// The note of the Degraded Event on `p1` (cluster-a).
fn degraded_note(pair: &ClusterPair) -> String {
    support::events(pair, PRIMARY, "Degraded")
        .iter()
        .find(|e| e["regarding"]["name"] == "p1")
        .and_then(|e| e["note"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_outage_crash_mid_protect_and_conflicts() {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let b = DrProcess::start(&pair, SECONDARY, &[]).await;

    // The peer goes away; protection starts and stops halfway: key kept here, PVC Degraded.
    pair.b.stop().await;
    pair.create_bound_pvc(PRIMARY, pvc_json("p1", &[("volsync-dr.io/protect", "true")]))
        .await;
    wait_annotation(&pair, PRIMARY, "p1", "volsync-dr.io/state", "Degraded").await;
    let key = psk_on(&pair, PRIMARY, "volsync-dr-p1").expect("the key is written here first");
    assert_eq!(
        get(&pair, PRIMARY, "persistentvolumeclaims", "p1").expect("pvc")["metadata"]["finalizers"],
        json!(["volsync-dr.io/protection"])
    );
    // The Event follows the status write the wait above saw.
    pair.wait_for(30, "the reason in a Degraded Event", |p| {
        (events_with_reason(p, PRIMARY, "Degraded") >= 1).then_some(())
    })
    .await;
    assert!(get(&pair, PRIMARY, "replicationsources", "rs-p1").is_none());
    // Said plainly, once: the retries back off (1, 2, 4, 8 s …) and each one is counted as the
    // error it is, while the reason, said once, is not repeated on every retry.
    let said = events_said(&pair, PRIMARY, "Degraded");
    let note = degraded_note(&pair);
    assert!(
        note.starts_with("peer cluster cluster-b does not answer (since ")
            && note.contains("the peer's side is retried with a growing delay"),
        "{note}"
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let failed = metric_value(
        &a,
        "volsync_dr_reconciles_total{result=\"error\",reason=\"PeerUnreachable\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(
        (1.0..=8.0).contains(&failed),
        "failed passes counted as errors, backing off: {failed}"
    );
    assert_eq!(
        events_said(&pair, PRIMARY, "Degraded"),
        said,
        "the same reason is not said again on each retry"
    );
    let log = a.log_text();
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("reconcile failed") && l.contains("name=\"p1\""))
        .count();
    assert_eq!(
        warned, 1,
        "one warning for p1 when it starts failing, the retries at debug:\n{log}"
    );
    assert!(
        !log.contains("failed with error"),
        "kube-client's own line per failed request is off (volsync-dr says each failure):\n{log}"
    );
    // Readiness follows each process's own API server, not the peer's: b's is the one down.
    let ready = |process: &DrProcess| {
        let admin = process.admin;
        async move { testkit::http::request(admin, "GET", "/readyz", "text/plain", "").await }
    };
    let mut b_ready = ready(&b).await;
    for _ in 0..40 {
        if b_ready.status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        b_ready = ready(&b).await;
    }
    assert_eq!(b_ready.status, 503, "b's API server is down: {:?}", b_ready.body);
    assert_eq!(b_ready.body.as_str(), Some("this cluster's API server does not answer"));
    assert_eq!(ready(&a).await.status, 200, "a peer outage leaves a ready");
    let alive = testkit::http::request(b.admin, "GET", "/healthz", "text/plain", "").await;
    assert_eq!(alive.status, 200, "liveness does not depend on the API server");

    // Crash in the middle; the peer returns; writes meet conflicts; the restarted process finishes.
    a.kill().await;
    pair.b.restart().await.expect("peer back");
    // Down, the probe runs every second with a 5 s timeout: one caught by the restart may use
    // all of it, so up to about 6 s; wait up to 15.
    let mut b_ready = ready(&b).await;
    for _ in 0..60 {
        if b_ready.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        b_ready = ready(&b).await;
    }
    assert_eq!(b_ready.status, 200, "ready again once its API server answers");
    pair.a.inject(Fault {
        verb: Some("patch"),
        resource: Some("persistentvolumeclaims".into()),
        count: 2,
        code: 409,
    });
    pair.b.inject(Fault {
        verb: Some("patch"),
        resource: Some("replicationdestinations".into()),
        count: 2,
        code: 409,
    });
    a.restart().await;
    wait_annotation(&pair, PRIMARY, "p1", "volsync-dr.io/state", "Protected").await;
    assert_eq!(
        psk_on(&pair, PRIMARY, "volsync-dr-p1").as_deref(),
        Some(key.as_str()),
        "the key survived the crash"
    );
    assert_eq!(psk_on(&pair, SECONDARY, "volsync-dr-p1").as_deref(), Some(key.as_str()));
    for (cluster, plural) in [
        (PRIMARY, "replicationsources"),
        (PRIMARY, "secrets"),
        (SECONDARY, "replicationdestinations"),
        (SECONDARY, "secrets"),
    ] {
        assert_eq!(
            managed_objects(&pair, cluster, plural, "p1"),
            1,
            "exactly one {plural} on {cluster}"
        );
    }
    assert_matches_plan(&pair, "p1");
    assert!(
        a.log_text().contains("409") || a.log_text().contains("Conflict"),
        "the conflicts were met"
    );

    // An outage while protected: the local side keeps its RS, the PVC shows Degraded, then recovers.
    pair.b.stop().await;
    annotate(&pair, PRIMARY, "p1", "volsync-dr.io/schedule", "0 * * * *");
    wait_annotation(&pair, PRIMARY, "p1", "volsync-dr.io/state", "Degraded").await;
    assert!(
        get(&pair, PRIMARY, "replicationsources", "rs-p1").is_some(),
        "the local side keeps working"
    );
    pair.b.restart().await.expect("peer back");
    wait_annotation(&pair, PRIMARY, "p1", "volsync-dr.io/state", "Protected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scope_and_failed_syncs() {
    let pair = ClusterPair::start().await;
    for cluster in [PRIMARY, SECONDARY] {
        pair.create(
            cluster,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}),
        );
    }
    let _a = DrProcess::start(&pair, PRIMARY, &["--namespaces", "apps"]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &["--namespaces", "apps"]).await;
    let mut in_apps = pvc_json("db", &[("volsync-dr.io/protect", "true")]);
    in_apps["metadata"]["namespace"] = json!("apps");
    pair.create_bound_pvc(PRIMARY, in_apps).await;
    pair.create_bound_pvc(PRIMARY, pvc_json("outside", &[("volsync-dr.io/protect", "true")]))
        .await;
    pair.wait_for(30, "apps/db Protected", |p| {
        let pvc = p.object(PRIMARY, "persistentvolumeclaims", "apps", "db")?;
        (pvc["metadata"]["annotations"]["volsync-dr.io/state"] == "Protected").then_some(())
    })
    .await;
    let outside = get(&pair, PRIMARY, "persistentvolumeclaims", "outside").expect("pvc");
    assert!(
        outside["metadata"]["finalizers"].is_null(),
        "a PVC outside --namespaces is left alone"
    );
    assert!(outside["metadata"]["annotations"].get("volsync-dr.io/state").is_none());

    // A sync cut off halfway degrades the PVC; the next good sync brings it back. The first
    // sync must be done: an interrupted first sync is retried on the simulator's next tick and
    // can succeed before the Failed status is ever seen.
    pair.wait_for(30, "apps/db's first sync", |p| {
        let rs = p.object(PRIMARY, "replicationsources", "apps", "rs-db")?;
        rs["status"]["lastSyncTime"].as_str().map(|_| ())
    })
    .await;
    pair.simulator.interrupt_next_sync();
    pair.simulator.run_schedules_now();
    let state = |p: &ClusterPair| {
        p.object(PRIMARY, "persistentvolumeclaims", "apps", "db")?["metadata"]["annotations"]["volsync-dr.io/state"]
            .as_str()
            .map(str::to_string)
    };
    pair.wait_for(30, "Degraded after a failed sync", |p| {
        (state(p).as_deref() == Some("Degraded")).then_some(())
    })
    .await;
    pair.simulator.run_schedules_now();
    pair.wait_for(30, "Protected after a good sync", |p| {
        (state(p).as_deref() == Some("Protected")).then_some(())
    })
    .await;

    // Removing the annotation unprotects, like "false".
    let rt = pair
        .a
        .store()
        .find_type("", "v1", "persistentvolumeclaims")
        .expect("type");
    let removal = json!({"metadata": {"annotations": {"volsync-dr.io/protect": null}}});
    pair.a
        .store()
        .patch(
            &rt,
            "apps",
            "db",
            PatchType::Merge,
            &removal,
            Subresource::Main,
            &Default::default(),
        )
        .expect("patch");
    pair.wait_for(30, "finalizer released", |p| {
        p.object(PRIMARY, "persistentvolumeclaims", "apps", "db")?["metadata"]["finalizers"]
            .is_null()
            .then_some(())
    })
    .await;
    assert!(
        pair.object(SECONDARY, "replicationdestinations", "apps", "rd-db")
            .is_none()
    );
}
