//! The demo: two real local clusters (built from Go modules on first use), volsync-dr deployed on
//! both as the README's install steps say, a sample application protected, and its data
//! arriving on the peer. Then it prints what to type next and keeps everything running until
//! Ctrl-C (or, with `--exit`, stops at once: a check that the demo works).
//!
//!   cargo build && cargo run -p testkit --bin two-clusters [-- --exit]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::realk8s::{PRIMARY, RealPair, SECONDARY, deploy};

#[tokio::main]
async fn main() {
    let exit_when_done = std::env::args().any(|a| a == "--exit");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary = root.join("target/debug/volsync-dr");
    if !binary.exists() {
        eprintln!(
            "{} is missing: run `cargo build` first (this demo runs that binary)",
            binary.display()
        );
        std::process::exit(1);
    }
    let began = Instant::now();
    println!("== starting two clusters (etcd, kube-apiserver, controller-manager, scheduler, kwok each)");
    let pair = RealPair::start().await;
    println!(
        "   up in {:.1}s; files in {}",
        pair.started_in.as_secs_f64(),
        pair.dir.path().display()
    );
    println!("== deploying volsync-dr on both (deploy/overlays, ServiceAccount tokens, webhook)");
    let (a, b) = deploy(&pair, &binary).await;

    println!("== a sample application on {PRIMARY}: Deployment web, PVC data with volsync-dr.io/protect=true");
    let app = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}],
                                       "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}
    });
    let pvc = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "default", "annotations": {"volsync-dr.io/protect": "true"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    });
    pair.a.apply(&[pvc, app.clone()]).await;
    // The same application stands by on the peer at 0 replicas: migrate starts it there.
    let mut standby = app;
    standby["spec"]["replicas"] = json!(0);
    pair.b.apply(&[standby]).await;
    pair.a
        .wait_for(
            &[
                "get",
                "pvc",
                "data",
                "-o",
                "jsonpath={.metadata.annotations.volsync-dr\\.io/state}",
            ],
            "Protected",
            "the PVC protected",
        )
        .await;
    let stamp = format!("written on {PRIMARY} at {}", chrono::Utc::now().to_rfc3339());
    pair.write(PRIMARY, "default", "data", "hello.txt", &stamp);
    pair.simulator.run_schedules_now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pair.read(SECONDARY, "default", "data", "hello.txt").as_deref() != Some(stamp.as_str()) {
        if Instant::now() > deadline {
            eprintln!("the file did not reach {SECONDARY} within 60 s; volsync-dr's log on {PRIMARY}:");
            eprintln!("{}", a.process.tail(30));
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("== hello.txt reached {SECONDARY}'s replica: {stamp:?}");
    println!("   (all in {:.1}s)", began.elapsed().as_secs_f64());

    let (ka, kb) = (pair.a.admin_kubeconfig.display(), pair.b.admin_kubeconfig.display());
    let bin = binary.display();
    println!(
        "\nWhat to try next (in another terminal):\n\
         \x20 export A={ka} B={kb}\n\
         \x20 kubectl --kubeconfig $A get pvc data -o yaml          # role, state, last sync\n\
         \x20 kubectl --kubeconfig $B get pvc,replicationdestination   # the replica on {SECONDARY}\n\
         \x20 KUBECONFIG={akc} {bin} status --cluster-name {PRIMARY} --peer-name {SECONDARY} --peer-kubeconfig {bkc}\n\
         \x20 kubectl --kubeconfig $A annotate pvc data volsync-dr.io/action=migrate:1   # move the app to {SECONDARY}\n\
         \x20 kubectl --kubeconfig $B get deploy web; kubectl --kubeconfig $A get pvc data -o yaml\n\
         Logs: {alog} and {blog}\n",
        akc = a.kubeconfig.display(),
        bkc = a.peer_kubeconfig.display(),
        alog = a.process.log.display(),
        blog = b.process.log.display(),
    );
    if exit_when_done {
        return;
    }
    println!("Everything keeps running until Ctrl-C.");
    let _ = tokio::signal::ctrl_c().await;
    println!("stopping both clusters");
}
