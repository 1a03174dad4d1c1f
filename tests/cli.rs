//! `volsync-dr run` refuses a bad configuration at start-up with one line naming the problem.

use std::process::Command;

use testkit::apiserver::{ApiServer, Config};

const BIN: &str = env!("CARGO_BIN_EXE_volsync-dr");

fn run(args: &[&str], kubeconfig: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("run")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("VOLSYNC_DR_PEER_KUBECONFIG")
        .output()
        .expect("run volsync-dr");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_a_clear_startup_error() {
    let server = ApiServer::start(Config::default()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("local");
    server.write_kubeconfig(&kubeconfig, "a").expect("kubeconfig");
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "this: [is not a kubeconfig").expect("write");
    let missing = dir.path().join("missing").to_string_lossy().into_owned();
    let garbage = garbage.to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--cluster-name", "a", "--peer-name", "b", "--peer-kubeconfig", &missing],
            "cannot read the peer kubeconfig",
        ),
        (
            vec!["--cluster-name", "a", "--peer-name", "b", "--peer-kubeconfig", &garbage],
            "cannot read the peer kubeconfig",
        ),
        (
            vec![
                "--cluster-name",
                "A_1",
                "--peer-name",
                "b",
                "--peer-kubeconfig",
                &missing,
            ],
            "--cluster-name \"A_1\"",
        ),
        (
            vec!["--cluster-name", "a", "--peer-name", "a", "--peer-kubeconfig", &missing],
            "must differ from --cluster-name",
        ),
        (
            vec![
                "--cluster-name",
                "a",
                "--peer-name",
                "b",
                "--peer-kubeconfig",
                &missing,
                "--namespaces",
                "ok,Bad",
            ],
            "--namespaces \"Bad\"",
        ),
    ];
    for (args, want) in cases {
        let (code, stderr) = run(&args, &kubeconfig);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(want),
            "{want} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A missing required flag is a usage error naming it.
    let (code, stderr) = run(&["--cluster-name", "a"], &kubeconfig);
    assert_eq!(code, 2);
    assert!(stderr.contains("--peer-name"), "{stderr}");
}
