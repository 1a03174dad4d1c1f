//! The protect flow's objects: PSK Secret on both sides, counterpart PVC and RD on the peer,
//! scheduled RS here.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, SeccompProfile, Secret,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Endpoint, InstanceSettings, PlanError, Psk};
use crate::model::names::Names;
use crate::model::protection::ProtectionSpec;
use crate::model::role::Role;
use crate::model::schedule::Schedule;
use crate::model::volsync::{
    CopyMethod, MoverConfig, ReplicationDestination, ReplicationDestinationRsyncTlsSpec, ReplicationDestinationSpec,
    ReplicationSource, ReplicationSourceRsyncTlsSpec, ReplicationSourceSpec, ReplicationSourceTriggerSpec, ServiceType,
    VolumeOptions,
};
use crate::model::{keys, marks};

/// The unprivileged user VolSync's mover runs as (`nobody`), as in the manual procedure.
const MOVER_ID: i64 = 65534;

/// Settings in force for one PVC once annotations and instance defaults are combined.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveSettings {
    pub schedule: Schedule,
    pub peer: String,
    pub copy_method: CopyMethod,
    pub service_type: ServiceType,
    /// The application PVC's own class on this cluster.
    pub storage_class: Option<String>,
    /// The class of the counterpart PVC and the RD on the peer.
    pub destination_storage_class: Option<String>,
    pub volume_snapshot_class: Option<String>,
    pub destination_volume_snapshot_class: Option<String>,
    /// The explicit application group, the same on both sides so either can act on it.
    pub group: Option<String>,
    /// How many synced images the secondary keeps, when the PVC says (the secondary's instance
    /// keeps them, so the counterpart carries it).
    pub restore_points: Option<u32>,
}

impl EffectiveSettings {
    /// Annotations first, then the instance's defaults.
    pub fn resolve(
        spec: &ProtectionSpec,
        pvc_storage_class: Option<&str>,
        instance: &InstanceSettings,
    ) -> Result<Self, PlanError> {
        let peer = spec.peer.clone().unwrap_or_else(|| instance.peer_name.clone());
        if peer != instance.peer_name {
            return Err(PlanError::UnknownPeer {
                peer,
                known: instance.peer_name.clone(),
            });
        }
        Ok(EffectiveSettings {
            schedule: spec.schedule.clone().unwrap_or_default(),
            peer,
            copy_method: spec.copy_method.unwrap_or_default(),
            service_type: spec.service_type.unwrap_or(instance.default_service_type),
            storage_class: pvc_storage_class.map(str::to_string),
            destination_storage_class: spec
                .destination_storage_class
                .clone()
                .or_else(|| pvc_storage_class.map(str::to_string)),
            volume_snapshot_class: spec
                .volume_snapshot_class
                .clone()
                .or_else(|| instance.volume_snapshot_class.clone()),
            destination_volume_snapshot_class: spec
                .destination_volume_snapshot_class
                .clone()
                .or_else(|| instance.destination_volume_snapshot_class.clone()),
            group: spec.group.clone(),
            restore_points: spec.restore_points,
        })
    }
}

/// Every object protecting one PVC needs. `replication_source` is `None` until the
/// destination's endpoint is known.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtectPlan {
    pub names: Names,
    pub namespace: String,
    pub settings: EffectiveSettings,
    pub primary_secret: Secret,
    pub replication_source: Option<ReplicationSource>,
    pub secondary_secret: Secret,
    pub secondary_pvc: PersistentVolumeClaim,
    pub replication_destination: ReplicationDestination,
}

/// Which cluster an object belongs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Primary,
    Secondary,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Secondary => "secondary",
        }
    }
}

impl ProtectPlan {
    /// The objects as JSON, in the order the protect flow creates them.
    pub fn documents(&self) -> Result<Vec<(Side, serde_json::Value)>, serde_json::Error> {
        let mut docs = vec![
            (Side::Primary, serde_json::to_value(&self.primary_secret)?),
            (Side::Secondary, serde_json::to_value(&self.secondary_secret)?),
            (Side::Secondary, serde_json::to_value(&self.secondary_pvc)?),
            (Side::Secondary, serde_json::to_value(&self.replication_destination)?),
        ];
        if let Some(rs) = &self.replication_source {
            docs.push((Side::Primary, serde_json::to_value(rs)?));
        }
        Ok(docs)
    }
}

/// Plan the protection of `pvc` from this cluster (primary) to the peer (secondary).
pub fn protect(
    pvc: &PersistentVolumeClaim,
    instance: &InstanceSettings,
    psk: &Psk,
    endpoint: Option<&Endpoint>,
) -> Result<ProtectPlan, PlanError> {
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    let spec = ProtectionSpec::parse(&annotations)?;
    protect_with(pvc, &spec, instance, psk, endpoint)
}

/// [`protect`] from annotations already parsed.
pub fn protect_with(
    pvc: &PersistentVolumeClaim,
    spec: &ProtectionSpec,
    instance: &InstanceSettings,
    psk: &Psk,
    endpoint: Option<&Endpoint>,
) -> Result<ProtectPlan, PlanError> {
    let source = SourceVolume::read(pvc, spec)?;
    let settings = EffectiveSettings::resolve(spec, source.storage_class, instance)?;
    let names = Names::for_pvc(source.name);
    let secret = key_secret(&source, &names, psk);
    let mut plan = ProtectPlan {
        namespace: source.namespace.to_string(),
        primary_secret: secret.clone(),
        secondary_secret: secret,
        secondary_pvc: counterpart_pvc(&source, &names, &settings, instance),
        replication_destination: destination(&source, &names, &settings),
        replication_source: None,
        settings,
        names,
    };
    plan.replication_source = endpoint.map(|e| plan.scheduled_source(e));
    Ok(plan)
}

/// The settings in force for a primary PVC (annotations over the instance's defaults).
pub fn settings(pvc: &PersistentVolumeClaim, instance: &InstanceSettings) -> Result<EffectiveSettings, PlanError> {
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    let spec = ProtectionSpec::parse(&annotations)?;
    let storage_class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref());
    EffectiveSettings::resolve(&spec, storage_class, instance)
}

/// What the plan takes from the application's PVC, checked.
struct SourceVolume<'a> {
    name: &'a str,
    namespace: &'a str,
    size: &'a k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    access_modes: Vec<String>,
    storage_class: Option<&'a str>,
    volume_mode: Option<String>,
}

impl<'a> SourceVolume<'a> {
    fn read(pvc: &'a PersistentVolumeClaim, spec: &ProtectionSpec) -> Result<Self, PlanError> {
        let present = |value: Option<&'a String>, field, hint| {
            value
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or(PlanError::MissingField { field, hint })
        };
        let name = present(pvc.metadata.name.as_ref(), "metadata.name", "give the PVC a name")?;
        let namespace = present(
            pvc.metadata.namespace.as_ref(),
            "metadata.namespace",
            "give the PVC a namespace",
        )?;
        if marks::is_volsync_owned(&pvc.metadata) {
            return Err(PlanError::NotProtectable(format!(
                "it carries {}={}, so VolSync manages it",
                keys::CREATED_BY,
                keys::CREATED_BY_VOLSYNC
            )));
        }
        if spec.role == Some(Role::Secondary) {
            return Err(PlanError::NotProtectable(
                "it is the secondary of a pair (volsync-dr.io/role=secondary); protection runs from its primary".into(),
            ));
        }
        let pvc_spec = pvc.spec.as_ref().ok_or(PlanError::MissingField {
            field: "spec",
            hint: "a PVC needs a spec",
        })?;
        let size = pvc_spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .ok_or(PlanError::MissingField {
                field: "spec.resources.requests.storage",
                hint: "the counterpart PVC on the peer is created with the same size",
            })?;
        let access_modes = pvc_spec
            .access_modes
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or(PlanError::MissingField {
                field: "spec.accessModes",
                hint: "the counterpart PVC on the peer is created with the same access modes",
            })?;
        Ok(SourceVolume {
            name,
            namespace,
            size,
            access_modes,
            storage_class: pvc_spec.storage_class_name.as_deref(),
            volume_mode: pvc_spec.volume_mode.clone(),
        })
    }
}

fn object_meta(namespace: &str, names: &Names, object_name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(names.labels()),
        annotations: Some(names.annotations()),
        ..ObjectMeta::default()
    }
}

/// The pair's key, the same Secret on both clusters.
fn key_secret(source: &SourceVolume, names: &Names, psk: &Psk) -> Secret {
    Secret {
        metadata: object_meta(source.namespace, names, &names.secret),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            keys::PSK_KEY.to_string(),
            ByteString(psk.expose().as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The PVC on the peer that receives the replica: same size, access modes and volume mode.
fn counterpart_pvc(
    source: &SourceVolume,
    names: &Names,
    settings: &EffectiveSettings,
    instance: &InstanceSettings,
) -> PersistentVolumeClaim {
    let mut labels = names.labels();
    labels.insert(keys::PROTECTED_LABEL.to_string(), "true".to_string());
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            labels: Some(labels),
            annotations: Some(counterpart_annotations(settings, instance)),
            ..object_meta(source.namespace, names, source.name)
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(source.access_modes.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), source.size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: settings.destination_storage_class.clone(),
            volume_mode: source.volume_mode.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn destination(source: &SourceVolume, names: &Names, settings: &EffectiveSettings) -> ReplicationDestination {
    ReplicationDestination {
        metadata: object_meta(source.namespace, names, &names.replication_destination),
        spec: ReplicationDestinationSpec {
            trigger: None,
            paused: None,
            rsync_tls: Some(ReplicationDestinationRsyncTlsSpec {
                volume: VolumeOptions {
                    copy_method: Some(settings.copy_method),
                    storage_class_name: settings.destination_storage_class.clone(),
                    volume_snapshot_class_name: settings.destination_volume_snapshot_class.clone(),
                    ..VolumeOptions::default()
                },
                destination_pvc: Some(source.name.to_string()),
                key_secret: Some(names.secret.clone()),
                service_type: Some(settings.service_type),
                mover: MoverConfig {
                    mover_security_context: Some(mover_security_context()),
                    ..MoverConfig::default()
                },
                ..ReplicationDestinationRsyncTlsSpec::default()
            }),
        },
        status: None,
    }
}

impl ProtectPlan {
    /// The scheduled ReplicationSource here, once the peer's destination is reachable at
    /// `endpoint`.
    pub fn scheduled_source(&self, endpoint: &Endpoint) -> ReplicationSource {
        let settings = &self.settings;
        ReplicationSource {
            metadata: object_meta(&self.namespace, &self.names, &self.names.replication_source),
            spec: ReplicationSourceSpec {
                source_pvc: Some(self.names.pvc.clone()),
                trigger: Some(ReplicationSourceTriggerSpec {
                    schedule: Some(settings.schedule.to_string()),
                    manual: None,
                }),
                paused: None,
                rsync_tls: Some(ReplicationSourceRsyncTlsSpec {
                    address: Some(endpoint.address.clone()),
                    port: Some(endpoint.port),
                    key_secret: Some(self.names.secret.clone()),
                    volume: VolumeOptions {
                        copy_method: Some(settings.copy_method),
                        storage_class_name: settings.storage_class.clone(),
                        volume_snapshot_class_name: settings.volume_snapshot_class.clone(),
                        ..VolumeOptions::default()
                    },
                    mover: MoverConfig {
                        mover_security_context: Some(mover_security_context()),
                        ..MoverConfig::default()
                    },
                }),
            },
            status: None,
        }
    }
}

/// Whether the PVC is restored from a ReplicationDestination (VolSync's business, never
/// protected).
pub fn is_restore(pvc: &PersistentVolumeClaim) -> bool {
    pvc.spec
        .as_ref()
        .and_then(|s| s.data_source_ref.as_ref())
        .is_some_and(|r| r.kind == "ReplicationDestination")
}

/// The counterpart carries the pair's settings seen from its own side, so either PVC shows the
/// whole state and protection can later run in the other direction with the same settings.
fn counterpart_annotations(settings: &EffectiveSettings, instance: &InstanceSettings) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        (keys::PROTECT.to_string(), "true".to_string()),
        (keys::ROLE.to_string(), Role::Secondary.as_str().to_string()),
        (keys::SCHEDULE.to_string(), settings.schedule.to_string()),
        (keys::COPY_METHOD.to_string(), settings.copy_method.as_str().to_string()),
        (
            keys::SERVICE_TYPE.to_string(),
            settings.service_type.as_str().to_string(),
        ),
    ]);
    if let Some(cluster) = &instance.cluster_name {
        a.insert(keys::PEER.to_string(), cluster.clone());
    }
    if let Some(group) = &settings.group {
        a.insert(keys::GROUP.to_string(), group.clone());
    }
    // Only when said: absent, the counterpart keeps what it was last told (set 1 to stop).
    if let Some(n) = settings.restore_points {
        a.insert(keys::RESTORE_POINTS.to_string(), n.to_string());
    }
    // Classes swap sides: what is "destination" from here is "local" over there.
    let swapped = [
        (keys::DESTINATION_STORAGE_CLASS, &settings.storage_class),
        (keys::VOLUME_SNAPSHOT_CLASS, &settings.destination_volume_snapshot_class),
        (keys::DESTINATION_VOLUME_SNAPSHOT_CLASS, &settings.volume_snapshot_class),
    ];
    for (key, value) in swapped {
        if let Some(value) = value {
            a.insert(key.to_string(), value.clone());
        }
    }
    a
}

pub(crate) fn mover_security_context() -> PodSecurityContext {
    PodSecurityContext {
        fs_group: Some(MOVER_ID),
        run_as_group: Some(MOVER_ID),
        run_as_user: Some(MOVER_ID),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protection::ProtectionSpec;
    use crate::plan::PSK_BYTES;

    fn instance() -> InstanceSettings {
        InstanceSettings {
            cluster_name: Some("cluster-a".into()),
            peer_name: "cluster-b".into(),
            default_service_type: ServiceType::ClusterIP,
            volume_snapshot_class: Some("snap-a".into()),
            destination_volume_snapshot_class: Some("snap-b".into()),
        }
    }

    fn pvc(name: &str, annotations: &[(&str, &str)]) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": name, "namespace": "apps",
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
                "labels": {"app": "db"}
            },
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "sc-cephfs", "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": "10Gi"}}, "volumeName": "pv-123"}
        }))
        .expect("pvc")
    }

    fn psk() -> Psk {
        Psk::from_random_bytes([7; PSK_BYTES])
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            address: "192.168.129.201".into(),
            port: 30532,
        }
    }

    #[test]
    fn plans_every_object_with_design_names() {
        let plan = protect(
            &pvc("pvc-01", &[(keys::PROTECT, "true")]),
            &instance(),
            &psk(),
            Some(&endpoint()),
        )
        .expect("plan");
        let docs = plan.documents().expect("json");
        let summary: Vec<(Side, &str, &str)> = docs
            .iter()
            .map(|(side, d)| {
                (
                    *side,
                    d["kind"].as_str().unwrap_or(""),
                    d["metadata"]["name"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (Side::Primary, "Secret", "volsync-dr-pvc-01"),
                (Side::Secondary, "Secret", "volsync-dr-pvc-01"),
                (Side::Secondary, "PersistentVolumeClaim", "pvc-01"),
                (Side::Secondary, "ReplicationDestination", "rd-pvc-01"),
                (Side::Primary, "ReplicationSource", "rs-pvc-01"),
            ]
        );
        for (_, d) in &docs {
            assert_eq!(d["metadata"]["namespace"], "apps");
            assert_eq!(d["metadata"]["labels"][keys::MANAGED_BY], "volsync-dr");
            assert_eq!(d["metadata"]["labels"][keys::PVC_LABEL], "pvc-01");
        }
        // One key, the same on both sides.
        assert_eq!(plan.primary_secret.data, plan.secondary_secret.data);
        let rd = &docs[3].1["spec"]["rsyncTLS"];
        assert_eq!(rd["destinationPVC"], "pvc-01");
        assert_eq!(rd["keySecret"], "volsync-dr-pvc-01");
        assert_eq!(rd["copyMethod"], "Snapshot");
        assert_eq!(rd["serviceType"], "ClusterIP");
        assert_eq!(rd["volumeSnapshotClassName"], "snap-b");
        assert_eq!(rd["storageClassName"], "sc-cephfs");
        assert_eq!(rd["moverSecurityContext"]["runAsUser"], 65534);
        let rs = &docs[4].1["spec"];
        assert_eq!(rs["sourcePVC"], "pvc-01");
        assert_eq!(rs["trigger"]["schedule"], "*/10 * * * *");
        assert_eq!(rs["rsyncTLS"]["address"], "192.168.129.201");
        assert_eq!(rs["rsyncTLS"]["port"], 30532);
        assert_eq!(rs["rsyncTLS"]["volumeSnapshotClassName"], "snap-a");
        // The counterpart copies size, modes, mode, not the binding.
        let counterpart = &docs[2].1;
        assert_eq!(counterpart["spec"]["resources"]["requests"]["storage"], "10Gi");
        assert_eq!(counterpart["spec"]["accessModes"][0], "ReadWriteMany");
        assert_eq!(counterpart["spec"]["volumeMode"], "Filesystem");
        assert!(counterpart["spec"].get("volumeName").is_none());
        assert_eq!(counterpart["metadata"]["annotations"][keys::ROLE], "secondary");
        assert_eq!(counterpart["metadata"]["annotations"][keys::PROTECT], "true");
        assert_eq!(counterpart["metadata"]["annotations"][keys::PEER], "cluster-a");
        assert_eq!(
            counterpart["metadata"]["annotations"][keys::VOLUME_SNAPSHOT_CLASS],
            "snap-b"
        );
        assert_eq!(
            counterpart["metadata"]["annotations"][keys::DESTINATION_VOLUME_SNAPSHOT_CLASS],
            "snap-a"
        );
        assert!(
            counterpart["metadata"]["labels"].get("app").is_none(),
            "app labels are not copied"
        );
    }

    #[test]
    fn no_source_until_endpoint_known() {
        let plan = protect(&pvc("p", &[]), &instance(), &psk(), None).expect("plan");
        assert!(plan.replication_source.is_none());
        assert_eq!(plan.documents().expect("json").len(), 4);
    }

    #[test]
    fn annotations_override_defaults_for_every_enum_value() {
        for method in [CopyMethod::Snapshot, CopyMethod::Clone, CopyMethod::Direct] {
            for ty in [ServiceType::ClusterIP, ServiceType::LoadBalancer, ServiceType::NodePort] {
                let p = pvc(
                    "p",
                    &[
                        (keys::COPY_METHOD, method.as_str()),
                        (keys::SERVICE_TYPE, ty.as_str()),
                        (keys::SCHEDULE, "@hourly"),
                        (keys::DESTINATION_STORAGE_CLASS, "sc-b"),
                        (keys::VOLUME_SNAPSHOT_CLASS, "vsc-a2"),
                        (keys::DESTINATION_VOLUME_SNAPSHOT_CLASS, "vsc-b2"),
                        (keys::PEER, "cluster-b"),
                    ],
                );
                let plan = protect(&p, &instance(), &psk(), Some(&endpoint())).expect("plan");
                let rd = plan.replication_destination.spec.rsync_tls.as_ref().expect("rd");
                assert_eq!(rd.volume.copy_method, Some(method));
                assert_eq!(rd.service_type, Some(ty));
                assert_eq!(rd.volume.storage_class_name.as_deref(), Some("sc-b"));
                assert_eq!(rd.volume.volume_snapshot_class_name.as_deref(), Some("vsc-b2"));
                let rs = plan.replication_source.as_ref().expect("rs");
                let rs_tls = rs.spec.rsync_tls.as_ref().expect("rs tls");
                assert_eq!(rs_tls.volume.copy_method, Some(method));
                assert_eq!(rs_tls.volume.volume_snapshot_class_name.as_deref(), Some("vsc-a2"));
                assert_eq!(rs_tls.volume.storage_class_name.as_deref(), Some("sc-cephfs"));
                assert_eq!(
                    rs.spec.trigger.as_ref().and_then(|t| t.schedule.as_deref()),
                    Some("@hourly")
                );
                assert_eq!(
                    plan.secondary_pvc
                        .spec
                        .as_ref()
                        .and_then(|s| s.storage_class_name.as_deref()),
                    Some("sc-b")
                );
            }
        }
    }

    #[test]
    fn longest_pvc_name_gives_valid_names_and_labels() {
        let name = format!("{}z", "a".repeat(252));
        let plan = protect(&pvc(&name, &[]), &instance(), &psk(), Some(&endpoint())).expect("plan");
        for (_, d) in plan.documents().expect("json") {
            let object_name = d["metadata"]["name"].as_str().expect("name");
            assert!(object_name.len() <= 253, "{object_name}");
            let label = d["metadata"]["labels"][keys::PVC_LABEL].as_str().expect("label");
            assert!(label.len() <= 63, "{label}");
            if d["kind"] != "PersistentVolumeClaim" {
                assert_eq!(
                    d["metadata"]["annotations"][keys::PVC_NAME].as_str(),
                    Some(name.as_str())
                );
            }
        }
        assert_eq!(plan.secondary_pvc.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(
            plan.replication_destination
                .spec
                .rsync_tls
                .as_ref()
                .and_then(|r| r.destination_pvc.as_deref()),
            Some(name.as_str())
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let mut no_size = pvc("p", &[]);
        if let Some(spec) = no_size.spec.as_mut() {
            spec.resources = None;
        }
        let mut no_ns = pvc("p", &[]);
        no_ns.metadata.namespace = None;
        let mut volsync_own = pvc("p", &[]);
        volsync_own.metadata.labels = Some(BTreeMap::from([(keys::CREATED_BY.into(), "volsync".into())]));
        let cases: Vec<(PersistentVolumeClaim, &str)> = vec![
            (no_size, "spec.resources.requests.storage"),
            (no_ns, "metadata.namespace"),
            (volsync_own, "VolSync manages it"),
            (
                pvc("p", &[(keys::PEER, "cluster-c")]),
                "\"cluster-c\" names an unknown peer",
            ),
            (
                pvc("p", &[(keys::SERVICE_TYPE, "Ingress")]),
                "volsync-dr.io/service-type=\"Ingress\"",
            ),
            (pvc("p", &[(keys::ROLE, "secondary")]), "secondary of a pair"),
        ];
        for (p, want) in cases {
            let err = protect(&p, &instance(), &psk(), None).expect_err(want).to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn same_inputs_same_plan() {
        let p = pvc("p", &[(keys::SCHEDULE, "0 * * * *")]);
        let a = protect(&p, &instance(), &psk(), Some(&endpoint())).expect("a");
        let b = protect(&p, &instance(), &psk(), Some(&endpoint())).expect("b");
        assert_eq!(a, b);
        let spec = ProtectionSpec::parse(&BTreeMap::new()).expect("empty");
        assert_eq!(
            EffectiveSettings::resolve(&spec, None, &instance())
                .expect("defaults")
                .service_type,
            ServiceType::ClusterIP
        );
    }
}
