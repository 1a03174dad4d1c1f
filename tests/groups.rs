//! Application groups on the in-process tier: an action on one volume moves every volume of its
//! application (a StatefulSet's ordinals, volumes named in one `volsync-dr.io/group`), and no
//! application ever starts on a volume whose data is on the other cluster.

mod support;

use serde_json::{Value, json};
use support::{DrProcess, annotate, annotation, deployment, wait_annotation, wait_latest_image};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const NS: &str = "default";
const ORDINALS: [&str; 3] = ["data-web-0", "data-web-1", "data-web-2"];

fn pvc(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS, "annotations": annotations},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

fn protected() -> Value {
    json!({"volsync-dr.io/protect": "true"})
}

/// A StatefulSet `web` whose volumeClaimTemplate `data` gives each ordinal `data-web-N`.
fn web(replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "web", "namespace": NS},
           "spec": {"replicas": replicas, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "busybox"}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                              "spec": {"accessModes": ["ReadWriteOnce"],
                                                       "resources": {"requests": {"storage": "1Gi"}}}}]}})
}

fn spec_replicas(pair: &ClusterPair, cluster: &str, plural: &str, name: &str) -> i64 {
    pair.object(cluster, plural, NS, name)
        .unwrap_or_else(|| panic!("no {plural}/{name} on {cluster}"))["spec"]["replicas"]
        .as_i64()
        .unwrap_or(-1)
}

fn running(pair: &ClusterPair, cluster: &str, prefix: &str) -> usize {
    (0..10)
        .filter(|i| {
            pair.object(cluster, "pods", NS, &format!("{prefix}-{i}"))
                .is_some_and(|p| p["status"]["phase"] == "Running")
        })
        .count()
}

/// Each of `pvcs` protected from A, its replica on B, a first sync done.
async fn protected_on_both(pair: &ClusterPair, pvcs: &[&str]) {
    for name in pvcs {
        wait_annotation(pair, PRIMARY, name, "volsync-dr.io/state", "Protected").await;
        wait_annotation(pair, SECONDARY, name, "volsync-dr.io/role", "secondary").await;
        wait_latest_image(pair, name).await;
    }
}

/// The request's outcome on the PVC that carried it: (phase, message), once finished.
async fn finished(pair: &ClusterPair, cluster: &str, pvc: &str, request: &str) -> (String, String) {
    wait_annotation(pair, cluster, pvc, "volsync-dr.io/last-action", request).await;
    (
        annotation(pair, cluster, pvc, "volsync-dr.io/action-phase").unwrap_or_default(),
        annotation(pair, cluster, pvc, "volsync-dr.io/action-message").unwrap_or_default(),
    )
}

/// The StatefulSet `web` with its three ordinals protected on A, the standby `web` at 0 on B
/// (with these annotations).
async fn protected_stateful_set(pair: &ClusterPair, standby_annotations: Value) {
    for name in ORDINALS {
        pair.create_bound_pvc(PRIMARY, pvc(name, protected())).await;
        pair.write(PRIMARY, NS, name, "first", &format!("{name} v1"));
    }
    pair.create(PRIMARY, web(3));
    protected_on_both(pair, &ORDINALS).await;
    let mut standby = web(0);
    standby["metadata"]["annotations"] = standby_annotations;
    pair.create(SECONDARY, standby);
    pair.wait_for(10, "web runs on A", |p| (running(p, PRIMARY, "web") == 3).then_some(()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_on_one_ordinal_moves_the_whole_stateful_set() {
    let pair = ClusterPair::start().await;
    let a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    protected_stateful_set(&pair, json!({})).await;
    // Newer than the last scheduled sync of every ordinal: only the migration carries them.
    for name in ORDINALS {
        pair.write(
            PRIMARY,
            NS,
            name,
            "latest",
            &format!("{name} written just before migrate"),
        );
    }

    annotate(&pair, PRIMARY, "data-web-0", "volsync-dr.io/action", "migrate:1");
    let (phase, message) = finished(&pair, PRIMARY, "data-web-0", "migrate:1").await;
    assert_eq!(phase, "Succeeded", "{message}");

    for name in ORDINALS {
        assert_eq!(
            pair.read(SECONDARY, NS, name, "latest"),
            Some(format!("{name} written just before migrate")),
            "{name}'s latest data is on B"
        );
        assert_eq!(
            annotation(&pair, PRIMARY, name, "volsync-dr.io/role").as_deref(),
            Some("secondary"),
            "{name} on A"
        );
        assert_eq!(
            annotation(&pair, SECONDARY, name, "volsync-dr.io/role").as_deref(),
            Some("primary"),
            "{name} on B"
        );
        assert!(
            annotation(&pair, PRIMARY, name, "volsync-dr.io/group-action").is_none(),
            "{name} released when the action ended"
        );
    }
    for member in &ORDINALS[1..] {
        let shown = annotation(&pair, PRIMARY, member, "volsync-dr.io/action-message").unwrap_or_default();
        assert!(
            shown.starts_with("migrate:1 (run from PVC data-web-0): migrate finished"),
            "{member}: {shown}"
        );
        assert_eq!(
            annotation(&pair, PRIMARY, member, "volsync-dr.io/last-action"),
            None,
            "a member's own request history is its own"
        );
    }
    assert_eq!(spec_replicas(&pair, PRIMARY, "statefulsets", "web"), 0);
    assert_eq!(spec_replicas(&pair, SECONDARY, "statefulsets", "web"), 3);
    pair.wait_for(10, "web runs on B", |p| {
        (running(p, SECONDARY, "web") == 3).then_some(())
    })
    .await;
    // One scale-down for the whole group: the StatefulSet was scaled once.
    let scaled = a.log_text().matches("scaled down").count();
    assert_eq!(scaled, 1, "one scale-down of web for the group");

    // `status` shows the group on both clusters, with its members.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_volsync-dr"))
        .args([
            "status",
            "--cluster-name",
            PRIMARY,
            "--peer-name",
            SECONDARY,
            "--timeout-seconds",
            "3",
        ])
        .arg("--peer-kubeconfig")
        .arg(pair.kubeconfig(SECONDARY))
        .env("KUBECONFIG", pair.kubeconfig(PRIMARY))
        .output()
        .expect("volsync-dr status");
    let text = String::from_utf8_lossy(&status.stdout);
    for cluster in [PRIMARY, SECONDARY] {
        assert!(
            text.lines().any(|l| l.starts_with(cluster)
                && l.contains("StatefulSet/web")
                && l.ends_with("data-web-0, data-web-1, data-web-2")),
            "the group on {cluster}:\n{text}"
        );
    }

    // Reverse protection for every ordinal: B's writes reach A, none is overwritten by A.
    for name in ORDINALS {
        wait_annotation(&pair, SECONDARY, name, "volsync-dr.io/state", "Protected").await;
        pair.write(SECONDARY, NS, name, "on-b", "written on B after migrate");
    }
    pair.simulator.run_schedules_now();
    for name in ORDINALS {
        pair.wait_for(30, &format!("B's write to {name} on A"), |p| {
            (p.read(PRIMARY, NS, name, "on-b").as_deref() == Some("written on B after migrate")).then_some(())
        })
        .await;
        assert_eq!(
            pair.read(SECONDARY, NS, name, "on-b").as_deref(),
            Some("written on B after migrate"),
            "{name}: B's write kept on B"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_group_moves_two_applications_volumes_together() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    let shop = json!({"volsync-dr.io/protect": "true", "volsync-dr.io/group": "shop"});
    for (name, app) in [("db", "database"), ("uploads", "frontend")] {
        pair.create_bound_pvc(PRIMARY, pvc(name, shop.clone())).await;
        pair.write(PRIMARY, NS, name, "file", &format!("{name} v1"));
        pair.create(PRIMARY, deployment(app, name, 1, json!({})));
    }
    // Not in the group: left where it is.
    pair.create_bound_pvc(PRIMARY, pvc("reports", protected())).await;
    protected_on_both(&pair, &["db", "uploads", "reports"]).await;
    assert_eq!(
        annotation(&pair, SECONDARY, "uploads", "volsync-dr.io/group").as_deref(),
        Some("shop"),
        "the replica carries the group, so B can act on it too"
    );
    for (name, app) in [("db", "database"), ("uploads", "frontend")] {
        pair.create(SECONDARY, deployment(app, name, 0, json!({})));
        pair.write(PRIMARY, NS, name, "file", &format!("{name} v2"));
    }

    annotate(&pair, PRIMARY, "uploads", "volsync-dr.io/action", "migrate:7");
    let (phase, message) = finished(&pair, PRIMARY, "uploads", "migrate:7").await;
    assert_eq!(phase, "Succeeded", "{message}");
    for (name, app) in [("db", "database"), ("uploads", "frontend")] {
        assert_eq!(pair.read(SECONDARY, NS, name, "file"), Some(format!("{name} v2")));
        assert_eq!(
            annotation(&pair, SECONDARY, name, "volsync-dr.io/role").as_deref(),
            Some("primary")
        );
        assert_eq!(spec_replicas(&pair, PRIMARY, "deployments", app), 0, "{app} on A");
        assert_eq!(spec_replicas(&pair, SECONDARY, "deployments", app), 1, "{app} on B");
    }
    assert_eq!(
        annotation(&pair, PRIMARY, "reports", "volsync-dr.io/role").as_deref(),
        Some("primary"),
        "a PVC outside the group stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_an_unprotected_volume_is_refused_naming_it() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(PRIMARY, pvc("data-web-0", protected())).await;
    pair.create_bound_pvc(PRIMARY, pvc("data-web-1", json!({}))).await;
    pair.create(PRIMARY, web(2));
    protected_on_both(&pair, &["data-web-0"]).await;
    pair.create(SECONDARY, web(0));

    annotate(&pair, PRIMARY, "data-web-0", "volsync-dr.io/action", "migrate:1");
    let (phase, message) = finished(&pair, PRIMARY, "data-web-0", "migrate:1").await;
    assert_eq!(phase, "Failed");
    assert!(
        message.starts_with("refused: PVC data-web-1 is used by the same application")
            && message.contains("volsync-dr.io/protect=true")
            && message.ends_with("nothing was changed"),
        "{message}"
    );
    assert_eq!(
        spec_replicas(&pair, PRIMARY, "statefulsets", "web"),
        2,
        "nothing was scaled"
    );
    assert_eq!(
        annotation(&pair, PRIMARY, "data-web-0", "volsync-dr.io/role").as_deref(),
        Some("primary")
    );
    assert!(
        pair.object(PRIMARY, "replicationsources", NS, "rs-data-web-0")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_never_starts_on_a_volume_whose_data_is_elsewhere() {
    // Hand-made: the standby on B mounts a second volume that A's application does not, so the
    // group seen from A is `db` alone; that volume is a replication destination on B.
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    for name in ["db", "extra"] {
        pair.create_bound_pvc(PRIMARY, pvc(name, protected())).await;
    }
    pair.create(PRIMARY, deployment("app", "db", 1, json!({})));
    protected_on_both(&pair, &["db", "extra"]).await;
    let mut standby = deployment("app", "db", 0, json!({}));
    standby["spec"]["template"]["spec"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(json!({"name": "extra", "persistentVolumeClaim": {"claimName": "extra"}}));
    pair.create(SECONDARY, standby);

    annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", "migrate:1");
    let (phase, message) = finished(&pair, PRIMARY, "db", "migrate:1").await;
    assert_eq!(phase, "Failed");
    assert!(
        message.contains("step scale-up-peer failed: starting Deployment/app to 1 on")
            && message.contains("extra (a replication destination)")
            && message.contains("nothing was scaled"),
        "{message}"
    );
    assert_eq!(
        spec_replicas(&pair, SECONDARY, "deployments", "app"),
        0,
        "the standby was not started on B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_fails_over_and_back_as_one_group() {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    // The standby starts all three ordinals when it takes over.
    protected_stateful_set(&pair, json!({"volsync-dr.io/replicas": "3"})).await;

    // A goes away; failover requested on one ordinal on B.
    a.kill().await;
    pair.a.stop().await;
    pair.simulator.pause(PRIMARY);
    annotate(&pair, SECONDARY, "data-web-1", "volsync-dr.io/action", "failover:1");
    let (phase, message) = finished(&pair, SECONDARY, "data-web-1", "failover:1").await;
    assert_eq!(phase, "Succeeded", "{message}");
    assert!(
        message.contains("for the group of 3 volumes (data-web-1, data-web-0, data-web-2)")
            && message.contains("the group's recovery point"),
        "{message}"
    );
    for name in ORDINALS {
        assert_eq!(
            annotation(&pair, SECONDARY, name, "volsync-dr.io/role").as_deref(),
            Some("primary"),
            "{name} took over on B"
        );
        assert_eq!(pair.read(SECONDARY, NS, name, "first"), Some(format!("{name} v1")));
    }
    pair.wait_for(10, "web runs on B", |p| {
        (running(p, SECONDARY, "web") == 3).then_some(())
    })
    .await;
    for name in ORDINALS {
        pair.write(
            SECONDARY,
            NS,
            name,
            "on-b",
            &format!("{name} written on B after the failover"),
        );
    }

    // A returns; failback requested on another ordinal on B.
    pair.a.restart().await.expect("A's API server back");
    pair.simulator.resume(PRIMARY);
    a.start_again().await;
    for name in ORDINALS {
        wait_annotation(&pair, PRIMARY, name, "volsync-dr.io/state", "Degraded").await;
    }
    annotate(&pair, SECONDARY, "data-web-2", "volsync-dr.io/action", "failback:1");
    let (phase, message) = finished(&pair, SECONDARY, "data-web-2", "failback:1").await;
    assert_eq!(phase, "Succeeded", "{message}");
    for name in ORDINALS {
        assert_eq!(
            pair.read(PRIMARY, NS, name, "on-b"),
            Some(format!("{name} written on B after the failover")),
            "{name}: B's writes are on A"
        );
        assert_eq!(
            annotation(&pair, PRIMARY, name, "volsync-dr.io/role").as_deref(),
            Some("primary"),
            "{name} home on A"
        );
        assert_eq!(
            annotation(&pair, SECONDARY, name, "volsync-dr.io/role").as_deref(),
            Some("secondary")
        );
    }
    assert_eq!(spec_replicas(&pair, SECONDARY, "statefulsets", "web"), 0);
    assert_eq!(
        spec_replicas(&pair, PRIMARY, "statefulsets", "web"),
        3,
        "home at its own size"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "the crash hook needs --features volsync-dr/test-hooks"
)]
async fn a_group_migrate_survives_a_crash_at_every_step() {
    use volsync_dr::model::action::Verb;
    const HOLD: &str = "VOLSYNC_DR_TEST_HOLD_AT_STEP";
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    protected_stateful_set(&pair, json!({})).await;
    for name in ORDINALS {
        pair.write(
            PRIMARY,
            NS,
            name,
            "latest",
            &format!("{name} written just before migrate"),
        );
    }
    for (i, step) in volsync_dr::steps::flow(Verb::Migrate).iter().enumerate() {
        let hold = format!("migrate/{}", step.as_str());
        a.restart_with_env(&[(HOLD, &hold)]).await;
        if i == 0 {
            annotate(&pair, PRIMARY, "data-web-1", "volsync-dr.io/action", "migrate:c");
        }
        a.wait_log(&format!("holding right after the step started step=\"{hold}\""), 1)
            .await;
        // At the first step the crash comes between recording the start and holding the
        // other members: the restart holds them before anything acts.
        let shown_on = if i == 0 { &ORDINALS[1..2] } else { &ORDINALS[..] };
        for name in shown_on {
            assert_eq!(
                annotation(&pair, PRIMARY, name, "volsync-dr.io/action-step").as_deref(),
                Some(step.as_str()),
                "{name}: the step is recorded (and shown on every member) before it acts"
            );
        }
        a.kill().await;
    }
    a.restart_with_env(&[]).await;
    let (phase, message) = finished(&pair, PRIMARY, "data-web-1", "migrate:c").await;
    assert_eq!(phase, "Succeeded", "{message}");
    for name in ORDINALS {
        assert_eq!(
            pair.read(SECONDARY, NS, name, "latest"),
            Some(format!("{name} written just before migrate"))
        );
        assert_eq!(
            annotation(&pair, SECONDARY, name, "volsync-dr.io/role").as_deref(),
            Some("primary")
        );
        assert!(annotation(&pair, PRIMARY, name, "volsync-dr.io/group-action").is_none());
    }
    assert_eq!(spec_replicas(&pair, SECONDARY, "statefulsets", "web"), 3);
    pair.wait_for(10, "web runs on B", |p| {
        (running(p, SECONDARY, "web") == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_protected_by_a_drpolicy_form_groups_the_same_way() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    let k = testkit::kubectl::Kubectl::new(pair.kubeconfig(PRIMARY));
    k.ok(&["label", "namespace", NS, "dr=on"]).await;
    let policy = json!({"apiVersion": "volsync-dr.io/v1alpha1", "kind": "DRPolicy",
                        "metadata": {"name": "by-namespace"},
                        "spec": {"namespaceSelector": {"matchLabels": {"dr": "on"}}}});
    let applied = k.run_with_stdin(&["apply", "-f", "-"], &policy.to_string()).await;
    assert!(applied.success, "{}", applied.stderr);
    // No annotation on the PVCs: the policy protects them.
    for name in &ORDINALS[..2] {
        pair.create_bound_pvc(PRIMARY, pvc(name, json!({}))).await;
        pair.write(PRIMARY, NS, name, "file", &format!("{name} v1"));
    }
    pair.create(PRIMARY, web(2));
    for name in &ORDINALS[..2] {
        pair.wait_for(30, &format!("{name} protected by the policy"), |p| {
            (annotation(p, PRIMARY, name, "volsync-dr.io/policy").as_deref() == Some("by-namespace")).then_some(())
        })
        .await;
    }
    protected_on_both(&pair, &ORDINALS[..2]).await;
    pair.create(SECONDARY, web(0));

    annotate(&pair, PRIMARY, "data-web-1", "volsync-dr.io/action", "migrate:1");
    let (phase, message) = finished(&pair, PRIMARY, "data-web-1", "migrate:1").await;
    assert_eq!(phase, "Succeeded", "{message}");
    assert!(message.contains("for the group of 2 volumes"), "{message}");
    for name in &ORDINALS[..2] {
        assert_eq!(
            annotation(&pair, SECONDARY, name, "volsync-dr.io/role").as_deref(),
            Some("primary"),
            "{name} moved with the group"
        );
    }
    assert_eq!(spec_replicas(&pair, SECONDARY, "statefulsets", "web"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_level_migrate_moves_every_application_in_it() {
    let pair = ClusterPair::start().await;
    let _a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let _b = DrProcess::start(&pair, SECONDARY, &[]).await;
    // Two applications: the StatefulSet `web` (three ordinals) and a Deployment `app` on `db`.
    protected_stateful_set(&pair, json!({})).await;
    pair.create_bound_pvc(PRIMARY, pvc("db", protected())).await;
    pair.create(PRIMARY, deployment("app", "db", 1, json!({})));
    protected_on_both(&pair, &["db"]).await;
    pair.create(SECONDARY, deployment("app", "db", 0, json!({})));
    for name in ["data-web-0", "data-web-1", "data-web-2", "db"] {
        pair.write(PRIMARY, NS, name, "latest", &format!("{name} just before migrate"));
    }

    let k = testkit::kubectl::Kubectl::new(pair.kubeconfig(PRIMARY));
    k.ok(&["annotate", "namespace", NS, "volsync-dr.io/action=migrate:ns1"])
        .await;
    let ns_annotation = |key: &str| {
        pair.object(PRIMARY, "namespaces", "", NS)?["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    };
    pair.wait_for(60, "the namespace's request finished", |_| {
        (ns_annotation("volsync-dr.io/last-action").as_deref() == Some("migrate:ns1")).then_some(())
    })
    .await;
    let message = ns_annotation("volsync-dr.io/action-message").unwrap_or_default();
    assert_eq!(
        ns_annotation("volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded"),
        "{message}"
    );
    assert!(
        message.starts_with("migrate:ns1 finished for 2 application(s): PVC data-web-0: Succeeded")
            && message.contains("PVC db: Succeeded"),
        "{message}"
    );
    for name in ["data-web-0", "data-web-1", "data-web-2", "db"] {
        assert_eq!(
            pair.read(SECONDARY, NS, name, "latest"),
            Some(format!("{name} just before migrate"))
        );
        assert_eq!(
            annotation(&pair, SECONDARY, name, "volsync-dr.io/role").as_deref(),
            Some("primary"),
            "{name} moved"
        );
    }
    assert_eq!(spec_replicas(&pair, SECONDARY, "statefulsets", "web"), 3);
    assert_eq!(spec_replicas(&pair, SECONDARY, "deployments", "app"), 1);
    // Events on the Namespace say it started and finished.
    let events: Value =
        serde_json::from_str(&k.ok(&["get", "events.events.k8s.io", "-A", "-o", "json"]).await).expect("events");
    for reason in ["ActionStarted", "ActionSucceeded"] {
        let on_namespace =
            events["items"].as_array().into_iter().flatten().any(|e| {
                e["reason"] == reason && e["regarding"]["kind"] == "Namespace" && e["regarding"]["name"] == NS
            });
        assert!(on_namespace, "{reason} Event on the Namespace: {events}");
    }
}
