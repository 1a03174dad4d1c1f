//! The admission webhook: the router driven in-process on AdmissionReviews (allow, patch, deny,
//! other kinds, malformed bodies, dry run), and the real process over HTTPS with its
//! certificate rotated on disk.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use serde_json::{Value, json};
use support::DrProcess;
use testkit::http::TlsConnection;
use testkit::pair::{ClusterPair, PRIMARY};
use tower::ServiceExt;
use volsync_dr::admission::{AdmissionState, GroupReader, decide::AdmissionDefaults, router};
use volsync_dr::metrics::Metrics;
use volsync_dr::model::volsync::ServiceType;

fn review(operation: &str, object: Value, old: Option<Value>, dry_run: bool) -> Value {
    let kind = object["kind"].as_str().unwrap_or("PersistentVolumeClaim").to_string();
    let resource = if kind == "PersistentVolumeClaim" {
        "persistentvolumeclaims"
    } else {
        "configmaps"
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": resource},
        "requestKind": {"group": "", "version": "v1", "kind": kind},
        "requestResource": {"group": "", "version": "v1", "resource": resource},
        "name": object["metadata"]["name"], "namespace": "apps", "operation": operation,
        "userInfo": {"username": "admin"}, "object": object, "oldObject": old, "dryRun": dry_run, "options": {}
    }})
}

fn pvc(annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "data", "namespace": "apps", "annotations": annotations},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

async fn call(body: String) -> (u16, Value, String) {
    call_with(body, None).await
}

async fn call_with(body: String, groups: Option<Arc<dyn GroupReader>>) -> (u16, Value, String) {
    let state = Arc::new(AdmissionState {
        defaults: AdmissionDefaults {
            service_type: ServiceType::ClusterIP,
        },
        metrics: Arc::new(Metrics::new()),
        policies: None,
        groups,
    });
    let response = router(state)
        .oneshot(
            Request::post("/mutate-pvc")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
        .expect("router");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

fn applied_patch(object: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    // Go decodes a []byte from a base64 string or from an array of numbers; kube sends the latter.
    let patch: Vec<u8> = match &response["patch"] {
        Value::String(b64) => base64::engine::general_purpose::STANDARD.decode(b64).expect("base64"),
        Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().expect("byte") as u8).collect(),
        other => panic!("no patch: {other}"),
    };
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("json patch");
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).expect("the patch applies to the request's object");
    patched
}

#[tokio::test]
async fn protected_pvc_gets_label_finalizer_and_explicit_defaults() {
    for dry_run in [false, true] {
        let object = pvc(json!({"volsync-dr.io/protect": "true", "volsync-dr.io/schedule": "@hourly"}));
        let (status, body, _) = call(review("CREATE", object.clone(), None, dry_run).to_string()).await;
        assert_eq!(status, 200);
        let r = &body["response"];
        assert_eq!(
            r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002",
            "the response answers the request"
        );
        assert_eq!(r["allowed"], true);
        let patched = applied_patch(&object, r);
        assert_eq!(patched["metadata"]["labels"]["volsync-dr.io/protected"], "true");
        assert_eq!(patched["metadata"]["finalizers"], json!(["volsync-dr.io/protection"]));
        let a = &patched["metadata"]["annotations"];
        assert_eq!(a["volsync-dr.io/schedule"], "@hourly", "the user's value is kept");
        assert_eq!(a["volsync-dr.io/copy-method"], "Snapshot");
        assert_eq!(a["volsync-dr.io/service-type"], "ClusterIP");
        assert_eq!(patched["spec"], object["spec"], "nothing else changes");
        // Admitting the patched object again changes nothing: idempotent, no patch.
        let (_, again, _) = call(review("UPDATE", patched.clone(), Some(patched), dry_run).to_string()).await;
        assert_eq!(again["response"]["allowed"], true);
        assert!(again["response"].get("patch").is_none(), "{}", again["response"]);
    }
}

#[tokio::test]
async fn bad_annotations_and_refused_actions_are_denied_with_the_reason() {
    let cases = [
        (
            pvc(json!({"volsync-dr.io/schedule": "0 */5 * * * *"})),
            None,
            "volsync-dr.io/schedule=\"0 */5 * * * *\" is invalid",
        ),
        (
            pvc(json!({"volsync-dr.io/service-type": "Ingress"})),
            None,
            "accepted: ClusterIP, LoadBalancer or NodePort",
        ),
        (
            pvc(json!({"volsync-dr.io/protect": "true", "volsync-dr.io/action": "reboot"})),
            None,
            "unknown verb \"reboot\"",
        ),
        (
            pvc(json!({"volsync-dr.io/protect": "true", "volsync-dr.io/action": "failover"})),
            None,
            "failover runs on the secondary",
        ),
        (
            pvc(
                json!({"volsync-dr.io/protect": "true", "volsync-dr.io/action": "migrate:2", "volsync-dr.io/action-phase": "Running"}),
            ),
            Some(pvc(
                json!({"volsync-dr.io/protect": "true", "volsync-dr.io/action": "migrate:1", "volsync-dr.io/action-phase": "Running"}),
            )),
            "is still running",
        ),
    ];
    for (object, old, want) in cases {
        let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
        let (status, body, _) = call(review(operation, object, old, false).to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], false);
        let message = body["response"]["status"]["message"].as_str().unwrap_or("");
        assert!(message.contains(want), "{want} in {message}");
        assert!(body["response"].get("patch").is_none());
    }
}

#[tokio::test]
async fn other_kinds_operations_and_malformed_bodies() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"volsync-dr.io/schedule": "bad"}}});
    let (status, body, _) = call(review("CREATE", cm, None, false).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    let bad_pvc = pvc(json!({"volsync-dr.io/schedule": "bad"}));
    let (_, body, _) = call(review("DELETE", bad_pvc.clone(), Some(bad_pvc), false).to_string()).await;
    assert_eq!(body["response"]["allowed"], true, "DELETE is not judged");
    for (body, want) in [
        ("not json".to_string(), "not an admission.k8s.io/v1 AdmissionReview"),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
            "no request",
        ),
        (json!({"request": 5}).to_string(), "AdmissionReview"),
    ] {
        let (status, _, text) = call(body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(want), "{want} in {text}");
    }
}

/// The name on the webhook's certificate, from a handshake that trusts `ca`.
async fn handshake(addr: std::net::SocketAddr, ca: &str) -> Result<TlsConnection, testkit::http::TlsConnectError> {
    TlsConnection::open(addr, ca, "127.0.0.1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_process_serves_over_tls_and_reloads_a_rotated_certificate() {
    let pair = ClusterPair::start().await;
    let dr = DrProcess::start(&pair, PRIMARY, &["--tls-reload-seconds", "1"]).await;
    let old_ca = dr.ca_pem.clone();
    let mut open = handshake(dr.webhook, &old_ca)
        .await
        .expect("handshake with the first certificate");
    let body = review("CREATE", pvc(json!({"volsync-dr.io/protect": "true"})), None, false).to_string();
    let first = open.request("POST", "/mutate-pvc", &body).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["response"]["allowed"], true);

    // Rotate: new CA and certificate written over the files, as a Secret volume would.
    let certs = pair.dir.path().join(format!("certs-{PRIMARY}"));
    let new_ca = support::generate_certs(&certs);
    assert_ne!(new_ca, old_ca);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if handshake(dr.webhook, &new_ca).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new certificate not served after 20s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        handshake(dr.webhook, &old_ca).await.is_err(),
        "new handshakes no longer get the old certificate"
    );
    // The connection opened before the rotation still works: nothing in flight is dropped.
    let after = open.request("POST", "/mutate-pvc", &body).await;
    assert_eq!(after.status, 200);

    // A half-written pair (a key that does not match) is not loaded: the good one keeps serving.
    let stray = tempfile::tempdir().expect("tempdir");
    support::generate_certs(stray.path());
    std::fs::copy(stray.path().join("tls.key"), certs.join("tls.key")).expect("replace key only");
    // The reload looks every second: once it has seen (and reported) the bad pair…
    dr.wait_log("keeping the current one", 1).await;
    assert!(
        handshake(dr.webhook, &new_ca).await.is_ok(),
        "still serving the last good pair"
    );

    // Metrics count the reviews.
    let metrics = testkit::http::request(dr.admin, "GET", "/metrics", "text/plain", "").await;
    let text = metrics.body.as_str().unwrap_or("").to_string();
    assert!(
        text.contains("volsync_dr_admission_requests_total{result=\"patched\"} 2"),
        "{text}"
    );
    assert!(text.contains("volsync_dr_admission_duration_seconds_count 2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_webhook_configuration_admits_kubectl_requests() {
    use testkit::kubectl::Kubectl;
    use testkit::pair::SECONDARY;
    let pair = ClusterPair::start().await;
    let mut dr = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _peer = DrProcess::start(&pair, SECONDARY, &[]).await;
    let k = Kubectl::new(pair.kubeconfig(PRIMARY));
    // The configuration in deploy/, with this test's CA as caBundle.
    let mwc = support::install_webhook(&pair, &dr).await;
    assert_eq!(mwc["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(mwc["webhooks"][0]["sideEffects"], "None");
    assert!(mwc["webhooks"][0]["timeoutSeconds"].as_u64().is_some_and(|t| t <= 5));

    let pvc_yaml = |name: &str, protect: bool| {
        let annotations = if protect {
            json!({"volsync-dr.io/protect": "true"})
        } else {
            json!({})
        };
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name, "namespace": "default", "annotations": annotations},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        .to_string()
    };
    let out = k.run_with_stdin(&["apply", "-f", "-"], &pvc_yaml("web", false)).await;
    assert!(out.success, "{}", out.stderr);

    // A bad schedule is refused at admission, with the message naming it.
    let refused = k
        .run(&["annotate", "pvc", "web", "volsync-dr.io/schedule=0 */5 * * * *"])
        .await;
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("admission webhook \"pvc.volsync-dr.io\" denied the request"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("volsync-dr.io/schedule=\"0 */5 * * * *\" is invalid"),
        "{}",
        refused.stderr
    );

    // A good one comes back from the API server already stamped: that is the webhook's doing.
    let admitted = k
        .ok(&["annotate", "pvc", "web", "volsync-dr.io/protect=true", "-o", "json"])
        .await;
    let admitted: Value = serde_json::from_str(&admitted).expect("json");
    assert_eq!(
        admitted["metadata"]["labels"]["volsync-dr.io/protected"], "true",
        "{admitted}"
    );
    assert_eq!(admitted["metadata"]["finalizers"], json!(["volsync-dr.io/protection"]));
    assert_eq!(
        admitted["metadata"]["annotations"]["volsync-dr.io/schedule"],
        "*/10 * * * *"
    );
    assert_eq!(
        admitted["metadata"]["annotations"]["volsync-dr.io/copy-method"],
        "Snapshot"
    );

    // The webhook down: PVCs are still admitted (failurePolicy Ignore) and the watcher, back,
    // protects what the webhook missed.
    dr.kill().await;
    let out = k.run_with_stdin(&["apply", "-f", "-"], &pvc_yaml("late", true)).await;
    assert!(out.success, "a webhook outage must not block PVCs: {}", out.stderr);
    let late: Value = serde_json::from_str(&k.ok(&["get", "pvc", "late", "-o", "json"]).await).expect("json");
    assert!(
        late["metadata"]["labels"].get("volsync-dr.io/protected").is_none(),
        "no webhook, no stamp yet"
    );
    dr.restart().await;
    pair.wait_for(30, "late PVC protected by the watcher", |p| {
        let pvc = p.object(PRIMARY, "persistentvolumeclaims", "default", "late")?;
        let stamped = pvc["metadata"]["finalizers"] == json!(["volsync-dr.io/protection"])
            && pvc["metadata"]["labels"]["volsync-dr.io/protected"] == "true"
            && pvc["metadata"]["annotations"]["volsync-dr.io/state"] == "Protected";
        stamped.then_some(())
    })
    .await;
}

/// The namespace `apps` as a reader would find it: `data` and `logs` both mounted by the
/// Deployment `app`, `logs` not protected. Counts its reads.
struct AppsNamespace {
    reads: std::sync::atomic::AtomicUsize,
}

impl GroupReader for AppsNamespace {
    fn read<'a>(
        &'a self,
        namespace: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<volsync_dr::model::group::GroupFacts, String>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(namespace, "apps");
        let app: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
            "metadata": {"name": "app", "namespace": "apps"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [], "volumes": [
                {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "b", "persistentVolumeClaim": {"claimName": "logs"}}]}}}
        }))
        .expect("deployment");
        let member = |name: &str| volsync_dr::model::group::Member {
            name: name.into(),
            group: None,
        };
        Box::pin(async move {
            Ok(volsync_dr::model::group::GroupFacts {
                pvcs: vec![member("data"), member("logs")],
                unprotected: ["logs".to_string()].into(),
                workloads: vec![volsync_dr::model::workload::Claims::of_deployment(&app)],
            })
        })
    }
}

#[tokio::test]
async fn a_request_whose_application_has_an_unprotected_volume_is_denied_naming_it() {
    let reader = Arc::new(AppsNamespace {
        reads: Default::default(),
    });
    let protected = pvc(json!({"volsync-dr.io/protect": "true"}));
    let asked = pvc(json!({"volsync-dr.io/protect": "true", "volsync-dr.io/action": "migrate:1"}));
    let body = review("UPDATE", asked.clone(), Some(protected.clone()), false).to_string();
    let (status, body, _) = call_with(body, Some(reader.clone())).await;
    assert_eq!(status, 200);
    let r = &body["response"];
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("PVC logs is used by the same application") && message.contains("volsync-dr.io/protect=true"),
        "{message}"
    );
    // Other updates never read the namespace: the fast path stays a cache-only path.
    let reads = reader.reads.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(reads, 1);
    let unchanged = review("UPDATE", asked.clone(), Some(asked), false).to_string();
    let (_, body, _) = call_with(unchanged, Some(reader.clone())).await;
    assert_eq!(body["response"]["allowed"], true, "the same request seen again");
    let created = review("CREATE", protected, None, false).to_string();
    let (_, body, _) = call_with(created, Some(reader.clone())).await;
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(reader.reads.load(std::sync::atomic::Ordering::SeqCst), reads);
}
