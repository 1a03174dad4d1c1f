//! kube-runtime against the test API server: a reflector that survives an outage and a compacted
//! history (410 Gone → relist), a Controller that reconciles with server-side apply, optimistic
//! concurrency, and VolSync objects typed by volsync-dr accepted by VolSync's CRD schema.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use testkit::apiserver::store::WriteOptions;
use testkit::apiserver::{ApiServer, Config};
use testkit::cluster::start_with_volsync;
use volsync_dr::controller::cache::CachedPvc;

async fn client(server: &ApiServer, dir: &std::path::Path) -> Client {
    let path = dir.join("kubeconfig");
    server.write_kubeconfig(&path, "test").expect("kubeconfig");
    let kubeconfig = Kubeconfig::read_from(&path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

fn pvc(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc")
}

/// A test API server sending bookmarks every 200 ms, a client of it (its kubeconfig lives in
/// the returned directory), and PVCs `names` created in `default`.
async fn server_with_pvcs(names: &[&str]) -> (ApiServer, tempfile::TempDir, Client, Api<PersistentVolumeClaim>) {
    let server = ApiServer::start(Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await
    .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client(&server, dir.path()).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for name in names {
        pvcs.create(&PostParams::default(), &pvc(name)).await.expect("create");
    }
    (server, dir, client, pvcs)
}

/// Poll `check` every 50 ms for up to `secs` seconds.
async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_follows_changes_through_outage_and_compaction() {
    let (server, _dir, _client, pvcs) = server_with_pvcs(&["a", "b", "c"]).await;
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(pvcs.clone(), watcher::Config::default().labels("team=a")),
    )
    .default_backoff()
    .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    eventually(10, "initial list", || reader.state().len() == 3).await;

    // Live events: a new object, a deletion, a label change that leaves the selector.
    pvcs.create(&PostParams::default(), &pvc("d")).await.expect("create d");
    pvcs.delete("a", &Default::default()).await.expect("delete a");
    pvcs.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "b"}}})),
    )
    .await
    .expect("relabel b");
    let names = |r: &reflector::Store<PersistentVolumeClaim>| {
        let mut n: Vec<String> = r.state().iter().map(|p| p.name_any()).collect();
        n.sort();
        n
    };
    eventually(10, "live events", || names(&reader) == ["c", "d"]).await;

    // Outage: changes made meanwhile, history compacted, so the resume point is gone (410).
    server.stop().await;
    let rt = server
        .store()
        .find_type("", "v1", "persistentvolumeclaims")
        .expect("pvc type");
    let e = serde_json::to_value(pvc("e")).expect("json");
    server
        .store()
        .create(&rt, "default", e, &WriteOptions::default())
        .expect("create e while down");
    server
        .store()
        .delete(&rt, "default", "c", &json!({}), false)
        .expect("delete c while down");
    server.store().compact();
    server.restart().await.expect("restart");
    eventually(30, "relist after 410", || names(&reader) == ["d", "e"]).await;
    assert!(
        server.stats().expired_watches >= 1,
        "the watcher resumed from a compacted version and got 410"
    );
    task.abort();
}

/// The watcher's compact PVC cache (`CachedPvc`) lists and follows a watch like the full type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compact_pvc_cache_follows_list_and_watch() {
    let (_server, _dir, client, pvcs) = server_with_pvcs(&["a", "b"]).await;
    let (reader, writer) = reflector::store::<CachedPvc>();
    let cached: Api<CachedPvc> = Api::namespaced(client.clone(), "default");
    let stream = reflector(writer, watcher(cached, watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    // A watch that cannot resume (an event without a resource version) errors and relists,
    // which would hide behind the store looking right.
    let errors = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let errors = errors.clone();
        stream.for_each(move |event| {
            if let Err(e) = event {
                eprintln!("watch error: {e}");
                errors.fetch_add(1, Ordering::SeqCst);
            }
            async {}
        })
    });
    let names = |r: &reflector::Store<CachedPvc>| {
        let mut n: Vec<String> = r.state().iter().map(|p| p.name().to_string()).collect();
        n.sort();
        n
    };
    eventually(10, "initial list", || names(&reader) == ["a", "b"]).await;
    pvcs.create(&PostParams::default(), &pvc("c")).await.expect("create c");
    pvcs.delete("a", &Default::default()).await.expect("delete a");
    pvcs.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"note": "new"}}})),
    )
    .await
    .expect("annotate b");
    eventually(10, "live events", || {
        names(&reader) == ["b", "c"]
            && reader
                .get(&reflector::ObjectRef::new("b").within("default"))
                .and_then(|b| b.pvc().ok())
                .is_some_and(|b| b.annotations().get("note").map(String::as_str) == Some("new"))
    })
    .await;
    // Bookmarks every 200 ms: let a few pass too.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(errors.load(Ordering::SeqCst), 0, "the watch never failed");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_reconciles_with_server_side_apply_and_settles() {
    let server = ApiServer::start(Config::default()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client(&server, dir.path()).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for name in ["p1", "p2"] {
        pvcs.create(&PostParams::default(), &pvc(name)).await.expect("create");
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let reconcile = |obj: Arc<PersistentVolumeClaim>, ctx: Arc<(Api<PersistentVolumeClaim>, Arc<AtomicUsize>)>| async move {
        ctx.1.fetch_add(1, Ordering::SeqCst);
        let patch = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": obj.name_any(), "annotations": {"seen": "yes"}}});
        ctx.0
            .patch(
                &obj.name_any(),
                &PatchParams::apply("testkit").force(),
                &Patch::Apply(patch),
            )
            .await?;
        Ok::<_, kube::Error>(Action::await_change())
    };
    let controller = Controller::new(pvcs.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _: &kube::Error, _| Action::requeue(Duration::from_secs(1)),
            Arc::new((pvcs.clone(), runs.clone())),
        )
        .for_each(|_| async {});
    let task = tokio::spawn(controller);
    for name in ["p1", "p2"] {
        let api = pvcs.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let p = api.get(name).await.expect("get");
            if p.annotations().get("seen").map(String::as_str) == Some("yes") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} not reconciled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The apply changed each object once; the re-reconcile it triggers applies the same
    // configuration, which the server answers without a write, so everything settles.
    // Settled: no write for 500 ms (a hot apply loop would never get there within 10 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (mut rv, mut since) = (server.store().current_rv(), tokio::time::Instant::now());
    while since.elapsed() < Duration::from_millis(500) {
        assert!(tokio::time::Instant::now() < deadline, "writes never stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = server.store().current_rv();
        if now != rv {
            (rv, since) = (now, tokio::time::Instant::now());
        }
    }
    assert!(runs.load(Ordering::SeqCst) >= 2);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_update_is_a_conflict() {
    let server = ApiServer::start(Config::default()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client(&server, dir.path()).await, "default");
    let created = pvcs.create(&PostParams::default(), &pvc("x")).await.expect("create");
    let mut first = created.clone();
    first.metadata.labels = Some([("v".to_string(), "1".to_string())].into());
    pvcs.replace("x", &PostParams::default(), &first)
        .await
        .expect("first update");
    let mut stale = created;
    stale.metadata.labels = Some([("v".to_string(), "2".to_string())].into());
    match pvcs.replace("x", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
        }
        other => panic!("expected a 409 Conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_volsync_objects_pass_volsyncs_crd_schema() {
    use volsync_dr::model::volsync::{ReplicationDestination, ReplicationSource};
    use volsync_dr::plan::{self, Endpoint, InstanceSettings, Psk};

    let server = start_with_volsync(Config::default()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client(&server, dir.path()).await;
    let instance = InstanceSettings {
        cluster_name: Some("a".into()),
        peer_name: "b".into(),
        default_service_type: volsync_dr::model::volsync::ServiceType::NodePort,
        volume_snapshot_class: Some("snap".into()),
        destination_volume_snapshot_class: Some("snap".into()),
    };
    let mut source = pvc("db");
    source.metadata.namespace = Some("default".into());
    let p = plan::protect(
        &source,
        &instance,
        &Psk::from_random_bytes([1; 32]),
        Some(&Endpoint {
            address: "192.0.2.10".into(),
            port: 30100,
        }),
    )
    .expect("plan");
    let strict = PostParams {
        field_manager: Some("volsync-dr".into()),
        ..Default::default()
    };
    let rds: Api<ReplicationDestination> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicationSource> = Api::namespaced(client.clone(), "default");
    let rd = rds
        .create(&strict, &p.replication_destination)
        .await
        .expect("RD accepted by the CRD schema");
    let rs = rss
        .create(&strict, p.replication_source.as_ref().expect("rs"))
        .await
        .expect("RS accepted");
    assert_eq!(rd.spec, p.replication_destination.spec, "nothing pruned from the RD");
    assert_eq!(
        rs.spec,
        p.replication_source.as_ref().expect("rs").spec,
        "nothing pruned from the RS"
    );
    // Status written through the status subresource reads back typed.
    let status = json!({"status": {"rsyncTLS": {"address": "10.96.0.5"}, "lastSyncTime": "2026-11-24T10:00:00Z",
                                   "latestImage": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap-1"}}});
    let rd = rds
        .patch_status("rd-db", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("status");
    assert_eq!(rd.published_address(), Some("10.96.0.5"));
    assert_eq!(rd.latest_image().map(|i| i.name.as_str()), Some("snap-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_over_https() {
    let server = ApiServer::start(Config {
        tls: true,
        ..Config::default()
    })
    .await
    .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client(&server, dir.path()).await, "default");
    pvcs.create(&PostParams::default(), &pvc("secure"))
        .await
        .expect("create over HTTPS");
    let listed = pvcs.list(&Default::default()).await.expect("list over HTTPS");
    assert_eq!(listed.items.len(), 1);
}
