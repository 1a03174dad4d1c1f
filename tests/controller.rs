//! The controller's decisions, fast: one reconcile pass at a time, called in-process against two
//! test API servers and the VolSync simulator (no child processes, no watch). One test per
//! branch of the protection pass and per outcome of an action step (act, wait, advance, done,
//! fail); the flows end to end are in `flows.rs`, through real processes.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::runtime::controller::Action;
use kube::{Api, Client};
use serde_json::{Value, json};
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};
use volsync_dr::cli::{Cli, Command};
use volsync_dr::cluster::peer::Peer;
use volsync_dr::config::RunConfig;
use volsync_dr::controller::cache::CachedPvc;
use volsync_dr::controller::context::Context;
use volsync_dr::controller::reconcile::reconcile;
use volsync_dr::metrics::Metrics;

const NS: &str = "default";
/// The controller's first requeue while the destination's address is unknown, and its requeue
/// after success.
const PENDING_RETRY: Duration = Duration::from_millis(250);
const RESYNC: Duration = Duration::from_secs(30);

struct Harness {
    pair: ClusterPair,
    a: Arc<Context>,
    b: Arc<Context>,
}

async fn client(pair: &ClusterPair, cluster: &str) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(pair.kubeconfig(cluster)).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

async fn context(pair: &ClusterPair, cluster: &str, extra: &[&str]) -> Arc<Context> {
    let peer = if cluster == PRIMARY { SECONDARY } else { PRIMARY };
    let mut argv: Vec<String> = [
        "volsync-dr",
        "run",
        "--cluster-name",
        cluster,
        "--peer-name",
        peer,
        "--peer-kubeconfig",
        pair.kubeconfig(peer).to_str().expect("path"),
        "--resync-seconds",
        "30",
        "--leader-elect",
        "false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    let Command::Run(args) = Cli::try_parse_from(argv).expect("arguments").command else {
        panic!("not the run command");
    };
    let config = RunConfig::from_args(&args).expect("configuration");
    let peer = Peer::connect(peer, &pair.kubeconfig(peer), Duration::from_secs(2))
        .await
        .expect("peer");
    let local = client(pair, cluster).await;
    Arc::new(Context::new(local, peer, config, Arc::new(Metrics::new()), None))
}

async fn harness(extra: &[&str]) -> Harness {
    let pair = ClusterPair::start().await;
    let a = context(&pair, PRIMARY, extra).await;
    let b = context(&pair, SECONDARY, extra).await;
    Harness { pair, a, b }
}

fn pvc(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS, "annotations": annotations},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

impl Harness {
    fn ctx(&self, cluster: &str) -> Arc<Context> {
        if cluster == PRIMARY {
            self.a.clone()
        } else {
            self.b.clone()
        }
    }

    /// One reconcile pass of the PVC as the API server has it now, read as the watcher's
    /// cache holds it.
    async fn pass(&self, cluster: &str, name: &str) -> Action {
        let ctx = self.ctx(cluster);
        let pvcs: Api<CachedPvc> = Api::namespaced(ctx.here.client(), NS);
        let pvc = pvcs.get(name).await.expect("read PVC");
        reconcile(Arc::new(pvc), ctx).await.expect("reconcile")
    }

    fn object(&self, cluster: &str, plural: &str, name: &str) -> Option<Value> {
        self.pair.object(cluster, plural, NS, name)
    }

    fn annotation(&self, cluster: &str, pvc: &str, key: &str) -> Option<String> {
        let object = self.object(cluster, "persistentvolumeclaims", pvc)?;
        object["metadata"]["annotations"][key].as_str().map(str::to_string)
    }

    fn annotate(&self, cluster: &str, pvc: &str, annotations: Value) {
        self.patch(cluster, pvc, json!({"metadata": {"annotations": annotations}}));
    }

    fn patch(&self, cluster: &str, pvc: &str, body: Value) {
        let server = self.pair.server(cluster);
        let rt = server
            .store()
            .find_type("", "v1", "persistentvolumeclaims")
            .expect("type");
        server
            .store()
            .patch(
                &rt,
                NS,
                pvc,
                testkit::apiserver::store::PatchType::Merge,
                &body,
                testkit::apiserver::store::Subresource::Main,
                &Default::default(),
            )
            .expect("patch PVC");
    }

    fn writes(&self) -> (u64, u64) {
        (self.pair.a.stats().writes(), self.pair.b.stats().writes())
    }

    fn events(&self, cluster: &str, reason: &str) -> Vec<String> {
        let server = self.pair.server(cluster);
        let Some(rt) = server.store().find_type("events.k8s.io", "v1", "events") else {
            return Vec::new();
        };
        let (items, _) = server
            .store()
            .list(&rt, Some(NS), &Default::default(), &Default::default());
        items
            .iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| e["note"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The action on this PVC ended as failed: its message.
    fn failed(&self, cluster: &str, pvc: &str) -> String {
        let phase = self.annotation(cluster, pvc, "volsync-dr.io/action-phase");
        assert_eq!(phase.as_deref(), Some("Failed"));
        self.annotation(cluster, pvc, "volsync-dr.io/action-message")
            .unwrap_or_default()
    }

    /// `sync-now:1` requested on a protected PVC whose VolSync is held back: it waits for the sync.
    async fn sync_now_waiting(&self, name: &str) {
        self.protected(name).await;
        self.pair.simulator.pause(PRIMARY);
        self.annotate(PRIMARY, name, json!({"volsync-dr.io/action": "sync-now:1"}));
        assert_eq!(self.pass(PRIMARY, name).await, Action::requeue(Duration::from_secs(1)));
        let step = self.annotation(PRIMARY, name, "volsync-dr.io/action-step");
        assert_eq!(step.as_deref(), Some("wait-for-sync"));
    }

    /// A protected pair: stamped, protected, and the destination's address known.
    async fn protected(&self, name: &str) {
        self.pair
            .create_bound_pvc(PRIMARY, pvc(name, json!({"volsync-dr.io/protect": "true"})))
            .await;
        assert_eq!(self.pass(PRIMARY, name).await, Action::await_change(), "stamped");
        assert_eq!(
            self.pass(PRIMARY, name).await,
            Action::requeue(PENDING_RETRY),
            "pending"
        );
        self.pair
            .wait_for(10, "the destination's address on cluster-b", |p| {
                let rd = p.object(SECONDARY, "replicationdestinations", NS, &format!("rd-{name}"));
                rd.filter(|rd| rd["status"]["rsyncTLS"]["address"].is_string())
            })
            .await;
        let action = self.pass(PRIMARY, name).await;
        assert_eq!(
            action,
            Action::requeue(RESYNC),
            "Protected: looked at again at the resync"
        );
        assert_eq!(
            self.annotation(PRIMARY, name, "volsync-dr.io/state").as_deref(),
            Some("Protected")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volsync_pvcs_and_unprotected_ones_are_left_alone_without_a_write() {
    let h = harness(&[]).await;
    let mut owned = pvc("volsync-cache", json!({"volsync-dr.io/protect": "true"}));
    owned["metadata"]["labels"] = json!({"app.kubernetes.io/created-by": "volsync"});
    h.pair.create(PRIMARY, owned);
    h.pair.create(PRIMARY, pvc("plain", json!({})));
    let before = h.writes();
    assert_eq!(h.pass(PRIMARY, "volsync-cache").await, Action::await_change());
    assert_eq!(h.pass(PRIMARY, "plain").await, Action::await_change());
    assert_eq!(h.writes(), before, "no write on either cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_annotations_are_reported_and_nothing_changes() {
    let h = harness(&[]).await;
    h.pair.create(
        PRIMARY,
        pvc(
            "db",
            json!({"volsync-dr.io/protect": "true", "volsync-dr.io/schedule": "often"}),
        ),
    );
    let pvcs_before = h.object(PRIMARY, "persistentvolumeclaims", "db").expect("pvc");
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    let events = h.events(PRIMARY, "InvalidAnnotation");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains("volsync-dr.io/schedule") && events[0].contains("often"),
        "{events:?}"
    );
    let after = h.object(PRIMARY, "persistentvolumeclaims", "db").expect("pvc");
    for field in ["annotations", "labels", "finalizers"] {
        let (was, is) = (&pvcs_before["metadata"][field], &after["metadata"][field]);
        assert_eq!(is, was, "the PVC's {field} are not changed");
    }
    assert_eq!(h.pair.b.stats().writes(), 0, "nothing on the peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_pvc_is_stamped_then_protected_on_both_clusters() {
    let h = harness(&[]).await;
    h.pair
        .create_bound_pvc(PRIMARY, pvc("db", json!({"volsync-dr.io/protect": "true"})))
        .await;
    // Stamp: what the webhook would have added, and nothing else yet.
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    let stamped = h.object(PRIMARY, "persistentvolumeclaims", "db").expect("pvc");
    assert_eq!(stamped["metadata"]["finalizers"], json!(["volsync-dr.io/protection"]));
    assert_eq!(stamped["metadata"]["labels"]["volsync-dr.io/protected"], "true");
    assert!(h.object(PRIMARY, "secrets", "volsync-dr-db").is_none());
    // Protect, before the destination has an address: Pending, looked at again soon.
    h.pair.simulator.pause(SECONDARY);
    assert_eq!(h.pass(PRIMARY, "db").await, Action::requeue(PENDING_RETRY));
    assert_eq!(
        h.annotation(PRIMARY, "db", "volsync-dr.io/state").as_deref(),
        Some("Pending")
    );
    let key_here = h.object(PRIMARY, "secrets", "volsync-dr-db").expect("Secret here");
    let key_there = h
        .object(SECONDARY, "secrets", "volsync-dr-db")
        .expect("Secret on the peer");
    assert_eq!(key_here["data"], key_there["data"], "one key for the pair");
    assert!(
        h.object(SECONDARY, "persistentvolumeclaims", "db").is_some(),
        "counterpart PVC"
    );
    assert!(h.object(SECONDARY, "replicationdestinations", "rd-db").is_some());
    assert!(
        h.object(PRIMARY, "replicationsources", "rs-db").is_none(),
        "no source without an address"
    );
    // The address comes: the source here, Protected.
    h.pair.simulator.resume(SECONDARY);
    h.pair
        .wait_for(10, "the destination's address", |p| {
            p.object(SECONDARY, "replicationdestinations", NS, "rd-db")
                .filter(|rd| rd["status"]["rsyncTLS"]["address"].is_string())
        })
        .await;
    assert_eq!(h.pass(PRIMARY, "db").await, Action::requeue(RESYNC));
    assert_eq!(
        h.annotation(PRIMARY, "db", "volsync-dr.io/state").as_deref(),
        Some("Protected")
    );
    let rs = h
        .object(PRIMARY, "replicationsources", "rs-db")
        .expect("ReplicationSource");
    assert!(rs["spec"]["rsyncTLS"]["address"].is_string(), "{rs}");
    // With VolSync quiet (its status changes are news to report), a pass over a protected PVC
    // whose objects match writes nothing.
    h.pair.simulator.pause(PRIMARY);
    h.pair.simulator.pause(SECONDARY);
    h.pass(PRIMARY, "db").await;
    let before = h.writes();
    h.pass(PRIMARY, "db").await;
    assert_eq!(h.writes(), before, "an unchanged pass writes nothing");
    assert_eq!(
        key_here["data"],
        h.object(PRIMARY, "secrets", "volsync-dr-db").expect("Secret")["data"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secondary_mirrors_its_destination_and_drops_a_finalizer_left_from_being_primary() {
    let h = harness(&[]).await;
    h.protected("db").await;
    assert_eq!(h.pass(SECONDARY, "db").await, Action::requeue(RESYNC));
    assert_eq!(
        h.annotation(SECONDARY, "db", "volsync-dr.io/role").as_deref(),
        Some("secondary")
    );
    assert_eq!(
        h.annotation(SECONDARY, "db", "volsync-dr.io/state").as_deref(),
        Some("Protected")
    );
    h.patch(
        SECONDARY,
        "db",
        json!({"metadata": {"finalizers": ["volsync-dr.io/protection", "other"]}}),
    );
    assert_eq!(h.pass(SECONDARY, "db").await, Action::await_change());
    let pvc = h.object(SECONDARY, "persistentvolumeclaims", "db").expect("pvc");
    assert_eq!(pvc["metadata"]["finalizers"], json!(["other"]), "only ours is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprotecting_removes_both_sides_keeps_the_replica_and_releases_the_finalizer_last() {
    let h = harness(&[]).await;
    h.protected("db").await;
    h.annotate(PRIMARY, "db", json!({"volsync-dr.io/protect": "false"}));
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    for (cluster, plural, name) in [
        (PRIMARY, "replicationsources", "rs-db"),
        (PRIMARY, "secrets", "volsync-dr-db"),
        (SECONDARY, "replicationdestinations", "rd-db"),
        (SECONDARY, "secrets", "volsync-dr-db"),
    ] {
        assert!(
            h.object(cluster, plural, name).is_none(),
            "{plural}/{name} on {cluster} removed"
        );
    }
    assert!(
        h.object(SECONDARY, "persistentvolumeclaims", "db").is_some(),
        "the replica is kept"
    );
    let pvc = h.object(PRIMARY, "persistentvolumeclaims", "db").expect("pvc");
    assert!(
        pvc["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty),
        "{pvc}"
    );
    assert!(
        pvc["metadata"]["annotations"]["volsync-dr.io/state"].is_null(),
        "status cleared"
    );
    assert_eq!(h.events(PRIMARY, "Unprotected").len(), 1);
    // Nothing left to do: the next pass writes nothing.
    let before = h.writes();
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    assert_eq!(h.writes(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_run_here_are_refused_without_touching_the_clusters() {
    let h = harness(&[]).await;
    h.protected("db").await;
    h.pair
        .create(PRIMARY, pvc("plain", json!({"volsync-dr.io/action": "migrate:1"})));
    h.annotate(PRIMARY, "db", json!({"volsync-dr.io/action": "failover:1"}));
    let peer_writes = h.pair.b.stats().writes();
    for (name, request, why) in [
        ("db", "failover:1", "failover runs on the secondary"),
        ("plain", "migrate:1", "the PVC is not protected"),
    ] {
        assert_eq!(h.pass(PRIMARY, name).await, Action::await_change());
        assert_eq!(
            h.annotation(PRIMARY, name, "volsync-dr.io/last-action").as_deref(),
            Some(request)
        );
        assert_eq!(
            h.annotation(PRIMARY, name, "volsync-dr.io/action-phase").as_deref(),
            Some("Failed")
        );
        let message = h
            .annotation(PRIMARY, name, "volsync-dr.io/action-message")
            .unwrap_or_default();
        assert!(
            message.starts_with("refused: ") && message.contains(why),
            "{name}: {message}"
        );
    }
    assert_eq!(h.pair.b.stats().writes(), peer_writes, "the peer is not touched");
    assert!(
        h.object(PRIMARY, "replicationsources", "rs-db").is_some(),
        "protection unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_step_acts_waits_advances_and_finishes_from_what_the_clusters_show() {
    let h = harness(&[]).await;
    h.protected("db").await;
    h.pair.simulator.pause(PRIMARY);
    h.annotate(PRIMARY, "db", json!({"volsync-dr.io/action": "sync-now:1"}));
    // Start, advance past the preconditions, act (the one-time sync), advance to its wait, and
    // wait: all in one pass, which ends with the wait's requeue.
    assert_eq!(h.pass(PRIMARY, "db").await, Action::requeue(Duration::from_secs(1)));
    assert_eq!(
        h.annotation(PRIMARY, "db", "volsync-dr.io/action-step").as_deref(),
        Some("wait-for-sync")
    );
    assert_eq!(
        h.annotation(PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Running")
    );
    assert_eq!(
        h.annotation(PRIMARY, "db", "volsync-dr.io/action-message").as_deref(),
        Some("waiting for VolSync to finish the sync")
    );
    let once = h
        .object(PRIMARY, "replicationsources", "rs-db-latest")
        .expect("one-time sync");
    assert_eq!(once["spec"]["trigger"]["manual"], "sync-now:1");
    // Waiting again writes nothing: the message is already shown.
    let before = h.writes();
    h.pass(PRIMARY, "db").await;
    assert_eq!(h.writes(), before, "an unchanged wait writes nothing");
    // VolSync finishes: the pass advances, deletes the one-time sync, and finishes.
    h.pair.simulator.resume(PRIMARY);
    h.pair
        .wait_for(20, "the one-time sync to complete", |p| {
            p.object(PRIMARY, "replicationsources", NS, "rs-db-latest")
                .filter(|rs| rs["status"]["lastManualSync"] == "sync-now:1")
        })
        .await;
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    assert_eq!(
        h.annotation(PRIMARY, "db", "volsync-dr.io/action-phase").as_deref(),
        Some("Succeeded")
    );
    assert_eq!(
        h.annotation(PRIMARY, "db", "volsync-dr.io/last-action").as_deref(),
        Some("sync-now:1")
    );
    assert_eq!(
        h.annotation(PRIMARY, "db", "volsync-dr.io/action-step"),
        None,
        "bookkeeping cleared"
    );
    assert!(h.object(PRIMARY, "replicationsources", "rs-db-latest").is_none());
    let steps = h.events(PRIMARY, "ActionStep");
    assert_eq!(
        steps.len(),
        3,
        "check-preconditions, create and wait finished: {steps:?}"
    );
    // Finished: a pass now protects and does not run the action again.
    assert_eq!(h.pass(PRIMARY, "db").await, Action::requeue(RESYNC));
    assert!(h.object(PRIMARY, "replicationsources", "rs-db-latest").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_timeout_fails_and_removes_what_it_created() {
    let h = harness(&["--action-sync-timeout-seconds", "60"]).await;
    h.sync_now_waiting("db").await;
    // The step started long ago, as far as the record says.
    h.annotate(
        PRIMARY,
        "db",
        json!({"volsync-dr.io/action-step-started": "2026-01-01T00:00:00Z"}),
    );
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    let message = h.failed(PRIMARY, "db");
    assert!(
        message.starts_with("step wait-for-sync did not finish within 60s"),
        "{message}"
    );
    assert!(
        h.object(PRIMARY, "replicationsources", "rs-db-latest").is_none(),
        "the one-time sync is removed"
    );
    assert_eq!(h.events(PRIMARY, "ActionFailed").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_deleted_during_an_action_ends_it_then_releases_the_protection() {
    let h = harness(&[]).await;
    h.sync_now_waiting("db").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(h.a.here.client(), NS);
    pvcs.delete("db", &Default::default()).await.expect("delete");
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    let message = h.failed(PRIMARY, "db");
    assert!(
        message.contains("being deleted") && message.contains("wait-for-sync"),
        "{message}"
    );
    // The next pass releases: objects gone on both sides, then the PVC itself.
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    assert!(h.object(PRIMARY, "replicationsources", "rs-db").is_none());
    assert!(h.object(SECONDARY, "replicationdestinations", "rd-db").is_none());
    h.pair
        .wait_for(10, "the PVC to go once its finalizer is released", |p| {
            p.object(PRIMARY, "persistentvolumeclaims", NS, "db")
                .is_none()
                .then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_precondition_ends_the_action_with_its_reason_and_changes_nothing() {
    let h = harness(&[]).await;
    h.protected("db").await;
    let sources: Api<volsync_dr::model::volsync::ReplicationSource> = Api::namespaced(h.a.here.client(), NS);
    sources
        .delete("rs-db", &Default::default())
        .await
        .expect("delete rs-db");
    h.annotate(PRIMARY, "db", json!({"volsync-dr.io/action": "sync-now:1"}));
    let peer_writes = h.pair.b.stats().writes();
    assert_eq!(h.pass(PRIMARY, "db").await, Action::await_change());
    let message = h.failed(PRIMARY, "db");
    assert!(
        message.starts_with("step check-preconditions failed: sync-now needs the PVC protected first"),
        "{message}"
    );
    assert!(h.object(PRIMARY, "replicationsources", "rs-db-latest").is_none());
    assert_eq!(h.pair.b.stats().writes(), peer_writes, "the peer is not touched");
}
