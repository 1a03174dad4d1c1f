//! `DRPolicy`: cluster-wide protection of the PVCs a policy selects, without an annotation on
//! each. The Rust type is the source of the CRD (`volsync-dr crd` prints it; a test keeps
//! `deploy/crds/drpolicy.yaml` equal to it), and [`PolicyRules::from_policy`] turns a stored
//! policy into validated rules, or into every error of its spec at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use kube::core::Selector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::keys;
use super::protection::{ProtectionSpec, class_name, dns_label};

/// Which PVCs to protect automatically, and with which settings.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "volsync-dr.io",
    version = "v1alpha1",
    kind = "DRPolicy",
    plural = "drpolicies",
    singular = "drpolicy",
    shortname = "drp",
    status = "DRPolicyStatus",
    doc = "Protects every PVC it selects with volsync-dr, with the settings it gives.",
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"}"#,
    printcolumn = r#"{"name": "Protected", "type": "integer", "jsonPath": ".status.protectedPVCs"}"#,
    printcolumn = r#"{"name": "Last-Sweep", "type": "date", "jsonPath": ".status.lastSweepTime"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DRPolicySpec {
    /// Namespaces whose PVCs are selected, by their labels. Empty or absent: every namespace
    /// but kube-system and volsync-dr's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// PVCs selected, by their labels. Empty or absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_selector: Option<LabelSelector>,
    /// Only PVCs of these storage classes. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_class_names: Vec<String>,
    /// The peer cluster's name; must be the peer of the volsync-dr instance. Absent: that peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Annotation values for the PVCs it protects, by name without the `volsync-dr.io/` prefix:
    /// schedule, copy-method, service-type, destination-storage-class, volume-snapshot-class,
    /// destination-volume-snapshot-class. An annotation set on the PVC itself wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, String>,
    /// StorageClass here → StorageClass on the peer, for the counterpart PVC and the RD.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_class_mapping: BTreeMap<String, String>,
    /// VolumeSnapshotClass here → VolumeSnapshotClass on the peer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_snapshot_class_mapping: BTreeMap<String, String>,
    /// Stop applying the policy: no new PVCs, no changes, no release. PVCs it protects stay
    /// protected.
    #[serde(default)]
    pub paused: bool,
}

/// What volsync-dr observed of a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DRPolicyStatus {
    /// `Ready`: True when the spec is valid (reason Active or Paused), False with reason
    /// InvalidSpec and every problem in the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// PVCs this policy protects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "protectedPVCs")]
    pub protected_pvcs: Option<u32>,
    /// When volsync-dr last compared every PVC with the policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sweep_time: Option<Time>,
    /// The spec generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The `defaults` keys a policy may set (the user annotations that are settings).
pub const DEFAULT_KEYS: &[&str] = &[
    "schedule",
    "copy-method",
    "service-type",
    "destination-storage-class",
    "volume-snapshot-class",
    "destination-volume-snapshot-class",
];

/// One problem of a policy's spec: the field, its value, what is wrong and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub value: String,
    pub problem: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spec.{} {:?}: {}", self.field, self.value, self.problem)
    }
}

/// Every problem of a spec, in field order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::protection::write_joined(f, &self.0)
    }
}

/// A policy's spec, validated and ready to match PVCs.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyRules {
    pub name: String,
    pub namespace_selector: Selector,
    pub pvc_selector: Selector,
    /// Empty: any storage class.
    pub storage_class_names: BTreeSet<String>,
    pub paused: bool,
    /// Full annotation names to values, from `peer` and `defaults`.
    pub annotations: BTreeMap<String, String>,
    pub storage_class_mapping: BTreeMap<String, String>,
    pub volume_snapshot_class_mapping: BTreeMap<String, String>,
}

impl PolicyRules {
    /// Validate a stored policy for an instance whose peer is `peer_name`.
    pub fn from_policy(name: &str, spec: &DRPolicySpec, peer_name: &str) -> Result<PolicyRules, SpecErrors> {
        let mut errors = Vec::new();
        let mut selector = |field: &str, s: &Option<LabelSelector>| match s.clone().map(Selector::try_from) {
            None => Selector::default(),
            Some(Ok(selector)) => selector,
            Some(Err(e)) => {
                errors.push(SpecError {
                    field: field.to_string(),
                    value: serde_json::to_string(s).unwrap_or_default(),
                    problem: format!(
                        "{e}; accepted: matchLabels, and matchExpressions with operator In or NotIn \
                         (with values) or Exists or DoesNotExist (without)"
                    ),
                });
                Selector::default()
            }
        };
        let namespace_selector = selector("namespaceSelector", &spec.namespace_selector);
        let pvc_selector = selector("pvcSelector", &spec.pvc_selector);

        let mut class = |field: String, value: &str| {
            if let Err((problem, accepted)) = class_name(value) {
                errors.push(SpecError {
                    field,
                    value: value.to_string(),
                    problem: format!("{problem}; accepted: {accepted}"),
                });
            }
        };
        for (i, c) in spec.storage_class_names.iter().enumerate() {
            class(format!("storageClassNames[{i}]"), c);
        }
        for (field, mapping) in [
            ("storageClassMapping", &spec.storage_class_mapping),
            ("volumeSnapshotClassMapping", &spec.volume_snapshot_class_mapping),
        ] {
            for (from, to) in mapping {
                class(format!("{field} key"), from);
                class(format!("{field}.{from}"), to);
            }
        }

        let mut annotations = BTreeMap::new();
        match &spec.peer {
            Some(peer) if dns_label(peer).is_err() || peer != peer_name => errors.push(SpecError {
                field: "peer".into(),
                value: peer.clone(),
                problem: format!(
                    "this volsync-dr instance replicates to {peer_name:?}; accepted: {peer_name:?} or no peer"
                ),
            }),
            Some(peer) => {
                annotations.insert(keys::PEER.to_string(), peer.clone());
            }
            None => {}
        }
        for (key, value) in &spec.defaults {
            if !DEFAULT_KEYS.contains(&key.as_str()) {
                errors.push(SpecError {
                    field: format!("defaults.{key}"),
                    value: value.clone(),
                    problem: format!("not a policy default; accepted keys: {}", DEFAULT_KEYS.join(", ")),
                });
                continue;
            }
            let full = format!("{}{key}", keys::PREFIX);
            match ProtectionSpec::parse(&BTreeMap::from([(full.clone(), value.clone())])) {
                Ok(_) => {
                    annotations.insert(full, value.clone());
                }
                Err(e) => {
                    for problem in e.0 {
                        errors.push(SpecError {
                            field: format!("defaults.{key}"),
                            value: value.clone(),
                            problem: format!("{}; accepted: {}", problem.problem, problem.accepted),
                        });
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(SpecErrors(errors));
        }
        Ok(PolicyRules {
            name: name.to_string(),
            namespace_selector,
            pvc_selector,
            storage_class_names: spec.storage_class_names.iter().cloned().collect(),
            paused: spec.paused,
            annotations,
            storage_class_mapping: spec.storage_class_mapping.clone(),
            volume_snapshot_class_mapping: spec.volume_snapshot_class_mapping.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> DRPolicySpec {
        serde_json::from_value(v).expect("spec")
    }

    #[test]
    fn a_valid_spec_becomes_rules() {
        let rules = PolicyRules::from_policy(
            "gold",
            &spec(json!({
                "namespaceSelector": {"matchLabels": {"dr": "on"}},
                "pvcSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]},
                "storageClassNames": ["fast"],
                "peer": "cluster-b",
                "defaults": {"schedule": "0 * * * *", "service-type": "NodePort"},
                "storageClassMapping": {"fast": "fast-b"},
                "paused": true
            })),
            "cluster-b",
        )
        .expect("valid");
        assert_eq!(rules.name, "gold");
        assert!(rules.paused);
        assert_eq!(
            rules.annotations,
            BTreeMap::from([
                (keys::PEER.to_string(), "cluster-b".to_string()),
                (keys::SCHEDULE.to_string(), "0 * * * *".to_string()),
                (keys::SERVICE_TYPE.to_string(), "NodePort".to_string()),
            ])
        );
        assert!(!rules.namespace_selector.selects_all());
        assert_eq!(rules.storage_class_names, BTreeSet::from(["fast".to_string()]));
    }

    #[test]
    fn every_problem_names_field_value_and_what_is_accepted() {
        // (spec, field, value, accepted)
        let cases = [
            (
                json!({"defaults": {"schedule": "0 */5 * * * *"}}),
                "defaults.schedule",
                "0 */5 * * * *",
                "five cron fields",
            ),
            (
                json!({"defaults": {"copy-method": "Rsync"}}),
                "defaults.copy-method",
                "Rsync",
                "Snapshot, Clone or Direct",
            ),
            (
                json!({"defaults": {"protect": "true"}}),
                "defaults.protect",
                "true",
                "accepted keys: schedule",
            ),
            (
                json!({"defaults": {"action": "failover"}}),
                "defaults.action",
                "failover",
                "accepted keys",
            ),
            (
                json!({"peer": "cluster-c"}),
                "peer",
                "cluster-c",
                "replicates to \"cluster-b\"",
            ),
            (
                json!({"storageClassMapping": {"fast": "Fast_B"}}),
                "storageClassMapping.fast",
                "Fast_B",
                "a Kubernetes object name",
            ),
            (
                json!({"storageClassNames": ["ok", "NO!"]}),
                "storageClassNames[1]",
                "NO!",
                "a Kubernetes object name",
            ),
            (
                json!({"pvcSelector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}}),
                "pvcSelector",
                "Equals",
                "operator In or NotIn",
            ),
        ];
        for (s, field, value, accepted) in cases {
            let errors = PolicyRules::from_policy("p", &spec(s.clone()), "cluster-b").expect_err(field);
            let text = errors.to_string();
            assert!(text.contains(&format!("spec.{field} ")), "{s}: {text}");
            assert!(text.contains(value), "{s}: {text}");
            assert!(text.contains(accepted), "{s}: {text}");
        }
    }

    #[test]
    fn all_problems_are_reported_together() {
        let errors = PolicyRules::from_policy(
            "p",
            &spec(json!({"peer": "x", "defaults": {"schedule": "bad", "service-type": "bad"}})),
            "cluster-b",
        )
        .expect_err("three");
        assert_eq!(errors.0.len(), 3, "{errors}");
    }

    #[test]
    fn an_empty_spec_selects_everything() {
        let rules = PolicyRules::from_policy("all", &DRPolicySpec::default(), "cluster-b").expect("valid");
        assert!(rules.namespace_selector.selects_all() && rules.pvc_selector.selects_all());
        assert!(rules.annotations.is_empty() && rules.storage_class_names.is_empty());
    }
}
