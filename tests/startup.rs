//! Every way `volsync-dr run` can fail to start: it exits non-zero at once with one line that
//! names what is wrong and what to do, never a debug dump. One case per row.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{free_port, generate_certs};
use testkit::apiserver::{ApiServer, Config};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

/// How one start is set up: the base is a healthy start on cluster-a of the pair.
struct Start {
    kubeconfig: PathBuf,
    args: Vec<String>,
}

impl Start {
    fn healthy(pair: &ClusterPair, certs: &Path) -> Start {
        let args = [
            "run",
            "--cluster-name",
            PRIMARY,
            "--peer-name",
            SECONDARY,
            "--peer-kubeconfig",
            pair.kubeconfig(SECONDARY).to_str().expect("path"),
            "--admin-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--webhook-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--tls-cert-file",
            certs.join("tls.crt").to_str().expect("path"),
            "--tls-key-file",
            certs.join("tls.key").to_str().expect("path"),
        ]
        .map(str::to_string)
        .to_vec();
        Start {
            kubeconfig: pair.kubeconfig(PRIMARY),
            args,
        }
    }

    /// Replace the value of `flag`, or add it.
    fn with(mut self, flag: &str, value: &str) -> Start {
        match self.args.iter().position(|a| a == flag) {
            Some(i) => self.args[i + 1] = value.to_string(),
            None => self.args.extend([flag.to_string(), value.to_string()]),
        }
        self
    }

    fn kubeconfig(mut self, path: &Path) -> Start {
        self.kubeconfig = path.to_path_buf();
        self
    }

    /// Run it; it must exit by itself within 30 s. Returns its exit status and stderr.
    async fn run(&self, home: &Path) -> (Option<i32>, String) {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", home)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("volsync-dr run");
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("volsync-dr run {:?} still runs after 30 s", self.args))
            .expect("output");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A certificate and key whose validity ended yesterday.
fn expired_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(vec!["volsync-dr-webhook.volsync-dr.svc".to_string()]).expect("params");
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(30 * 86_400)).into();
    params.not_after = (now - Duration::from_secs(86_400)).into();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::create_dir_all(dir).expect("dir");
    let (crt, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&crt, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    (crt, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_start_up_failure_is_one_line_that_says_what_to_do() {
    let pair = ClusterPair::start().await;
    let dir = pair.dir.path();
    let certs = dir.join("certs");
    generate_certs(&certs);
    // A cluster without VolSync: only the built-in types.
    let bare = ApiServer::start(Config::default()).await.expect("bare API server");
    let bare_kubeconfig = dir.join("bare.kubeconfig");
    bare.write_kubeconfig(&bare_kubeconfig, "bare").expect("kubeconfig");
    // An API server that is gone: a kubeconfig pointing at a port nobody listens on.
    let gone_port = free_port();
    let gone_kubeconfig = dir.join("gone.kubeconfig");
    std::fs::write(
        &gone_kubeconfig,
        std::fs::read_to_string(pair.kubeconfig(PRIMARY))
            .expect("kubeconfig")
            .replace(&pair.server(PRIMARY).addr().port().to_string(), &gone_port.to_string()),
    )
    .expect("write");
    let malformed = dir.join("malformed.kubeconfig");
    std::fs::write(&malformed, "clusters: [this is not\n").expect("write");
    let (old_crt, old_key) = expired_certificate(&dir.join("expired"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let empty_home = dir.join("home");
    std::fs::create_dir_all(&empty_home).expect("home");

    let base = || Start::healthy(&pair, &certs);
    let unreachable = format!("cannot reach this cluster's API server at http://127.0.0.1:{gone_port}");
    let cannot_listen = format!("cannot listen on --webhook-addr {taken_addr}");
    let cases: Vec<(&str, Start, Vec<&str>)> = vec![
        (
            "no kubeconfig",
            base().kubeconfig(&dir.join("nowhere.kubeconfig")),
            vec!["no cluster to connect to", "set KUBECONFIG"],
        ),
        (
            "API server unreachable",
            base().kubeconfig(&gone_kubeconfig),
            vec![unreachable.as_str(), "(Connection refused", "check that it runs"],
        ),
        (
            "Lease namespace missing",
            base().with("--own-namespace", "dr-system"),
            vec![
                "the namespace dr-system does not exist on cluster cluster-a",
                "set --own-namespace",
            ],
        ),
        (
            "VolSync CRDs missing",
            base().kubeconfig(&bare_kubeconfig),
            vec!["VolSync is not installed on cluster cluster-a", "helm install volsync"],
        ),
        (
            "peer kubeconfig missing",
            base().with("--peer-kubeconfig", dir.join("none").to_str().expect("path")),
            vec!["cannot read the peer kubeconfig", "pass --peer-kubeconfig"],
        ),
        (
            "peer kubeconfig malformed",
            base().with("--peer-kubeconfig", malformed.to_str().expect("path")),
            vec!["peer kubeconfig", "malformed.kubeconfig"],
        ),
        (
            "a permission missing",
            base(),
            vec![
                "volsync-dr may not list persistentvolumeclaims on cluster cluster-a",
                "apply deploy/base/rbac.yaml",
            ],
        ),
        (
            "webhook certificate unreadable",
            base().with("--tls-cert-file", dir.join("none.crt").to_str().expect("path")),
            vec!["none.crt", "volsync-dr certs"],
        ),
        (
            "webhook certificate expired",
            base()
                .with("--tls-cert-file", old_crt.to_str().expect("path"))
                .with("--tls-key-file", old_key.to_str().expect("path")),
            vec!["the webhook certificate", "expired at", "renew it"],
        ),
        (
            "port taken",
            base().with("--webhook-addr", &taken_addr),
            vec![
                cannot_listen.as_str(),
                "Address already in use",
                "another process listens there",
            ],
        ),
    ];
    for (case, start, says) in cases {
        if case == "a permission missing" {
            pair.server(PRIMARY).deny_access("list", "", "persistentvolumeclaims");
        }
        let (code, stderr) = start.run(&empty_home).await;
        pair.server(PRIMARY).allow_all_access();
        assert!(
            code.is_some_and(|c| c != 0),
            "{case}: exits non-zero, got {code:?}:\n{stderr}"
        );
        let said: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(said.len(), 1, "{case}: one error line:\n{stderr}");
        for part in &says {
            assert!(said[0].contains(part), "{case}: {:?} lacks {part:?}", said[0]);
        }
        for dump in ["Status {", "ErrorResponse", "Error {", "Some(", "\\n"] {
            assert!(!stderr.contains(dump), "{case}: a debug dump ({dump}):\n{stderr}");
        }
        println!("{case}: {}", said[0]);
    }
    drop(taken);
}
