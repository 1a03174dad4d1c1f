//! A live view of this cluster's DRPolicies and namespace labels (reflector caches), read by the
//! webhook without a remote call and by the sweep. It says "not known yet" until both caches
//! have listed once, so nothing is decided (least of all released) from an empty cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::model::policy::DRPolicy;
use crate::plan::policy::{PolicyLookup, PolicySet};

pub struct PolicyWatch {
    set: watch::Receiver<Option<Arc<PolicySet>>>,
    policies: Store<DRPolicy>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    namespaces_ready: Arc<AtomicBool>,
    /// Bumped when the policies or a namespace's labels change: the sweep runs again.
    changes: watch::Sender<u64>,
}

impl PolicyWatch {
    /// Notified on every change of the policies or of namespace labels.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A policy as cached (status included).
    pub fn policy(&self, name: &str) -> Option<Arc<DRPolicy>> {
        self.policies.get(&ObjectRef::new(name))
    }
}

impl PolicyLookup for PolicyWatch {
    fn policies(&self) -> Option<Arc<PolicySet>> {
        if !self.namespaces_ready.load(Ordering::Acquire) {
            return None;
        }
        self.set.borrow().clone()
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .map(|ns| ns.labels().clone())
    }
}

/// Whether this cluster serves DRPolicies at all; `Err` carries why policies are off.
async fn served(client: &Client) -> Result<(), String> {
    let api: Api<DRPolicy> = Api::all(client.clone());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(
            "the DRPolicy CRD is not installed (kubectl apply -f deploy/crds/drpolicy.yaml, then restart)".to_string(),
        ),
        Err(e) => Err(format!("cannot list DRPolicies: {e}")),
    }
}

/// Start watching; `None` (with the reason logged) when the cluster has no DRPolicy CRD or it
/// cannot be read: cluster-wide protection is then off, and PVCs a policy protected keep
/// their annotations (nothing is released).
pub async fn start(client: Client, peer_name: String) -> Option<(Arc<PolicyWatch>, impl Future<Output = ()>)> {
    if let Err(why) = served(&client).await {
        tracing::warn!(reason = %why, "cluster-wide protection (DRPolicy) is off");
        return None;
    }
    let (set_tx, set_rx) = watch::channel(None);
    let (changes, _) = watch::channel(0u64);
    let (policy_reader, policy_writer) = reflector::store::<DRPolicy>();
    let (ns_reader, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let namespaces_ready = Arc::new(AtomicBool::new(false));
    let view = Arc::new(PolicyWatch {
        set: set_rx,
        policies: policy_reader.clone(),
        namespaces: ns_reader.clone(),
        namespaces_ready: namespaces_ready.clone(),
        changes: changes.clone(),
    });

    let policies = {
        let changes = changes.clone();
        let api: Api<DRPolicy> = Api::all(client.clone());
        let stream = reflector::reflector(
            policy_writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                match stream.try_next().await {
                    Ok(Some(watcher::Event::Init | watcher::Event::InitApply(_))) => {}
                    Ok(Some(_)) => {
                        // Status writes come back here too; only a different set wakes the sweep.
                        let set =
                            PolicySet::from_policies(policy_reader.state().iter().map(|p| p.as_ref()), &peer_name);
                        let changed = set_tx.borrow().as_deref() != Some(&set);
                        if changed {
                            set_tx.send_replace(Some(Arc::new(set)));
                            changes.send_modify(|n| *n += 1);
                        }
                    }
                    Ok(None) => return,
                    Err(e) => tracing::warn!(error = %e, "watching DRPolicies"),
                }
            }
        }
    };
    let namespaces = {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let stream = reflector::reflector(ns_writer, watcher(api, watcher::Config::default()).default_backoff());
        async move {
            let mut labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
            let mut stream = std::pin::pin!(stream);
            loop {
                match stream.next().await {
                    Some(Ok(watcher::Event::InitDone)) => {
                        namespaces_ready.store(true, Ordering::Release);
                        changes.send_modify(|n| *n += 1);
                    }
                    Some(Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns))) => {
                        let previous = labels.insert(ns.name_any(), ns.labels().clone());
                        if previous.as_ref() != Some(ns.labels()) && namespaces_ready.load(Ordering::Acquire) {
                            changes.send_modify(|n| *n += 1);
                        }
                    }
                    Some(Ok(watcher::Event::Delete(ns))) => {
                        labels.remove(&ns.name_any());
                    }
                    Some(Ok(watcher::Event::Init)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "watching namespaces"),
                    None => return,
                }
            }
        }
    };
    let run = async move {
        tokio::join!(policies, namespaces);
    };
    Some((view, run))
}
