//! Real `volsync-dr run` processes against a pair of test clusters.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};
use tokio::process::{Child, Command};

pub struct DrProcess {
    pub cluster: String,
    pub admin: std::net::SocketAddr,
    pub webhook: std::net::SocketAddr,
    /// The CA (PEM) that signed the webhook's certificate.
    pub ca_pem: String,
    pub log: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    kubeconfig: PathBuf,
    /// Extra environment for the next starts (e.g. the crash-test hold hook).
    env: Vec<(String, String)>,
}

/// `volsync-dr certs` into `dir` (127.0.0.1 included); returns the CA's PEM.
pub fn generate_certs(dir: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .args([
            "certs",
            "--out-dir",
            dir.to_str().expect("path"),
            "--extra-name",
            "127.0.0.1",
        ])
        .output()
        .expect("volsync-dr certs");
    assert!(out.status.success(), "certs: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt")
}

/// A JSON merge patch on the PVC `default/<pvc>`, straight into a cluster's store.
pub fn patch_pvc(pair: &ClusterPair, cluster: &str, pvc: &str, body: serde_json::Value) {
    use testkit::apiserver::store::{PatchType, Subresource};
    let server = pair.server(cluster);
    let rt = server
        .store()
        .find_type("", "v1", "persistentvolumeclaims")
        .expect("pvc type");
    server
        .store()
        .patch(
            &rt,
            "default",
            pvc,
            PatchType::Merge,
            &body,
            Subresource::Main,
            &Default::default(),
        )
        .expect("patch PVC");
}

/// Set one annotation of the PVC `default/<pvc>` (as `kubectl annotate` would).
pub fn annotate(pair: &ClusterPair, cluster: &str, pvc: &str, key: &str, value: &str) {
    patch_pvc(
        pair,
        cluster,
        pvc,
        serde_json::json!({"metadata": {"annotations": {key: value}}}),
    );
}

/// Wait (30 s at most) until `rd-<pvc>` on the secondary has a `latestImage`: a sync completed.
pub async fn wait_latest_image(pair: &ClusterPair, pvc: &str) {
    pair.wait_for(30, "a completed sync (latestImage) on the secondary", |p| {
        let rd = p.object(SECONDARY, "replicationdestinations", "default", &format!("rd-{pvc}"))?;
        rd["status"]["latestImage"]["name"].as_str().map(|_| ())
    })
    .await;
}

/// An annotation of the PVC `default/<pvc>` on a cluster of the pair.
pub fn annotation(pair: &ClusterPair, cluster: &str, pvc: &str, key: &str) -> Option<String> {
    pair.object(cluster, "persistentvolumeclaims", "default", pvc)?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// The Events (events.k8s.io) in `default` on a cluster of the pair, with this reason.
pub fn events(pair: &ClusterPair, cluster: &str, reason: &str) -> Vec<serde_json::Value> {
    let server = pair.server(cluster);
    let Some(rt) = server.store().find_type("events.k8s.io", "v1", "events") else {
        return Vec::new();
    };
    let (items, _) = server
        .store()
        .list(&rt, Some("default"), &Default::default(), &Default::default());
    items.into_iter().filter(|e| e["reason"] == reason).collect()
}

/// How many Events in `default` on a cluster of the pair have this reason.
pub fn events_with_reason(pair: &ClusterPair, cluster: &str, reason: &str) -> usize {
    events(pair, cluster, reason).len()
}

/// How many times Events with `reason` were said on `cluster` (an Event repeated is one object
/// whose series counts it).
pub fn events_said(pair: &ClusterPair, cluster: &str, reason: &str) -> u64 {
    events(pair, cluster, reason)
        .iter()
        .map(|e| e["series"]["count"].as_u64().unwrap_or(1))
        .sum()
}

async fn metrics_text(process: &DrProcess) -> String {
    let response = testkit::http::request(process.admin, "GET", "/metrics", "text/plain", "").await;
    response.body.as_str().unwrap_or_default().to_string()
}

/// Whether the process's `/metrics` has exactly this line.
pub async fn metric(process: &DrProcess, line: &str) -> bool {
    metrics_text(process).await.lines().any(|l| l == line)
}

/// The value of the series `series` (name and labels as printed) on the process's `/metrics`.
pub async fn metric_value(process: &DrProcess, series: &str) -> Option<f64> {
    let text = metrics_text(process).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A Deployment `name` in `default` whose pods mount the PVC `pvc`.
pub fn deployment(name: &str, pvc: &str, replicas: i32, annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "busybox"}],
                                       "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc}}]}}}
    })
}

/// A Deployment's `spec.replicas` and its `volsync-dr.io/replicas` annotation.
pub fn replicas(pair: &ClusterPair, cluster: &str, name: &str) -> (i64, Option<String>) {
    let d = pair
        .object(cluster, "deployments", "default", name)
        .unwrap_or_else(|| panic!("no Deployment {name} on {cluster}"));
    (
        d["spec"]["replicas"].as_i64().unwrap_or(-1),
        d["metadata"]["annotations"]["volsync-dr.io/replicas"]
            .as_str()
            .map(str::to_string),
    )
}

/// Wait (30 s at most) until that annotation has the value `want`.
pub async fn wait_annotation(pair: &ClusterPair, cluster: &str, pvc: &str, key: &str, want: &str) {
    pair.wait_for(30, &format!("{cluster}/{pvc} {key}={want}"), |p| {
        (annotation(p, cluster, pvc, key).as_deref() == Some(want)).then_some(())
    })
    .await;
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl DrProcess {
    /// Start `volsync-dr run` for `cluster` of the pair, its peer being the other one.
    pub async fn start(pair: &ClusterPair, cluster: &str, extra: &[&str]) -> DrProcess {
        Self::start_as(pair, cluster, cluster, extra).await
    }

    /// One of several replicas on `cluster`: its own log and its own identity in the Lease.
    pub async fn start_replica(pair: &ClusterPair, cluster: &str, replica: &str, extra: &[&str]) -> DrProcess {
        Self::start_as(pair, cluster, replica, extra).await
    }

    /// `name` is the log's name and the identity in the Lease; a restart keeps it, as a
    /// container restarted in its pod keeps the pod's name (and so takes its Lease back at once).
    async fn start_as(pair: &ClusterPair, cluster: &str, name: &str, extra: &[&str]) -> DrProcess {
        let peer = if cluster == PRIMARY { SECONDARY } else { PRIMARY };
        let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let webhook: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let certs = pair.dir.path().join(format!("certs-{cluster}"));
        generate_certs(&certs);
        let mut args: Vec<String> = [
            "run",
            "--cluster-name",
            cluster,
            "--peer-name",
            peer,
            "--peer-kubeconfig",
            pair.kubeconfig(peer).to_str().expect("path"),
            "--admin-addr",
            &admin.to_string(),
            "--webhook-addr",
            &webhook.to_string(),
            "--tls-cert-file",
            certs.join("tls.crt").to_str().expect("path"),
            "--tls-key-file",
            certs.join("tls.key").to_str().expect("path"),
            "--peer-timeout-seconds",
            "2",
            "--resync-seconds",
            "30",
            "--pod-name",
            name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut p = DrProcess {
            cluster: cluster.to_string(),
            admin,
            webhook,
            ca_pem: std::fs::read_to_string(certs.join("ca.crt")).expect("ca.crt"),
            log: pair.dir.path().join(format!("volsync-dr-{name}.log")),
            child: None,
            args,
            kubeconfig: pair.kubeconfig(cluster),
            env: Vec::new(),
        };
        p.spawn().await;
        p
    }

    /// Start the process and wait until it is ready. A port picked free can be taken by
    /// another test's process before this one binds it: then it starts again on new ports
    /// (five tries).
    async fn spawn(&mut self) {
        for _ in 0..5 {
            let logged_before = self.log_text().len();
            self.spawn_once();
            if self.ready_or_exited().await {
                return;
            }
            let said = self.log_text()[logged_before..].to_string();
            assert!(
                said.contains("Address already in use"),
                "volsync-dr on {} exited at start:\n{said}",
                self.cluster
            );
            self.admin = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            self.webhook = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let (admin, webhook) = (self.admin.to_string(), self.webhook.to_string());
            for i in 1..self.args.len() {
                match self.args[i - 1].as_str() {
                    "--admin-addr" => self.args[i] = admin.clone(),
                    "--webhook-addr" => self.args[i] = webhook.clone(),
                    _ => {}
                }
            }
        }
        panic!("volsync-dr on {} found no free ports in five tries", self.cluster);
    }

    /// Whether it became ready (true) or exited first (false); 30 s at most.
    async fn ready_or_exited(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            if tokio::net::TcpStream::connect(self.admin).await.is_ok() {
                let reply = testkit::http::request(self.admin, "GET", "/readyz", "text/plain", "").await;
                if reply.status == 200 {
                    return true;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "volsync-dr on {} not ready; log:\n{}",
                self.cluster,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn spawn_once(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        // A profiler around the process, for benches (e.g. `heaptrack -o /tmp/ht`).
        let wrap: Vec<String> = std::env::var("VOLSYNC_DR_BENCH_WRAP")
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_volsync-dr"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_volsync-dr")),
        };
        let child = command
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,volsync_dr=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start volsync-dr");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up, as a crash.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill");
        }
    }

    /// SIGTERM, as the kubelet stops a pod; returns whether it exited with success and how
    /// long that took (at most 30 s, else the test fails).
    pub async fn terminate(&mut self) -> (bool, Duration) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid");
        let started = tokio::time::Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "volsync-dr did not stop within 30 s of SIGTERM; log:\n{}",
                    self.log_text()
                )
            })
            .expect("wait");
        (status.success(), started.elapsed())
    }

    /// Wait (30 s at most) for a process already sent a signal to exit; whether it succeeded.
    pub async fn terminate_wait(&mut self) -> (bool, Duration) {
        let mut child = self.child.take().expect("running");
        let started = tokio::time::Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap_or_else(|_| panic!("volsync-dr did not stop within 30 s; log:\n{}", self.log_text()))
            .expect("wait");
        (status.success(), started.elapsed())
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// Kill, then start again with exactly this extra environment.
    pub async fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.restart().await;
    }

    /// Start again after `kill` (or when the cluster it runs in comes back).
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// Wait (60 s at most) until the log has said `needle` at least `count` times.
    pub async fn wait_log(&self, needle: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self.log_text().matches(needle).count() >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "volsync-dr on {} never logged {needle:?} {count} times; log tail:\n{}",
                self.cluster,
                self.log_text().lines().rev().take(30).collect::<Vec<_>>().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Resident and peak resident memory of the process, in KiB, from /proc.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DrProcess {
    fn drop(&mut self) {
        // A failing test shows what the process said.
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- last lines of volsync-dr on {} ---", self.cluster);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The MutatingWebhookConfiguration from `deploy/webhook/base` (rendered with the installed
/// kubectl's kustomize), with `dr`'s CA as caBundle; the webhook Service routed to `dr`.
/// Returns the configuration, applied to the primary.
pub async fn install_webhook(pair: &ClusterPair, dr: &DrProcess) -> serde_json::Value {
    install_webhook_on(pair, PRIMARY, dr).await
}

/// `install_webhook` on `cluster`.
pub async fn install_webhook_on(pair: &ClusterPair, cluster: &str, dr: &DrProcess) -> serde_json::Value {
    use base64::Engine as _;
    pair.server(cluster)
        .route_service("volsync-dr", "volsync-dr-webhook", 443, dr.webhook);
    let k = testkit::kubectl::Kubectl::new(pair.kubeconfig(cluster));
    let rendered = k
        .ok(&["kustomize", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/webhook/base")])
        .await;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rendered).expect("yaml");
    let mut mwc = docs
        .into_iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .expect("MWC in deploy/");
    mwc["webhooks"][0]["clientConfig"]["caBundle"] =
        serde_json::json!(base64::engine::general_purpose::STANDARD.encode(&dr.ca_pem));
    let out = k.run_with_stdin(&["apply", "-f", "-"], &mwc.to_string()).await;
    assert!(out.success, "{}", out.stderr);
    mwc
}

/// Absence can only be seen over a window: check every 50 ms for `window` that `check` holds
/// (it returns what was wrong otherwise), and fail at the first time it does not.
pub async fn holds_for(window: Duration, what: &str, check: impl Fn() -> Result<(), String>) {
    let deadline = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < deadline {
        if let Err(wrong) = check() {
            panic!("{what}: {wrong}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until no request reaches either server for `quiet`, at most `limit`.
pub async fn settle(pair: &ClusterPair, quiet: Duration, limit: Duration) {
    let total = |p: &ClusterPair| -> u64 {
        [&p.a, &p.b]
            .iter()
            .map(|s| s.stats().by_verb_resource.values().sum::<u64>())
            .sum()
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = total(pair);
    let mut since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = total(pair);
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// The leader-election Lease on `cluster`, as stored.
pub fn lease(pair: &ClusterPair, cluster: &str) -> Option<serde_json::Value> {
    pair.object(cluster, "leases", "volsync-dr", "volsync-dr")
}

/// `kubernetes-validate --strict` against the Kubernetes 1.32 schemas (unknown fields refused):
/// whether it passed, and everything it printed.
pub fn kubernetes_validate<P: AsRef<std::ffi::OsStr>>(files: &[P]) -> (bool, String) {
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.32.0"])
        .args(files)
        .output()
        .expect("kubernetes-validate is needed: pip install -r tests/requirements.txt");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
