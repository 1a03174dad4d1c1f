//! VolSync's ReplicationSource and ReplicationDestination (`volsync.backube/v1alpha1`), typed.
//!
//! Field names and enums are VolSync's own (its CRDs, `api/v1alpha1`): every rsyncTLS spec
//! field, the trigger, and the status fields volsync-dr reads. Other movers (restic, rclone,
//! rsync over SSH, syncthing, external) are left out: volsync-dr only drives rsync-tls, and
//! serde ignores unknown fields when reading, so objects using them still deserialize.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NFSVolumeSource, PersistentVolumeClaimVolumeSource, PodSecurityContext, ResourceRequirements,
    SecretVolumeSource, TypedLocalObjectReference,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// VolSync's `CopyMethodType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CopyMethod {
    /// Use the PVC itself (no point-in-time copy).
    Direct,
    /// Deprecated synonym of Direct in VolSync.
    None,
    /// A clone of the PVC.
    Clone,
    /// A VolumeSnapshot of the PVC.
    #[default]
    Snapshot,
}

impl CopyMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyMethod::Direct => "Direct",
            CopyMethod::None => "None",
            CopyMethod::Clone => "Clone",
            CopyMethod::Snapshot => "Snapshot",
        }
    }
}

/// `corev1.ServiceType`, which VolSync uses for the RD's Service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

// === ReplicationSource ===

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "volsync.backube",
    version = "v1alpha1",
    kind = "ReplicationSource",
    namespaced,
    status = "ReplicationSourceStatus",
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceSpec {
    /// The PVC to replicate.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "sourcePVC")]
    pub source_pvc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<ReplicationSourceTriggerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "rsyncTLS")]
    pub rsync_tls: Option<ReplicationSourceRsyncTlsSpec>,
}

/// When a ReplicationSource or ReplicationDestination syncs: on a schedule, or once per new
/// `manual` value (VolSync's two trigger types have the same fields).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
}

pub type ReplicationSourceTriggerSpec = TriggerSpec;
pub type ReplicationDestinationTriggerSpec = TriggerSpec;

/// `ReplicationSourceRsyncTLSSpec`: every field VolSync defines.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceRsyncTlsSpec {
    /// The volume options both movers share, inlined as in VolSync's own types.
    #[serde(flatten)]
    pub volume: VolumeOptions,
    /// Secret holding `psk.txt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
    /// Address of the destination (the RD's published address, or a node address for NodePort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// VolSync's `MoverConfig`, inlined as in VolSync's own types.
    #[serde(flatten)]
    pub mover: MoverConfig,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceStatus {
    #[serde(flatten)]
    pub sync: SyncStatus,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "rsyncTLS")]
    pub rsync_tls: Option<ReplicationSourceRsyncTlsStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceRsyncTlsStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
}

// === ReplicationDestination ===

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "volsync.backube",
    version = "v1alpha1",
    kind = "ReplicationDestination",
    namespaced,
    status = "ReplicationDestinationStatus",
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<ReplicationDestinationTriggerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "rsyncTLS")]
    pub rsync_tls: Option<ReplicationDestinationRsyncTlsSpec>,
}

/// `ReplicationDestinationRsyncTLSSpec`: every field VolSync defines.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationRsyncTlsSpec {
    /// The volume options both movers share, inlined as in VolSync's own types.
    #[serde(flatten)]
    pub volume: VolumeOptions,
    /// Write into this existing PVC instead of a VolSync-provisioned one.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "destinationPVC")]
    pub destination_pvc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "cleanupTempPVC")]
    pub cleanup_temp_pvc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
    /// VolSync's `MoverConfig`, inlined as in VolSync's own types.
    #[serde(flatten)]
    pub mover: MoverConfig,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationStatus {
    #[serde(flatten)]
    pub sync: SyncStatus,
    /// The snapshot (or PVC) holding the last completed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<TypedLocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "rsyncTLS")]
    pub rsync_tls: Option<ReplicationDestinationRsyncTlsStatus>,
}

/// VolSync publishes only `address`; `port` exists in the type but VolSync never fills it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationRsyncTlsStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
}

// === shared ===

/// The volume options of both movers (VolSync's `ReplicationSourceVolumeOptions` and
/// `ReplicationDestinationVolumeOptions` share these).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_method: Option<CopyMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_modes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

/// The sync times and results both a ReplicationSource's and a ReplicationDestination's status
/// report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_start_time: Option<Time>,
    /// A Go `metav1.Duration`, e.g. `1m2.5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// The `trigger.manual` value of the last completed manual sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_sync: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_mover_status: Option<MoverStatus>,
}

/// VolSync's `MoverConfig`: how the mover pod runs; inlined into each mover's spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoverConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_security_context: Option<PodSecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_service_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_pod_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_volumes: Option<Vec<MoverVolume>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MoverStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}

/// An extra volume mounted into the mover pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoverVolume {
    pub mount_path: String,
    pub volume_source: MoverVolumeSource,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoverVolumeSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NFSVolumeSource>,
}

impl ReplicationDestination {
    /// The address VolSync published, if any.
    pub fn published_address(&self) -> Option<&str> {
        self.status
            .as_ref()?
            .rsync_tls
            .as_ref()?
            .address
            .as_deref()
            .filter(|a| !a.is_empty())
    }

    /// The snapshot holding the last completed sync, if any.
    pub fn latest_image(&self) -> Option<&TypedLocalObjectReference> {
        self.status.as_ref()?.latest_image.as_ref()
    }
}

impl ReplicationSource {
    /// VolSync's word on a sync that is running (its `Synchronizing` condition is True), if
    /// one is.
    pub fn sync_running(&self) -> Option<String> {
        let conditions = self.status.as_ref()?.sync.conditions.as_ref()?;
        let c = conditions
            .iter()
            .find(|c| c.type_ == "Synchronizing" && c.status == "True")?;
        Some(if c.message.is_empty() {
            c.reason.clone()
        } else {
            c.message.clone()
        })
    }

    /// The manual trigger of the last completed one-time sync.
    pub fn last_manual_sync(&self) -> Option<&str> {
        self.status.as_ref()?.sync.last_manual_sync.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn api_coordinates_are_volsyncs() {
        assert_eq!(ReplicationSource::group(&()), "volsync.backube");
        assert_eq!(ReplicationSource::version(&()), "v1alpha1");
        assert_eq!(ReplicationSource::plural(&()), "replicationsources");
        assert_eq!(ReplicationDestination::kind(&()), "ReplicationDestination");
        assert_eq!(ReplicationDestination::plural(&()), "replicationdestinations");
    }

    #[test]
    fn reads_volsync_status_shapes() {
        let rd: ReplicationDestination = serde_json::from_value(serde_json::json!({
            "apiVersion": "volsync.backube/v1alpha1",
            "kind": "ReplicationDestination",
            "metadata": {"name": "rd-pvc-01", "namespace": "default"},
            "spec": {"rsyncTLS": {"copyMethod": "Snapshot", "destinationPVC": "pvc-01",
                                  "serviceType": "NodePort", "keySecret": "k"}},
            "status": {
                "lastSyncTime": "2026-11-24T10:00:00Z",
                "lastSyncStartTime": "2026-11-24T09:59:30Z",
                "lastSyncDuration": "30.5s",
                "nextSyncTime": "2026-11-24T10:10:00Z",
                "latestImage": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                "name": "volsync-rd-pvc-01-dst-20261124100000"},
                "rsyncTLS": {"address": "10.96.0.12"},
                "conditions": [{"type": "Synchronizing", "status": "False", "reason": "WaitingForManual",
                                "message": "m", "lastTransitionTime": "2026-11-24T10:00:00Z"}],
                "someFutureField": 1
            }
        }))
        .expect("RD from VolSync's status shape");
        assert_eq!(rd.published_address(), Some("10.96.0.12"));
        assert_eq!(
            rd.latest_image().map(|i| i.name.as_str()),
            Some("volsync-rd-pvc-01-dst-20261124100000")
        );
        let spec = rd.spec.rsync_tls.as_ref().expect("rsyncTLS");
        assert_eq!(spec.service_type, Some(ServiceType::NodePort));
        assert_eq!(spec.volume.copy_method, Some(CopyMethod::Snapshot));
        assert_eq!(spec.destination_pvc.as_deref(), Some("pvc-01"));

        let rs: ReplicationSource = serde_json::from_value(serde_json::json!({
            "apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationSource",
            "metadata": {"name": "rs-pvc-01-latest"},
            "spec": {"sourcePVC": "pvc-01", "trigger": {"manual": "t1"}, "rsyncTLS": {"port": 8000}},
            "status": {"lastManualSync": "t1", "rsyncTLS": {"keySecret": "k"}}
        }))
        .expect("RS");
        assert_eq!(rs.last_manual_sync(), Some("t1"));
        assert_eq!(rs.spec.source_pvc.as_deref(), Some("pvc-01"));
    }

    #[test]
    fn serializes_volsync_field_names_without_nulls() {
        let rs = ReplicationSource::new(
            "rs-x",
            ReplicationSourceSpec {
                source_pvc: Some("x".into()),
                trigger: Some(ReplicationSourceTriggerSpec {
                    schedule: Some("@hourly".into()),
                    manual: None,
                }),
                rsync_tls: Some(ReplicationSourceRsyncTlsSpec {
                    volume: VolumeOptions {
                        copy_method: Some(CopyMethod::Clone),
                        ..Default::default()
                    },
                    key_secret: Some("k".into()),
                    ..Default::default()
                }),
                paused: None,
            },
        );
        let v = serde_json::to_value(&rs).expect("json");
        assert_eq!(v["spec"]["sourcePVC"], "x");
        assert_eq!(v["spec"]["rsyncTLS"]["copyMethod"], "Clone");
        assert_eq!(v["spec"]["rsyncTLS"]["keySecret"], "k");
        assert!(v["spec"]["rsyncTLS"].get("address").is_none());
        assert!(v.get("status").is_none());
    }
}
