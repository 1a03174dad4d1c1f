//! Restore points: with `volsync-dr.io/restore-points: 3` the secondary keeps exactly the three
//! newest synced images across the first sync and five more (as VolumeSnapshots VolSync does not delete), lists
//! them on the PVC, refuses a failover to a point it does not keep (webhook, with the list),
//! fails over to the second-newest with that point's data, and unprotect removes them.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::{DrProcess, annotate, annotation, deployment, install_webhook_on, wait_annotation};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};

const NS: &str = "default";

fn list(pair: &ClusterPair, cluster: &str, group: &str, version: &str, plural: &str) -> Vec<Value> {
    let store = pair.server(cluster).store();
    let rt = store.find_type(group, version, plural).expect("served");
    store.list(&rt, Some(NS), &Default::default(), &Default::default()).0
}

/// The restore points kept on B: snapshot name → the `generation` file it holds.
fn kept_on_b(pair: &ClusterPair) -> BTreeMap<String, String> {
    list(pair, SECONDARY, "snapshot.storage.k8s.io", "v1", "volumesnapshots")
        .into_iter()
        .filter(|s| s["metadata"]["labels"]["volsync-dr.io/restore-point"] == "true")
        .map(|s| {
            let name = s["metadata"]["name"].as_str().expect("name").to_string();
            let dir = pair.simulator.cluster(SECONDARY).snapshot_path(NS, &name);
            let held = std::fs::read_to_string(dir.join("generation")).unwrap_or_default();
            (name, held)
        })
        .collect()
}

fn listed(pair: &ClusterPair) -> Vec<String> {
    annotation(pair, SECONDARY, "db", "volsync-dr.io/restore-points-kept")
        .unwrap_or_default()
        .split(',')
        .filter_map(|e| e.split_once('=').map(|(_, name)| name.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_points_kept_over_five_syncs_and_failover_to_the_second_newest() {
    let pair = ClusterPair::start().await;
    let mut a = DrProcess::start(&pair, PRIMARY, &[]).await;
    let b = DrProcess::start(&pair, SECONDARY, &[]).await;
    pair.create_bound_pvc(
        PRIMARY,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "db", "namespace": NS,
                            "annotations": {"volsync-dr.io/protect": "true", "volsync-dr.io/restore-points": "3"}},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    pair.create(PRIMARY, deployment("app", "db", 1, json!({})));
    wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/state", "Protected").await;
    wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/restore-points", "3").await;
    pair.create(SECONDARY, deployment("app", "db", 0, json!({})));

    // The first sync's image is the first point.
    let first = pair
        .wait_for(30, "the first sync's image kept", |p| {
            let rd = p.object(SECONDARY, "replicationdestinations", NS, "rd-db")?;
            let image = rd["status"]["latestImage"]["name"].as_str()?.to_string();
            (listed(p) == [image.clone()]).then_some(image)
        })
        .await;
    // Five syncs, each of a new generation of the data; after each, the newest image is kept.
    let mut images = vec![first];
    for generation in 1..=5 {
        pair.write(PRIMARY, NS, "db", "generation", &format!("v{generation}"));
        let request = format!("sync-now:{generation}");
        annotate(&pair, PRIMARY, "db", "volsync-dr.io/action", &request);
        wait_annotation(&pair, PRIMARY, "db", "volsync-dr.io/last-action", &request).await;
        let image = pair
            .wait_for(30, "the new image kept and listed first", |p| {
                let rd = p.object(SECONDARY, "replicationdestinations", NS, "rd-db")?;
                let image = rd["status"]["latestImage"]["name"].as_str()?.to_string();
                (!images.contains(&image)
                    && listed(p).first() == Some(&image)
                    && kept_on_b(p).get(&image).map(String::as_str) == Some(&format!("v{generation}")))
                .then_some(image)
            })
            .await;
        images.push(image);
        let want = images.len().min(3);
        pair.wait_for(30, "no more than three points", |p| {
            (kept_on_b(p).len() == want && listed(p).len() == want).then_some(())
        })
        .await;
    }
    let newest: Vec<String> = images.iter().rev().take(3).cloned().collect();
    assert_eq!(listed(&pair), newest, "the three newest, newest first");
    let kept = kept_on_b(&pair);
    assert_eq!(
        kept.values().cloned().collect::<std::collections::BTreeSet<_>>(),
        ["v3", "v4", "v5"].iter().map(|v| v.to_string()).collect(),
        "each point holds its own sync's data: {kept:?}"
    );
    // The three oldest are gone (pruned; VolSync never deleted the kept ones).
    for old in &images[..3] {
        assert!(!kept.contains_key(old), "{old} was pruned");
    }

    // A is lost. A point B does not keep is refused with the list of those it keeps.
    a.kill().await;
    pair.a.stop().await;
    pair.simulator.pause(PRIMARY);
    install_webhook_on(&pair, SECONDARY, &b).await;
    let kubectl = testkit::kubectl::Kubectl::new(pair.kubeconfig(SECONDARY));
    let refused = kubectl
        .run(&[
            "annotate",
            "pvc",
            "db",
            &format!("volsync-dr.io/restore-point={}", images[0]),
            "volsync-dr.io/action=failover:1",
        ])
        .await;
    assert!(!refused.success, "a failover to a pruned point is refused");
    assert!(
        refused.stderr.contains(&format!(
            "restore point \"{}\" does not exist; kept: {}",
            images[0], newest[0]
        )),
        "{}",
        refused.stderr
    );
    assert_eq!(
        annotation(&pair, SECONDARY, "db", "volsync-dr.io/action"),
        None,
        "nothing admitted"
    );

    // The second-newest, by name: its data (v4) is what the application starts on.
    let second = &newest[1];
    kubectl
        .ok(&[
            "annotate",
            "pvc",
            "db",
            &format!("volsync-dr.io/restore-point={second}"),
            "volsync-dr.io/action=failover:1",
        ])
        .await;
    wait_annotation(&pair, SECONDARY, "db", "volsync-dr.io/last-action", "failover:1").await;
    let message = annotation(&pair, SECONDARY, "db", "volsync-dr.io/action-message").unwrap_or_default();
    assert_eq!(
        annotation(&pair, SECONDARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded"),
        "{message}"
    );
    assert_eq!(
        pair.read(SECONDARY, NS, "db", "generation").as_deref(),
        Some("v4"),
        "the second-newest point's data"
    );
    assert_eq!(
        annotation(&pair, SECONDARY, "db", "volsync-dr.io/role").as_deref(),
        Some("primary")
    );
    assert_eq!(kept_on_b(&pair).len(), 3, "the points outlive the failover");

    // Unprotect (from B, the primary now) removes them; the PVC and its data stay.
    annotate(&pair, SECONDARY, "db", "volsync-dr.io/protect", "false");
    pair.wait_for(30, "restore points removed", |p| kept_on_b(p).is_empty().then_some(()))
        .await;
    assert_eq!(pair.read(SECONDARY, NS, "db", "generation").as_deref(), Some("v4"));
    drop(b);
}
