//! Run the installed `kubectl` against a test cluster, as a user would.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What one kubectl run printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

pub struct Kubectl {
    pub kubeconfig: PathBuf,
}

/// Longest any one kubectl call may take.
const TIMEOUT: Duration = Duration::from_secs(60);

impl Kubectl {
    pub fn new(kubeconfig: impl Into<PathBuf>) -> Self {
        Kubectl {
            kubeconfig: kubeconfig.into(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // kubectl must not find a cache or config of the machine's user.
            .env("KUBECACHEDIR", self.kubeconfig.with_extension("cache"))
            .env("HOME", self.kubeconfig.parent().unwrap_or(std::path::Path::new("/tmp")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "").await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start kubectl (is it installed?): {e}"));
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("kubectl stdin: {e}"));
        }
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} took over {TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"));
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and require success; returns standard output.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.success, "kubectl {args:?} failed:\n{}\n{}", out.stdout, out.stderr);
        out.stdout
    }
}
