//! Objects the actions create, pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedObjectReference};
use kube::api::{DynamicObject, ObjectMeta};
use serde_json::{Value, json};

use crate::model::keys;
use crate::model::names::{Names, RSYNC_TLS_PORT};
use crate::model::volsync::{
    CopyMethod, MoverConfig, ReplicationSource, ReplicationSourceRsyncTlsSpec, ReplicationSourceSpec,
    ReplicationSourceTriggerSpec, VolumeOptions,
};

fn meta(names: &Names, namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(names.labels()),
        annotations: Some(names.annotations()),
        ..ObjectMeta::default()
    }
}

/// `restored-P`: a PVC like the application's, filled by VolSync's volume populator from the
/// ReplicationDestination's latest image (the last complete sync).
/// `from`: a kept restore point (a VolumeSnapshot) instead of the RD's latest image.
pub fn restored_pvc(
    pvc: &PersistentVolumeClaim,
    names: &Names,
    namespace: &str,
    from: Option<&str>,
) -> PersistentVolumeClaim {
    let spec = pvc.spec.clone().unwrap_or_default();
    PersistentVolumeClaim {
        metadata: meta(names, namespace, &names.restored_pvc),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes,
            resources: spec.resources,
            storage_class_name: spec.storage_class_name,
            volume_mode: spec.volume_mode,
            data_source_ref: Some(match from {
                Some(snapshot) => TypedObjectReference {
                    api_group: Some("snapshot.storage.k8s.io".into()),
                    kind: "VolumeSnapshot".into(),
                    name: snapshot.to_string(),
                    namespace: None,
                },
                None => TypedObjectReference {
                    api_group: Some("volsync.backube".into()),
                    kind: "ReplicationDestination".into(),
                    name: names.replication_destination.clone(),
                    namespace: None,
                },
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// `rs-P-local`: copies `restored-P` into the ReplicationDestination on the same cluster
/// (its published in-cluster address, port 8000), once, for the request `trigger`. Direct:
/// restored-P is not in use, so no point-in-time copy of it is needed.
pub fn local_source(names: &Names, namespace: &str, rd_address: &str, trigger: &str) -> ReplicationSource {
    ReplicationSource {
        metadata: meta(names, namespace, &names.replication_source_local),
        spec: ReplicationSourceSpec {
            source_pvc: Some(names.restored_pvc.clone()),
            trigger: Some(ReplicationSourceTriggerSpec {
                schedule: None,
                manual: Some(trigger.to_string()),
            }),
            paused: None,
            rsync_tls: Some(ReplicationSourceRsyncTlsSpec {
                address: Some(rd_address.to_string()),
                port: Some(RSYNC_TLS_PORT),
                key_secret: Some(names.secret.clone()),
                volume: VolumeOptions {
                    copy_method: Some(CopyMethod::Direct),
                    ..VolumeOptions::default()
                },
                mover: MoverConfig {
                    mover_security_context: Some(super::protect::mover_security_context()),
                    ..MoverConfig::default()
                },
            }),
        },
        status: None,
    }
}

/// What a kept copy is: the copy of `P` that diverged from the one that took over.
pub struct KeptCopy<'a> {
    pub names: &'a Names,
    pub namespace: &'a str,
    /// `P-before-REQUEST`.
    pub name: &'a str,
    /// The request about to overwrite it.
    pub request: &'a str,
    /// The takeover generation it diverged from, when recorded.
    pub takeover_generation: Option<&'a str>,
    pub class: Option<&'a str>,
}

/// `P-before-REQUEST`: a VolumeSnapshot of the PVC `P` taken before the request overwrites it
/// (failback, on the returning cluster). Labelled with the PVC and as a kept copy, annotated
/// with the request and the takeover it diverged from (its creation time is when); no owner,
/// so nothing deletes it with anything else.
pub fn kept_copy(kept: &KeptCopy) -> DynamicObject {
    let KeptCopy {
        names,
        namespace,
        name,
        request,
        takeover_generation,
        class,
    } = *kept;
    let mut labels = names.labels();
    labels.insert(keys::KEPT_COPY.to_string(), "true".to_string());
    let mut annotations = names.annotations();
    let diverged = match takeover_generation {
        Some(g) => format!("; diverged from the copy that took over (takeover generation {g})"),
        None => String::new(),
    };
    annotations.insert(keys::KEPT_COPY.to_string(), format!("before {request}{diverged}"));
    let mut spec = json!({"source": {"persistentVolumeClaimName": names.pvc}});
    if let Some(class) = class {
        spec["volumeSnapshotClassName"] = json!(class);
    }
    let gvk = kube::api::GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot");
    let mut snapshot = DynamicObject::new(name, &kube::api::ApiResource::from_gvk(&gvk)).within(namespace);
    snapshot.metadata.labels = Some(labels);
    snapshot.metadata.annotations = Some(annotations);
    snapshot.data = json!({"spec": spec});
    snapshot
}

/// Merge patch that keeps a snapshot when its ReplicationDestination is deleted, and labels it
/// as ours so it is found and removed at the end of the failover.
pub fn keep_snapshot_patch(names: &Names) -> Value {
    let mut labels: BTreeMap<String, String> = names.labels();
    labels.insert(keys::VOLSYNC_DO_NOT_DELETE.to_string(), "true".to_string());
    json!({"metadata": {"labels": labels}})
}

/// A pair's Secret given a new key (a rotation), stamped with when.
pub fn key_patch(psk: &crate::plan::Psk, created: &str) -> Value {
    use base64::Engine as _;
    json!({
        "metadata": {"annotations": {keys::KEY_CREATED: created}},
        "data": {keys::PSK_KEY: base64::engine::general_purpose::STANDARD.encode(psk.expose())}
    })
}

/// `rs-P` paused (or running again: `paused` removed, as protection writes it).
pub fn pause_patch(paused: bool) -> Value {
    json!({"spec": {"paused": if paused { json!(true) } else { Value::Null }}})
}

/// The one-time ReplicationSource: the scheduled one's spec with a manual trigger instead of the
/// schedule (VolSync syncs once per new trigger value).
pub fn one_time_source(scheduled: &ReplicationSource, name: &str, trigger: &str) -> ReplicationSource {
    let mut rs = ReplicationSource {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: scheduled.metadata.namespace.clone(),
            labels: scheduled.metadata.labels.clone(),
            annotations: scheduled.metadata.annotations.clone(),
            ..Default::default()
        },
        spec: scheduled.spec.clone(),
        status: None,
    };
    rs.spec.trigger = Some(ReplicationSourceTriggerSpec {
        schedule: None,
        manual: Some(trigger.to_string()),
    });
    rs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_copy_says_what_it_is_and_nothing_owns_it() {
        let names = Names::for_pvc("db");
        let name = names.kept_copy("failback:1");
        let cases = [
            (
                Some("3"),
                Some("csi-snap"),
                "before failback:1; diverged from the copy that took over (takeover generation 3)",
            ),
            (None, None, "before failback:1"),
        ];
        for (generation, class, said) in cases {
            let snapshot = kept_copy(&KeptCopy {
                names: &names,
                namespace: "n",
                name: &name,
                request: "failback:1",
                takeover_generation: generation,
                class,
            });
            let json = serde_json::to_value(&snapshot).expect("json");
            assert_eq!(json["metadata"]["name"], "db-before-failback-1");
            assert_eq!(json["metadata"]["namespace"], "n");
            assert_eq!(json["metadata"]["labels"][keys::KEPT_COPY], "true");
            assert_eq!(json["metadata"]["annotations"][keys::KEPT_COPY], said);
            assert!(
                json["metadata"].get("ownerReferences").is_none(),
                "nothing deletes it with its owner"
            );
            assert_eq!(json["spec"]["source"], json!({"persistentVolumeClaimName": "db"}));
            assert_eq!(
                json["spec"].get("volumeSnapshotClassName").and_then(|c| c.as_str()),
                class
            );
        }
    }

    #[test]
    fn restore_objects() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "n", "annotations": {"volsync-dr.io/protect": "true"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": "5Gi"}}, "volumeName": "pv-1"}
        }))
        .expect("pvc");
        let names = Names::for_pvc("db");
        let from_point =
            serde_json::to_value(restored_pvc(&pvc, &names, "n", Some("volsync-rd-db-dst-1"))).expect("json");
        assert_eq!(
            from_point["spec"]["dataSourceRef"],
            json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "volsync-rd-db-dst-1"})
        );
        let restored = serde_json::to_value(restored_pvc(&pvc, &names, "n", None)).expect("json");
        assert_eq!(restored["metadata"]["name"], "restored-db");
        assert_eq!(restored["metadata"]["labels"][keys::MANAGED_BY], "volsync-dr");
        assert!(
            restored["metadata"]["annotations"].get(keys::PROTECT).is_none(),
            "never protected itself"
        );
        assert_eq!(
            restored["spec"]["dataSourceRef"],
            json!({"apiGroup": "volsync.backube", "kind": "ReplicationDestination", "name": "rd-db"})
        );
        assert_eq!(restored["spec"]["storageClassName"], "fast");
        assert_eq!(restored["spec"]["resources"]["requests"]["storage"], "5Gi");
        assert!(restored["spec"].get("volumeName").is_none(), "a new volume");

        let local = serde_json::to_value(local_source(&names, "n", "10.96.0.12", "failover:1")).expect("json");
        assert_eq!(local["metadata"]["name"], "rs-db-local");
        assert_eq!(local["spec"]["sourcePVC"], "restored-db");
        assert_eq!(local["spec"]["trigger"], json!({"manual": "failover:1"}));
        let tls = &local["spec"]["rsyncTLS"];
        assert_eq!(
            (&tls["address"], &tls["port"], &tls["keySecret"], &tls["copyMethod"]),
            (
                &json!("10.96.0.12"),
                &json!(8000),
                &json!("volsync-dr-db"),
                &json!("Direct")
            )
        );
        let keep = keep_snapshot_patch(&names);
        assert_eq!(keep["metadata"]["labels"][keys::VOLSYNC_DO_NOT_DELETE], "true");
        assert_eq!(keep["metadata"]["labels"][keys::PVC_LABEL], "db");
    }

    #[test]
    fn same_endpoint_manual_trigger() {
        let mut scheduled = ReplicationSource::new(
            "rs-p",
            ReplicationSourceSpec {
                source_pvc: Some("p".into()),
                trigger: Some(ReplicationSourceTriggerSpec {
                    schedule: Some("@hourly".into()),
                    manual: None,
                }),
                ..Default::default()
            },
        );
        scheduled.metadata.namespace = Some("n".into());
        scheduled.metadata.resource_version = Some("7".into());
        let once = one_time_source(&scheduled, "rs-p-latest", "sync-now:1");
        assert_eq!(once.metadata.name.as_deref(), Some("rs-p-latest"));
        assert_eq!(once.metadata.resource_version, None);
        assert_eq!(once.spec.source_pvc.as_deref(), Some("p"));
        assert_eq!(
            once.spec.trigger,
            Some(ReplicationSourceTriggerSpec {
                schedule: None,
                manual: Some("sync-now:1".into())
            })
        );
    }
}
