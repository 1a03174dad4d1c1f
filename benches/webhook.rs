//! AdmissionReview round trips over TLS: the real webhook vs. a baseline handler on the same
//! server stack (axum-server + rustls) that returns a fixed allowed response. Closed loop at a
//! fixed concurrency (throughput, p50/p99), then open loop at 500 requests/second (p99, from the
//! scheduled send time, so queueing counts).
//!
//! `cargo bench --bench webhook`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use serde_json::json;
use testkit::http::TlsConnection;
use volsync_dr::admission::{AdmissionState, decide::AdmissionDefaults, router};
use volsync_dr::metrics::Metrics;
use volsync_dr::model::volsync::ServiceType;
use volsync_dr::server::{tls, webhook};

const CONCURRENCY: usize = 8;
const CLOSED_LOOP: Duration = Duration::from_secs(8);
const OPEN_LOOP_RATE: u64 = 500;
const OPEN_LOOP: Duration = Duration::from_secs(10);

fn body() -> String {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
        "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
        "name": "data", "namespace": "apps", "operation": "CREATE", "userInfo": {"username": "admin"},
        "object": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "data", "namespace": "apps", "labels": {"app": "db"},
                                "annotations": {"volsync-dr.io/protect": "true", "volsync-dr.io/schedule": "0 * * * *"}},
                   "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                            "resources": {"requests": {"storage": "10Gi"}}}},
        "oldObject": null, "dryRun": false}})
    .to_string()
}

async fn start(router: Router, tls_config: axum_server::tls_rustls::RustlsConfig) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Err(e) = webhook::serve(listener, tls_config, router, axum_server::Handle::new()).await {
            eprintln!("server: {e}");
        }
    });
    addr
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Closed loop: `CONCURRENCY` connections, each sending the next request when the last returns.
async fn closed_loop(addr: SocketAddr, ca: &str, body: &str) -> (f64, Vec<Duration>) {
    let deadline = Instant::now() + CLOSED_LOOP;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (ca, body) = (ca.to_string(), body.to_string());
        tasks.push(tokio::spawn(async move {
            let mut conn = TlsConnection::open(addr, &ca, "127.0.0.1").await.expect("connect");
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, _) = conn.request_raw("POST", "/mutate-pvc", &body).await;
                assert_eq!(status, 200);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all.sort();
    (all.len() as f64 / CLOSED_LOOP.as_secs_f64(), all)
}

/// Open loop: one request every 1/rate seconds, spread over a pool of connections; latency is
/// measured from when the request was due.
async fn open_loop(addr: SocketAddr, ca: &str, body: &str) -> Vec<Duration> {
    let (tx, rx) = async_channel();
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (ca, body, rx) = (ca.to_string(), body.to_string(), rx.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = TlsConnection::open(addr, &ca, "127.0.0.1").await.expect("connect");
            let mut latencies = Vec::new();
            while let Ok(due) = rx.recv().await {
                let (status, _) = conn.request_raw("POST", "/mutate-pvc", &body).await;
                assert_eq!(status, 200);
                latencies.push(due.elapsed());
            }
            latencies
        }));
    }
    let start = Instant::now();
    let total = OPEN_LOOP_RATE * OPEN_LOOP.as_secs();
    for i in 0..total {
        let due = start + Duration::from_micros(i * 1_000_000 / OPEN_LOOP_RATE);
        tokio::time::sleep_until(due.into()).await;
        if tx.send(due).await.is_err() {
            break;
        }
    }
    drop(tx);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    all.sort();
    all
}

/// A multi-consumer queue of due times (tokio's mpsc receiver shared behind a mutex).
fn async_channel() -> (tokio::sync::mpsc::Sender<Instant>, SharedReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    (tx, SharedReceiver(Arc::new(tokio::sync::Mutex::new(rx))))
}

#[derive(Clone)]
struct SharedReceiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Instant>>>);

impl SharedReceiver {
    async fn recv(&self) -> Result<Instant, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = volsync_dr::cmd::certs::generate(vec!["127.0.0.1".into()], 1).expect("certs");
        std::fs::write(dir.path().join("tls.crt"), &generated.cert_pem).expect("write");
        std::fs::write(dir.path().join("tls.key"), &generated.key_pem).expect("write");
        let files = tls::TlsFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
        let tls_config = axum_server::tls_rustls::RustlsConfig::from_config(tls::load(&files).expect("tls"));
        let state = Arc::new(AdmissionState {
            defaults: AdmissionDefaults { service_type: ServiceType::ClusterIP },
            metrics: Arc::new(Metrics::new()),
            policies: None,
            groups: None,
        });
        let real = start(router(state), tls_config.clone()).await;
        let fixed = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;
        let baseline_router = Router::new().route(
            "/mutate-pvc",
            post(move |_body: axum::body::Bytes| async move { ([("content-type", "application/json")], fixed) }),
        );
        let baseline = start(baseline_router, tls_config).await;
        let body = body();
        let ca = generated.ca_pem.clone();

        println!("| handler | closed loop ({CONCURRENCY} connections): req/s | p50 ms | p99 ms | open loop {OPEN_LOOP_RATE} req/s: p50 ms | p99 ms |");
        println!("|---|---|---|---|---|---|");
        let mut rps = Vec::new();
        for (name, addr) in [("baseline (fixed response)", baseline), ("volsync-dr webhook", real)] {
            // Warm up connections and code paths.
            let _ = closed_loop_short(addr, &ca, &body).await;
            let (throughput, closed) = closed_loop(addr, &ca, &body).await;
            let open = open_loop(addr, &ca, &body).await;
            println!(
                "| {name} | {throughput:.0} | {:.3} | {:.3} | {:.3} | {:.3} |",
                percentile(&closed, 0.5),
                percentile(&closed, 0.99),
                percentile(&open, 0.5),
                percentile(&open, 0.99)
            );
            rps.push(throughput);
        }
        println!("\nwebhook throughput / baseline throughput = {:.2}", rps[1] / rps[0]);
        // The handler alone: CPU per review without TLS, HTTP or the load generator.
        let state = AdmissionState {
            defaults: AdmissionDefaults { service_type: ServiceType::ClusterIP },
            metrics: Arc::new(Metrics::new()),
            policies: None,
            groups: None,
        };
        let bytes = body.as_bytes();
        let runs = 20_000;
        let t = Instant::now();
        for _ in 0..runs {
            let (response, _) = volsync_dr::admission::review::review(&state, bytes).expect("review");
            std::hint::black_box(serde_json::to_vec(&response.into_review()).expect("encode"));
        }
        println!("handler alone (decode, decide, patch, encode): {:.1} µs per review", t.elapsed().as_secs_f64() * 1e6 / runs as f64);
    });
}

async fn closed_loop_short(addr: SocketAddr, ca: &str, body: &str) -> usize {
    let mut conn = TlsConnection::open(addr, ca, "127.0.0.1").await.expect("connect");
    for _ in 0..200 {
        let (status, reply) = conn.request_raw("POST", "/mutate-pvc", body).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    }
    200
}
