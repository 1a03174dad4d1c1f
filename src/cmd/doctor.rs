//! `volsync-dr doctor`: preflight of this cluster and its peer. Reads what each has (CRDs,
//! storage and snapshot classes, protected PVCs, the webhook certificate) and asks the peer,
//! with the peer kubeconfig's identity, whether it may do what volsync-dr does there; the
//! verdicts are `report::doctor`'s. Exit status 1 when any check fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Client, ResourceExt};

use super::bounded;
use crate::cli::DoctorArgs;
use crate::error::{Error, Result};
use crate::model::keys;
use crate::report::doctor::{self, Check, REQUIRED_ACCESS};

/// What one cluster has, as far as the checks need.
struct Facts {
    crds: BTreeSet<String>,
    storage_classes: BTreeSet<String>,
    snapshot_classes: BTreeSet<String>,
    /// Protected PVCs this cluster is primary for.
    primaries: Vec<PersistentVolumeClaim>,
    webhook_cert: Option<String>,
}

async fn facts(client: &Client, namespace: &str, timeout: Duration) -> Result<Facts, String> {
    let names = |items: Vec<String>| items.into_iter().collect::<BTreeSet<_>>();
    let all = ListParams::default();
    let crds = served_crds(client, timeout).await?;
    let scs: Api<StorageClass> = Api::all(client.clone());
    let storage_classes = names(
        bounded(timeout, "list StorageClasses", || scs.list(&all))
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect(),
    );
    let snapshot_classes = if crds.contains("volumesnapshotclasses.snapshot.storage.k8s.io") {
        let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
        names(
            bounded(timeout, "list VolumeSnapshotClasses", || api.list(&all))
                .await?
                .items
                .iter()
                .map(|c| c.name_any())
                .collect(),
        )
    } else {
        BTreeSet::new()
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let primaries = bounded(timeout, "list PVCs", || pvcs.list(&all))
        .await?
        .items
        .into_iter()
        .filter(|p| {
            let a = p.annotations();
            a.get(keys::PROTECT).map(String::as_str) == Some("true")
                && a.get(keys::ROLE).map(String::as_str) != Some("secondary")
        })
        .collect();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let webhook_cert = bounded(timeout, "read the webhook Secret", || {
        secrets.get_opt("volsync-dr-webhook-tls")
    })
    .await?
    .and_then(|s| {
        s.data?
            .get("tls.crt")
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
    });
    Ok(Facts {
        crds,
        storage_classes,
        snapshot_classes,
        primaries,
        webhook_cert,
    })
}

/// Which of the CRDs volsync-dr needs the cluster serves, as `plural.group`. Found by API
/// discovery, which every authenticated identity may read (listing CRDs needs a permission
/// the peer kubeconfig's ServiceAccount does not have, and should not).
pub(super) async fn served_crds(client: &Client, timeout: Duration) -> Result<BTreeSet<String>, String> {
    let mut served = BTreeSet::new();
    let groups = bounded(timeout, "read API discovery", || client.list_api_groups()).await?;
    for (crd, _) in doctor::REQUIRED_CRDS {
        let Some((plural, group)) = crd.split_once('.') else {
            continue;
        };
        let Some(version) = groups
            .groups
            .iter()
            .find(|g| g.name == group)
            .and_then(|g| g.preferred_version.as_ref().or(g.versions.first()))
        else {
            continue;
        };
        let resources = bounded(timeout, "read API discovery", || {
            client.list_api_group_resources(&version.group_version)
        })
        .await?;
        if resources.resources.iter().any(|r| r.name == plural) {
            served.insert((*crd).to_string());
        }
    }
    Ok(served)
}

/// Which of `access` (group, resource, verbs) the client's identity may not do, as
/// `verb group/resource` (with ` in NAMESPACE` when asked of one namespace).
pub(super) async fn denied(
    client: &Client,
    timeout: Duration,
    access: &[(&str, &str, &[&str])],
    namespace: Option<&str>,
) -> Result<Vec<String>, String> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let post = PostParams::default();
    let mut denied = Vec::new();
    for (group, resource, verbs) in access {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (*resource, None),
        };
        for verb in *verbs {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(group.to_string()),
                        resource: Some(resource.to_string()),
                        subresource: subresource.clone(),
                        verb: Some(verb.to_string()),
                        namespace: namespace.map(str::to_string),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = bounded(timeout, "SelfSubjectAccessReview", || api.create(&post, &review)).await?;
            if !answer.status.is_some_and(|s| s.allowed) {
                let full = subresource
                    .as_ref()
                    .map(|s| format!("{resource}/{s}"))
                    .unwrap_or(resource.to_string());
                let scope = namespace.map(|n| format!(" in {n}")).unwrap_or_default();
                denied.push(format!("{verb} {group}/{full}{scope}"));
            }
        }
    }
    Ok(denied)
}

/// Class → the PVCs that need it, from `pick` over the given primaries.
fn wanted(
    primaries: &[PersistentVolumeClaim],
    pick: impl Fn(&PersistentVolumeClaim) -> Option<String>,
    setting: Option<(&str, &String)>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in primaries {
        if let Some(class) = pick(p) {
            out.entry(class)
                .or_default()
                .insert(format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()));
        }
    }
    if let Some((flag, class)) = setting {
        out.entry(class.clone()).or_default().insert(flag.to_string());
    }
    out
}

pub async fn run(args: &DoctorArgs) -> Result<()> {
    let (local, peer, timeout) = super::connect_pair(&args.pair).await?;
    let (cluster_name, peer_name) = (&args.pair.cluster_name, &args.pair.peer_name);
    let here = facts(&local, &args.namespace, timeout).await;
    let there = facts(&peer.client(), &args.namespace, timeout).await;
    let mut checks: Vec<Check> = Vec::new();
    let service_dns = format!("volsync-dr-webhook.{}.svc", args.namespace);
    let now = jiff::Timestamp::now().as_second();
    let annotation = |key: &'static str| move |p: &PersistentVolumeClaim| p.annotations().get(key).cloned();
    let destination_class = |p: &PersistentVolumeClaim| {
        p.annotations()
            .get(keys::DESTINATION_STORAGE_CLASS)
            .cloned()
            .or_else(|| p.spec.as_ref()?.storage_class_name.clone())
    };
    let sides = [
        (
            cluster_name,
            &here,
            &there,
            args.volume_snapshot_class
                .as_ref()
                .map(|c| ("--volume-snapshot-class", c)),
        ),
        (
            peer_name,
            &there,
            &here,
            args.destination_volume_snapshot_class
                .as_ref()
                .map(|c| ("--destination-volume-snapshot-class", c)),
        ),
    ];
    for (cluster, facts, other, snapshot_setting) in sides {
        let f = match facts {
            Ok(f) => f,
            Err(e) => {
                checks.push(doctor::unreachable(
                    cluster,
                    e,
                    "check the kubeconfig (KUBECONFIG for this cluster, --peer-kubeconfig for the peer) and that the API server answers",
                ));
                continue;
            }
        };
        checks.push(doctor::crds(cluster, &f.crds));
        let mut snapshots = wanted(&f.primaries, annotation(keys::VOLUME_SNAPSHOT_CLASS), snapshot_setting);
        let mut storage = BTreeMap::new();
        if let Ok(o) = other {
            for (class, users) in wanted(&o.primaries, annotation(keys::DESTINATION_VOLUME_SNAPSHOT_CLASS), None) {
                snapshots.entry(class).or_default().extend(users);
            }
            storage = wanted(&o.primaries, destination_class, None);
        }
        checks.push(doctor::classes(
            cluster,
            "snapshot classes",
            "VolumeSnapshotClass",
            &snapshots,
            &f.snapshot_classes,
        ));
        checks.push(doctor::classes(
            cluster,
            "storage classes",
            "StorageClass",
            &storage,
            &f.storage_classes,
        ));
        checks.push(match &f.webhook_cert {
            Some(pem) => doctor::certificate(cluster, pem, &service_dns, now),
            None => Check {
                cluster: cluster.to_string(),
                name: "webhook certificate",
                ok: false,
                detail: format!("Secret {}/volsync-dr-webhook-tls not found", args.namespace),
                fix: Some("create it from `volsync-dr certs` (kubectl -n volsync-dr create secret tls volsync-dr-webhook-tls --cert certs/tls.crt --key certs/tls.key) or install the cert-manager overlay".into()),
            },
        });
    }
    if there.is_ok() {
        checks.push(match denied(&peer.client(), timeout, REQUIRED_ACCESS, None).await {
            Ok(denied) => doctor::access(peer_name, &denied),
            Err(e) => doctor::unreachable(peer_name, &e, "check --peer-kubeconfig and that the API server answers"),
        });
    }
    print!("{}", doctor::render(&checks));
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        return Err(Error::ChecksFailed {
            failed,
            total: checks.len(),
        });
    }
    Ok(())
}
