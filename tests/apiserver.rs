//! The test API server at the protocol level: Status errors, generateName, watch semantics
//! (selectors, bookmarks, initial events, 410 Gone), status subresource, server-side apply,
//! fault injection and outages, and the defaults a real API server fills in.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::apiserver::{ApiServer, Config, Fault};
use testkit::http::{Watch, request};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";
const WAIT: Duration = Duration::from_secs(5);

async fn server() -> ApiServer {
    ApiServer::start(Config {
        bookmark_interval: Duration::from_millis(100),
        history: 1000,
        tls: false,
    })
    .await
    .expect("server")
}

fn cm(name: &str, labels: Value) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_status_objects_with_real_reasons() {
    let s = server().await;
    let a = s.addr();
    let cms = "/api/v1/namespaces/default/configmaps";
    let created = request(a, "POST", cms, JSON, &cm("x", json!({}))).await;
    assert_eq!(created.status, 201);

    let cases: Vec<(u16, &str, testkit::http::Reply)> = vec![
        (
            404,
            "NotFound",
            request(a, "GET", &format!("{cms}/missing"), JSON, "").await,
        ),
        (
            409,
            "AlreadyExists",
            request(a, "POST", cms, JSON, &cm("x", json!({}))).await,
        ),
        (
            404,
            "NotFound",
            request(
                a,
                "POST",
                "/api/v1/namespaces/nope/configmaps",
                JSON,
                &cm("y", json!({})),
            )
            .await,
        ),
        (
            422,
            "Invalid",
            request(a, "POST", cms, JSON, &cm("Bad_Name", json!({}))).await,
        ),
        (409, "Conflict", {
            let mut stale = created.body.clone();
            stale["metadata"]["resourceVersion"] = json!("1");
            request(a, "PUT", &format!("{cms}/x"), JSON, &stale.to_string()).await
        }),
        (
            415,
            "UnsupportedMediaType",
            request(a, "PATCH", &format!("{cms}/x"), "application/xml", "<x/>").await,
        ),
        (
            422,
            "Invalid",
            request(a, "PATCH", &format!("{cms}/x"), APPLY, &cm("x", json!({}))).await,
        ),
        (
            404,
            "NotFound",
            request(a, "GET", "/apis/volsync.backube/v1alpha1/replicationsources", JSON, "").await,
        ),
    ];
    for (code, reason, reply) in cases {
        assert_eq!(reply.status, code, "{}", reply.body);
        assert_eq!(reply.body["kind"], "Status");
        assert_eq!(reply.body["status"], "Failure");
        assert_eq!(reply.body["code"], code);
        assert_eq!(reply.body["reason"], reason, "{}", reply.body);
        assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let missing = request(a, "GET", &format!("{cms}/missing"), JSON, "").await;
    assert_eq!(missing.body["message"], "configmaps \"missing\" not found");
    assert_eq!(missing.body["details"]["kind"], "configmaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_and_per_kind_defaults() {
    let s = server().await;
    let a = s.addr();
    let generated = request(
        a,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        JSON,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "job-"}}).to_string(),
    )
    .await;
    assert_eq!(generated.status, 201);
    let name = generated.body["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("job-") && name.len() == 9, "{name}");

    let secret = request(
        a,
        "POST",
        "/api/v1/namespaces/default/secrets",
        JSON,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"psk.txt": "id:00"}})
            .to_string(),
    )
    .await;
    assert_eq!(
        secret.body["data"]["psk.txt"], "aWQ6MDA=",
        "stringData is encoded into data"
    );
    assert!(secret.body.get("stringData").is_none());
    assert_eq!(secret.body["type"], "Opaque");

    let svc = request(
        a,
        "POST",
        "/api/v1/namespaces/default/services",
        JSON,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
                "spec": {"type": "NodePort", "ports": [{"port": 8000}]}})
        .to_string(),
    )
    .await;
    let node_port = svc.body["spec"]["ports"][0]["nodePort"].as_i64().expect("nodePort");
    assert!((30000..32768).contains(&node_port));
    assert!(
        svc.body["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    // An update that leaves allocations out keeps them.
    let mut update = svc.body.clone();
    update["spec"]["ports"] = json!([{"port": 8000}]);
    update["spec"].as_object_mut().expect("spec").remove("clusterIP");
    let updated = request(
        a,
        "PUT",
        "/api/v1/namespaces/default/services/np",
        JSON,
        &update.to_string(),
    )
    .await;
    assert_eq!(updated.body["spec"]["ports"][0]["nodePort"], node_port);
    assert_eq!(updated.body["spec"]["clusterIP"], svc.body["spec"]["clusterIP"]);

    let pvc = request(
        a,
        "POST",
        "/api/v1/namespaces/default/persistentvolumeclaims",
        JSON,
        &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                "status": {"phase": "Bound"}})
        .to_string(),
    )
    .await;
    assert_eq!(
        pvc.body["status"]["phase"], "Pending",
        "status is not taken from a create"
    );
    assert_eq!(pvc.body["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc.body["metadata"]["generation"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_and_generation() {
    let s = server().await;
    let a = s.addr();
    let path = "/apis/apps/v1/namespaces/default/deployments/web";
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let created = request(
        a,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        JSON,
        &deploy.to_string(),
    )
    .await;
    assert_eq!(created.body["spec"]["replicas"], 1, "replicas default to 1");
    // Status through the main resource is ignored; through /status it is taken, without a new generation.
    let main = request(a, "PATCH", path, MERGE, r#"{"status": {"replicas": 5}}"#).await;
    assert!(main.body["status"]["replicas"].is_null());
    let status = request(
        a,
        "PATCH",
        &format!("{path}/status"),
        MERGE,
        r#"{"status": {"replicas": 5}, "spec": {"replicas": 9}}"#,
    )
    .await;
    assert_eq!(status.body["status"]["replicas"], 5);
    assert_eq!(status.body["spec"]["replicas"], 1, "/status changes only status");
    assert_eq!(status.body["metadata"]["generation"], 1);
    let labelled = request(a, "PATCH", path, MERGE, r#"{"metadata": {"labels": {"x": "y"}}}"#).await;
    assert_eq!(
        labelled.body["metadata"]["generation"], 1,
        "metadata does not bump generation"
    );
    let scaled = request(a, "PATCH", path, MERGE, r#"{"spec": {"replicas": 2}}"#).await;
    assert_eq!(scaled.body["metadata"]["generation"], 2);
    // Scale subresource.
    let scale = request(a, "GET", &format!("{path}/scale"), JSON, "").await;
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["spec"]["replicas"], 2);
    assert_eq!(scale.body["status"]["selector"], "app=web");
    let rv = s.store().current_rv();
    let same = request(a, "PATCH", path, MERGE, r#"{"spec": {"replicas": 2}}"#).await;
    assert_eq!(same.status, 200);
    assert_eq!(s.store().current_rv(), rv, "a no-op patch writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_owns_what_it_applied() {
    let s = server().await;
    let a = s.addr();
    let path = "/api/v1/namespaces/default/configmaps/cfg?fieldManager=ctl";
    let first = request(a, "PATCH", path, APPLY, &cm("cfg", json!({"mine": "1", "also": "2"}))).await;
    assert_eq!(first.status, 201, "apply creates");
    // Another writer adds a label; the manager drops one of its own.
    request(
        a,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg",
        MERGE,
        r#"{"metadata": {"labels": {"theirs": "3"}}}"#,
    )
    .await;
    let second = request(a, "PATCH", path, APPLY, &cm("cfg", json!({"mine": "1"}))).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["metadata"]["labels"], json!({"mine": "1", "theirs": "3"}));
    let rv = s.store().current_rv();
    request(a, "PATCH", path, APPLY, &cm("cfg", json!({"mine": "1"}))).await;
    assert_eq!(
        s.store().current_rv(),
        rv,
        "re-applying the same configuration writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_semantics() {
    let s = server().await;
    let a = s.addr();
    let cms = "/api/v1/namespaces/default/configmaps";
    request(a, "POST", cms, JSON, &cm("before", json!({"app": "x"}))).await;
    let list = request(a, "GET", &format!("{cms}?labelSelector=app%3Dx"), JSON, "").await;
    assert_eq!(list.body["kind"], "ConfigMapList");
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    let rv = list.body["metadata"]["resourceVersion"]
        .as_str()
        .expect("list rv")
        .to_string();

    let mut w = Watch::open(
        a,
        &format!("{cms}?watch=true&resourceVersion={rv}&labelSelector=app%3Dx&allowWatchBookmarks=true"),
    )
    .await;
    request(a, "POST", cms, JSON, &cm("w", json!({"app": "x"}))).await;
    request(a, "POST", cms, JSON, &cm("other", json!({"app": "y"}))).await;
    let e = w.next_change(WAIT).await.expect("ADDED");
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("w"))
    );
    // Leaving the selector is a DELETED, entering it an ADDED.
    request(
        a,
        "PATCH",
        &format!("{cms}/w"),
        MERGE,
        r#"{"metadata": {"labels": {"app": "z"}}}"#,
    )
    .await;
    request(
        a,
        "PATCH",
        &format!("{cms}/other"),
        MERGE,
        r#"{"metadata": {"labels": {"app": "x"}}}"#,
    )
    .await;
    let left = w.next_change(WAIT).await.expect("DELETED");
    assert_eq!(
        (left["type"].as_str(), left["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("w"))
    );
    let entered = w.next_change(WAIT).await.expect("ADDED");
    assert_eq!(
        (entered["type"].as_str(), entered["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("other"))
    );
    let last_rv: u64 = entered["object"]["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("rv");
    // Bookmarks carry a resourceVersion no older than the last event seen.
    let bookmark = loop {
        let e = w.next(WAIT).await.expect("bookmark");
        if e["type"] == "BOOKMARK" {
            break e;
        }
    };
    let bookmark_rv: u64 = bookmark["object"]["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("rv");
    assert!(bookmark_rv >= last_rv);
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");

    // Initial events: ADDED for what exists, then a bookmark marking their end.
    let mut initial = Watch::open(a, &format!("{cms}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=app%3Dx")).await;
    let mut names = Vec::new();
    loop {
        let e = initial.next(WAIT).await.expect("initial event");
        if e["type"] == "BOOKMARK" {
            assert_eq!(
                e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
                "true"
            );
            break;
        }
        names.push(e["object"]["metadata"]["name"].as_str().unwrap_or("").to_string());
    }
    names.sort();
    assert_eq!(names, ["before", "other"]);

    // A resume point older than the history: an ERROR event carrying 410 Expired.
    s.store().compact();
    let mut expired = Watch::open(a, &format!("{cms}?watch=true&resourceVersion={rv}")).await;
    let e = expired.next(WAIT).await.expect("error event");
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert_eq!(s.stats().expired_watches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_outages_and_counts() {
    let s = server().await;
    let a = s.addr();
    let cms = "/api/v1/namespaces/default/configmaps";
    request(a, "POST", cms, JSON, &cm("c", json!({}))).await;
    s.reset_stats();
    s.inject(Fault {
        verb: Some("patch"),
        resource: Some("configmaps".into()),
        count: 2,
        code: 409,
    });
    for want in [409, 409, 200] {
        let r = request(a, "PATCH", &format!("{cms}/c"), MERGE, r#"{"data": {"k": "w"}}"#).await;
        assert_eq!(r.status, want);
    }
    let stats = s.stats();
    assert_eq!(stats.count("patch"), 3);
    assert_eq!(stats.writes(), 3);
    assert_eq!(stats.count("get"), 0);

    s.stop().await;
    assert!(
        tokio::net::TcpStream::connect(a).await.is_err(),
        "port closed while stopped"
    );
    s.restart().await.expect("restart");
    let back = request(a, "GET", &format!("{cms}/c"), JSON, "").await;
    assert_eq!(back.body["data"]["k"], "w", "objects survive an outage");

    // deletecollection by label.
    request(a, "POST", cms, JSON, &cm("l1", json!({"del": "yes"}))).await;
    request(a, "POST", cms, JSON, &cm("l2", json!({"del": "yes"}))).await;
    let deleted = request(a, "DELETE", &format!("{cms}?labelSelector=del%3Dyes"), JSON, "").await;
    assert_eq!(deleted.body["items"].as_array().map(Vec::len), Some(2));
    let left = request(a, "GET", cms, JSON, "").await;
    assert_eq!(left.body["items"].as_array().map(Vec::len), Some(1));
}
