//! High availability: two replicas on one cluster elect a leader on a Lease; only the leader
//! runs the watcher, both serve the webhook. A crashed leader is replaced soon after the lease
//! expires; a leader stopped with SIGTERM releases the Lease and exits cleanly.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::DrProcess;
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const LEASE_SECONDS: u64 = 4;

fn holder(pair: &ClusterPair) -> Option<String> {
    support::lease(pair, PRIMARY)?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

/// A time field of the Lease's spec, as Unix seconds.
fn lease_time(pair: &ClusterPair, field: &str) -> Option<f64> {
    let lease = support::lease(pair, PRIMARY)?;
    let t: chrono::DateTime<chrono::FixedOffset> =
        chrono::DateTime::parse_from_rfc3339(lease["spec"][field].as_str()?).ok()?;
    Some(t.timestamp_micros() as f64 / 1e6)
}

/// A PVC CREATE review as the API server sends it.
fn review(uid: &str) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
                    "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
                    "operation": "CREATE", "namespace": "default", "name": "p",
                    "userInfo": {}, "object": pvc("p")}})
}

fn pvc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": "default", "annotations": {"volsync-dr.io/protect": "true"}},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

async fn wait_protected(pair: &ClusterPair, name: &str, secs: u64) {
    pair.wait_for(secs, &format!("{name} Protected"), |p| {
        let a = p.object(PRIMARY, "persistentvolumeclaims", "default", name)?;
        (a["metadata"]["annotations"]["volsync-dr.io/state"] == "Protected").then_some(())
    })
    .await;
}

async fn metric(dr: &DrProcess, line: &str) -> bool {
    let reply = testkit::http::request(dr.admin, "GET", "/metrics", "text/plain", "").await;
    reply.body.as_str().unwrap_or("").lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_fails_over_within_the_lease_duration_and_hands_over_on_sigterm() {
    let pair = ClusterPair::start().await;
    let lease = LEASE_SECONDS.to_string();
    let extra = ["--lease-duration-seconds", lease.as_str()];
    let mut first = DrProcess::start_replica(&pair, PRIMARY, "replica-1", &extra).await;
    pair.wait_for(10, "replica-1 leads", |p| (holder(p)? == "replica-1").then_some(()))
        .await;
    let mut second = DrProcess::start_replica(&pair, PRIMARY, "replica-2", &extra).await;
    let _peer = DrProcess::start(&pair, SECONDARY, &[]).await;

    pair.create_bound_pvc(PRIMARY, pvc("before")).await;
    wait_protected(&pair, "before", 30).await;
    // Only the leader runs the watcher; both are ready (the second serves the webhook).
    assert!(metric(&first, "volsync_dr_leader 1").await);
    assert!(metric(&second, "volsync_dr_leader 0").await);
    assert!(
        !second
            .log_text()
            .contains("reconcile namespace=\"default\" name=\"before\"")
    );
    let reply = testkit::http::request(second.admin, "GET", "/readyz", "text/plain", "").await;
    assert_eq!(reply.status, 200);

    // The leader crashes: the other takes the Lease once it expires, and protects new PVCs.
    let crashed = Instant::now();
    first.kill().await;
    let last_renewal = lease_time(&pair, "renewTime").expect("the dead leader's last renewal");
    pair.wait_for(LEASE_SECONDS + 5, "replica-2 leads", |p| {
        (holder(p)? == "replica-2").then_some(())
    })
    .await;
    let takeover = crashed.elapsed();
    let acquired = lease_time(&pair, "acquireTime").expect("acquired");
    let after_expiry = (acquired - last_renewal) - Duration::from_secs(LEASE_SECONDS).as_secs_f64();
    eprintln!(
        "takeover after SIGKILL: {:.2} s; {:.2} s after the dead leader's lease expired (lease {LEASE_SECONDS} s)",
        takeover.as_secs_f64(),
        after_expiry
    );
    // The follower waits for the lease to expire (never takes a live one), then takes it within
    // kube-lease-manager's randomised back-off (under 1 s) and a round trip.
    assert!(
        after_expiry >= 0.0,
        "taken {after_expiry:.2} s before the lease expired"
    );
    assert!(after_expiry < 2.0, "taken {after_expiry:.2} s after the lease expired");
    assert!(
        takeover < Duration::from_secs(LEASE_SECONDS) + Duration::from_secs(2),
        "{takeover:?}"
    );
    pair.create_bound_pvc(PRIMARY, pvc("after-crash")).await;
    wait_protected(&pair, "after-crash", 30).await;
    assert!(metric(&second, "volsync_dr_leader 1").await);

    // The crashed replica comes back as a follower; then SIGTERM to the leader: it exits with
    // success and releases the Lease. The follower notices at its next look, which
    // kube-lease-manager schedules for the old expiry: within one lease duration.
    first.start_again().await;
    support::holds_for(
        Duration::from_millis(500),
        "the returning replica follows",
        || match holder(&pair) {
            Some(h) if h == "replica-2" => Ok(()),
            other => Err(format!("the Lease is held by {other:?}")),
        },
    )
    .await;
    let (ok, took) = second.terminate().await;
    assert!(ok, "exit status after SIGTERM; log:\n{}", second.log_text());
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    let log = second.log_text();
    assert!(log.contains("lease released"), "{log}");
    assert!(log.contains("volsync-dr stopped"), "{log}");
    let handed_over = Instant::now();
    pair.wait_for(LEASE_SECONDS, "replica-1 leads again", |p| {
        (holder(p)? == "replica-1").then_some(())
    })
    .await;
    eprintln!("takeover after SIGTERM: {:.2} s", handed_over.elapsed().as_secs_f64());
    pair.create_bound_pvc(PRIMARY, pvc("after-sigterm")).await;
    wait_protected(&pair, "after-sigterm", 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_webhook_and_the_watcher_cleanly() {
    let pair = ClusterPair::start().await;
    let mut dr = DrProcess::start(&pair, PRIMARY, &[]).await;
    let review = review("p");
    let addr = dr.webhook;
    let mut open = testkit::http::TlsConnection::open(addr, &dr.ca_pem, "127.0.0.1")
        .await
        .expect("handshake");
    let answered = open.request("POST", "/mutate-pvc", &review.to_string()).await;
    assert_eq!(answered.status, 200);
    let (ok, took) = dr.terminate().await;
    assert!(ok, "{}", dr.log_text());
    // An idle keep-alive connection does not hold the shutdown up to the 10 s drain limit.
    assert!(took < Duration::from_secs(5), "{took:?}");
    let log = dr.log_text();
    assert!(
        log.contains("shutting down") && log.contains("lease released") && log.contains("volsync-dr stopped"),
        "{log}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the webhook port is closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_request_in_flight_at_sigterm_is_answered() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let pair = ClusterPair::start().await;
    let mut dr = DrProcess::start(&pair, PRIMARY, &[]).await;
    let review = review("in-flight").to_string();
    let mut tls = testkit::http::tls_stream(dr.webhook, &dr.ca_pem, "127.0.0.1")
        .await
        .expect("handshake");
    // Headers and half the body, then SIGTERM: the request is in flight.
    let head = format!(
        "POST /mutate-pvc HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        review.len()
    );
    let (first, rest) = review.as_bytes().split_at(review.len() / 2);
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(first).await.expect("write");
    tls.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = dr.pid().expect("pid");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    dr.wait_log("shutting down", 1).await;
    // New connections are refused now (the listener closes just after that line); the one
    // in flight still gets its answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while testkit::http::TlsConnection::open(dr.webhook, &dr.ca_pem, "127.0.0.1")
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a new connection is still accepted 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tls.write_all(rest).await.expect("write the rest");
    tls.flush().await.expect("flush");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = tls.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&answer).contains("\"uid\":\"in-flight\"") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("\"uid\":\"in-flight\"") && text.contains("\"allowed\":true"),
        "{text}"
    );
    let (ok, _) = dr.terminate_wait().await;
    assert!(ok, "{}", dr.log_text());
}
