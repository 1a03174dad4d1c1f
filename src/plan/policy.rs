//! Which policy protects a PVC, and what that changes on it, decided purely.
//!
//! A policy works through the PVC's own annotations, so `kubectl get pvc -o yaml` still tells
//! the whole story and the rest of volsync-dr needs no notion of policies. It writes each
//! setting it gives and records what it wrote (`volsync-dr.io/policy-applied`). An annotation
//! whose value still equals that record belongs to the policy and follows its changes; any
//! other value was set by someone else and wins. A PVC whose `protect` was set by someone else
//! (`"true"` or `"false"`) is never touched.
//!
//! When several policies select a PVC, the one whose name sorts first wins. A PVC whose policy
//! is paused or invalid is left as it is: a typo in a policy must not unprotect what it covers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::core::SelectorExt;

use crate::model::keys;
use crate::model::marks::is_volsync_owned;
use crate::model::policy::{DRPolicy, PolicyRules, SpecErrors};
use crate::model::progress::Progress;
use crate::model::role::Role;
use crate::model::schedule;
use crate::model::volsync::{CopyMethod, ServiceType};
use crate::plan::protect::is_restore;

/// Namespaces no policy reaches, whatever its selector.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system"];

/// The policies of a cluster, validated, in the order they are tried (by name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicySet {
    entries: Vec<(String, Result<PolicyRules, SpecErrors>)>,
}

impl PolicySet {
    pub fn new(entries: impl IntoIterator<Item = (String, Result<PolicyRules, SpecErrors>)>) -> Self {
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        PolicySet { entries }
    }

    /// Validate stored policies for an instance replicating to `peer_name`.
    pub fn from_policies<'a>(policies: impl IntoIterator<Item = &'a DRPolicy>, peer_name: &str) -> Self {
        PolicySet::new(policies.into_iter().map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let rules = PolicyRules::from_policy(&name, &p.spec, peer_name);
            (name, rules)
        }))
    }

    pub fn get(&self, name: &str) -> Option<&Result<PolicyRules, SpecErrors>> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, Result<PolicyRules, SpecErrors>)> {
        self.entries.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where the policies are read from at admission: a live view of the cluster, never a remote
/// call on the request path.
pub trait PolicyLookup: Send + Sync {
    /// The policies now; `None` while they are not known yet (then nothing is decided).
    fn policies(&self) -> Option<Arc<PolicySet>>;
    /// A namespace's labels; `None` when the namespace is not known (yet).
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>>;
}

/// What the instance contributes to every policy decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// volsync-dr's own namespace: no policy reaches it.
    pub own_namespace: String,
    /// The namespaces the instance watches (empty: all); a policy reaches no other.
    pub namespaces: Vec<String>,
    /// Written on PVCs a policy protects when the policy does not say.
    pub default_service_type: ServiceType,
    /// The snapshot class here when neither PVC nor policy names one (for the class mapping).
    pub volume_snapshot_class: Option<String>,
}

/// What a policy does to one PVC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The PVC gets (or moves to) this policy's protection.
    Applied { policy: String },
    /// The policy that protects it changed a setting.
    Updated { policy: String },
    /// No policy selects it any more: the settings the policy wrote are removed, which
    /// unprotects it.
    Released { policy: String },
}

/// Annotations to set and to remove (full names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnotationChange {
    pub set: BTreeMap<String, String>,
    pub remove: BTreeSet<String>,
}

impl AnnotationChange {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// As a JSON merge patch of the metadata.
    pub fn merge_patch(&self) -> serde_json::Value {
        let mut annotations = serde_json::Map::new();
        for (k, v) in &self.set {
            annotations.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        for k in &self.remove {
            annotations.insert(k.clone(), serde_json::Value::Null);
        }
        serde_json::json!({"metadata": {"annotations": annotations}})
    }
}

/// Which policy, if any, decides about this PVC.
#[derive(Clone, Debug, PartialEq)]
enum Choice<'a> {
    Leave,
    Apply(&'a PolicyRules),
    Release(String),
}

/// What the policy recorded as written, with full annotation names.
pub fn recorded(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .get(keys::POLICY_APPLIED)
        .and_then(|text| serde_json::from_str::<BTreeMap<String, String>>(text).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (format!("{}{k}", keys::PREFIX), v))
        .collect()
}

/// Whether the annotation `key` still holds what the policy wrote.
fn owned(key: &str, current: &BTreeMap<String, String>, record: &BTreeMap<String, String>) -> bool {
    record.get(key).is_some_and(|v| current.get(key) == Some(v))
}

/// The name of the policy that protects this PVC, if a policy does.
pub fn protecting_policy(annotations: &BTreeMap<String, String>) -> Option<&str> {
    let policy = annotations.get(keys::POLICY)?;
    owned(keys::PROTECT, annotations, &recorded(annotations)).then_some(policy.as_str())
}

/// `current` are the PVC's annotations, `record` what a policy recorded among them.
fn choose<'a>(
    set: &'a PolicySet,
    pvc: &PersistentVolumeClaim,
    current: &BTreeMap<String, String>,
    record: &BTreeMap<String, String>,
    namespace_labels: &BTreeMap<String, String>,
    scope: &Scope,
) -> Choice<'a> {
    let namespace = pvc.metadata.namespace.as_deref().unwrap_or_default();
    if is_volsync_owned(&pvc.metadata)
        || is_restore(pvc)
        || pvc.metadata.deletion_timestamp.is_some()
        || SYSTEM_NAMESPACES.contains(&namespace)
        || namespace == scope.own_namespace
        || !(scope.namespaces.is_empty() || scope.namespaces.iter().any(|n| n == namespace))
        // The secondary of a pair belongs to its primary; an action in flight owns the PVC.
        || current.get(keys::ROLE).map(String::as_str) == Some(Role::Secondary.as_str())
        || Progress::read(current).in_flight().is_some()
    {
        return Choice::Leave;
    }
    if current.contains_key(keys::PROTECT) && !owned(keys::PROTECT, current, record) {
        return Choice::Leave;
    }
    let previous = current.get(keys::POLICY).filter(|_| !record.is_empty());
    if let Some(name) = previous {
        match set.get(name) {
            Some(Err(_)) => return Choice::Leave,
            Some(Ok(rules)) if rules.paused => return Choice::Leave,
            _ => {}
        }
    }
    let no_labels = BTreeMap::new();
    let labels = pvc.metadata.labels.as_ref().unwrap_or(&no_labels);
    let storage_class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref());
    let winner = set.iter().find_map(|(_, rules)| {
        let rules = rules.as_ref().ok()?;
        let selected = rules.namespace_selector.matches(namespace_labels)
            && rules.pvc_selector.matches(labels)
            && (rules.storage_class_names.is_empty()
                || storage_class.is_some_and(|c| rules.storage_class_names.contains(c)));
        selected.then_some(rules)
    });
    match (winner, previous) {
        (Some(rules), _) if rules.paused => Choice::Leave,
        (Some(rules), _) => Choice::Apply(rules),
        (None, Some(name)) => Choice::Release(name.clone()),
        (None, None) => Choice::Leave,
    }
}

/// The annotations a policy gives this PVC: protection, the instance's explicit defaults (as
/// the webhook writes them on any protected PVC), the policy's settings, and the classes on
/// the peer from its mappings.
fn desired(
    rules: &PolicyRules,
    pvc: &PersistentVolumeClaim,
    current: &BTreeMap<String, String>,
    scope: &Scope,
) -> BTreeMap<String, String> {
    let mut d = BTreeMap::from([
        (keys::PROTECT.to_string(), "true".to_string()),
        (keys::SCHEDULE.to_string(), schedule::DEFAULT.to_string()),
        (
            keys::COPY_METHOD.to_string(),
            CopyMethod::default().as_str().to_string(),
        ),
        (
            keys::SERVICE_TYPE.to_string(),
            scope.default_service_type.as_str().to_string(),
        ),
    ]);
    d.extend(rules.annotations.clone());
    if !d.contains_key(keys::DESTINATION_STORAGE_CLASS)
        && let Some(mapped) = pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_ref())
            .and_then(|c| rules.storage_class_mapping.get(c))
    {
        d.insert(keys::DESTINATION_STORAGE_CLASS.to_string(), mapped.clone());
    }
    if !d.contains_key(keys::DESTINATION_VOLUME_SNAPSHOT_CLASS) {
        let here = current
            .get(keys::VOLUME_SNAPSHOT_CLASS)
            .or(d.get(keys::VOLUME_SNAPSHOT_CLASS))
            .or(scope.volume_snapshot_class.as_ref());
        if let Some(mapped) = here.and_then(|c| rules.volume_snapshot_class_mapping.get(c)) {
            d.insert(keys::DESTINATION_VOLUME_SNAPSHOT_CLASS.to_string(), mapped.clone());
        }
    }
    d
}

/// The record of what a policy wrote, as stored (names without the prefix).
fn record_text(record: &BTreeMap<String, String>) -> String {
    let short: serde_json::Map<String, serde_json::Value> = record
        .iter()
        .map(|(k, v)| (k.strip_prefix(keys::PREFIX).unwrap_or(k).to_string(), v.clone().into()))
        .collect();
    serde_json::Value::Object(short).to_string()
}

/// Bring the annotations in line with `target` (a policy's name and the annotations it gives),
/// or release them from their policy when `target` is `None`.
fn change(
    current: &BTreeMap<String, String>,
    record: &BTreeMap<String, String>,
    target: Option<(&str, &BTreeMap<String, String>)>,
) -> AnnotationChange {
    let mut out = AnnotationChange::default();
    match target {
        Some((name, desired)) => {
            let mut new_record = BTreeMap::new();
            for (key, value) in desired {
                match current.get(key) {
                    // Set by someone else: it wins, and stops being the policy's.
                    Some(_) if !owned(key, current, record) => {}
                    v => {
                        if v != Some(value) {
                            out.set.insert(key.clone(), value.clone());
                        }
                        new_record.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in record.keys() {
                if !desired.contains_key(key) && owned(key, current, record) {
                    out.remove.insert(key.clone());
                }
            }
            if current.get(keys::POLICY).map(String::as_str) != Some(name) {
                out.set.insert(keys::POLICY.to_string(), name.to_string());
            }
            let text = record_text(&new_record);
            if current.get(keys::POLICY_APPLIED) != Some(&text) {
                out.set.insert(keys::POLICY_APPLIED.to_string(), text);
            }
        }
        None => {
            for key in record.keys() {
                if owned(key, current, record) {
                    out.remove.insert(key.clone());
                }
            }
            for key in [keys::POLICY, keys::POLICY_APPLIED] {
                if current.contains_key(key) {
                    out.remove.insert(key.to_string());
                }
            }
        }
    }
    out
}

/// What the policies do to this PVC now: `None` when nothing is to change.
/// `namespace_labels` are the labels of the PVC's namespace.
pub fn evaluate(
    set: &PolicySet,
    pvc: &PersistentVolumeClaim,
    namespace_labels: &BTreeMap<String, String>,
    scope: &Scope,
) -> Option<(Outcome, AnnotationChange)> {
    let empty = BTreeMap::new();
    let current = pvc.metadata.annotations.as_ref().unwrap_or(&empty);
    let record = recorded(current);
    let (outcome, change) = match choose(set, pvc, current, &record, namespace_labels, scope) {
        Choice::Leave => return None,
        Choice::Apply(rules) => {
            let want = desired(rules, pvc, current, scope);
            let change = change(current, &record, Some((&rules.name, &want)));
            let policy = rules.name.clone();
            let already = current.get(keys::POLICY) == Some(&policy) && owned(keys::PROTECT, current, &record);
            let outcome = if already {
                Outcome::Updated { policy }
            } else {
                Outcome::Applied { policy }
            };
            (outcome, change)
        }
        Choice::Release(policy) => (Outcome::Released { policy }, change(current, &record, None)),
    };
    (!change.is_empty()).then_some((outcome, change))
}

/// The policy protecting each PVC after `evaluate`'s changes, for the policies' status.
pub fn policy_after(current: &BTreeMap<String, String>, change: Option<&AnnotationChange>) -> Option<String> {
    let mut after = current.clone();
    if let Some(change) = change {
        for k in &change.remove {
            after.remove(k);
        }
        after.extend(change.set.clone());
    }
    protecting_policy(&after).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::DRPolicySpec;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            own_namespace: "volsync-dr".into(),
            namespaces: Vec::new(),
            default_service_type: ServiceType::ClusterIP,
            volume_snapshot_class: Some("snap-a".into()),
        }
    }

    fn policy(name: &str, spec: serde_json::Value) -> (String, Result<PolicyRules, SpecErrors>) {
        let spec: DRPolicySpec = serde_json::from_value(spec).expect("spec");
        (name.to_string(), PolicyRules::from_policy(name, &spec, "cluster-b"))
    }

    fn pvc(
        namespace: &str,
        labels: serde_json::Value,
        annotations: serde_json::Value,
        class: &str,
    ) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": namespace, "labels": labels, "annotations": annotations},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .expect("pvc")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Apply `evaluate`'s change to the PVC, as the API server would.
    fn applied(p: &PersistentVolumeClaim, change: &AnnotationChange) -> PersistentVolumeClaim {
        let mut p = p.clone();
        let a = p.metadata.annotations.get_or_insert_with(BTreeMap::new);
        for k in &change.remove {
            a.remove(k);
        }
        a.extend(change.set.clone());
        p
    }

    fn policy_of(set: &PolicySet, p: &PersistentVolumeClaim, ns: &BTreeMap<String, String>) -> Option<String> {
        evaluate(set, p, ns, &scope()).and_then(|(outcome, _)| match outcome {
            Outcome::Applied { policy } | Outcome::Updated { policy } => Some(policy),
            Outcome::Released { .. } => None,
        })
    }

    /// (case, policies, namespace, namespace labels, PVC labels, storage class, policy expected)
    type Case<'a> = (
        &'a str,
        &'a PolicySet,
        &'a str,
        &'a BTreeMap<String, String>,
        serde_json::Value,
        &'a str,
        Option<&'a str>,
    );

    #[test]
    fn selection_by_namespace_pvc_labels_and_storage_class() {
        let set = PolicySet::new([
            policy("by-ns", json!({"namespaceSelector": {"matchLabels": {"dr": "on"}}})),
            policy(
                "by-pvc",
                json!({"namespaceSelector": {"matchLabels": {"x": "never"}}, "pvcSelector": {}}),
            ),
        ]);
        let on = labels(&[("dr", "on")]);
        let off = labels(&[("dr", "off")]);
        // (case, set, namespace, namespace labels, pvc labels, class, policy expected)
        let by_pvc = PolicySet::new([policy(
            "by-pvc",
            json!({"pvcSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}}),
        )]);
        let by_class = PolicySet::new([policy("by-class", json!({"storageClassNames": ["fast", "ssd"]}))]);
        let cases: Vec<Case> = vec![
            ("namespace labelled", &set, "app", &on, json!({}), "std", Some("by-ns")),
            ("namespace not labelled", &set, "app", &off, json!({}), "std", None),
            ("kube-system never", &set, "kube-system", &on, json!({}), "std", None),
            ("own namespace never", &set, "volsync-dr", &on, json!({}), "std", None),
            (
                "pvc label matches",
                &by_pvc,
                "app",
                &off,
                json!({"tier": "db"}),
                "std",
                Some("by-pvc"),
            ),
            (
                "pvc label differs",
                &by_pvc,
                "app",
                &off,
                json!({"tier": "web"}),
                "std",
                None,
            ),
            (
                "class listed",
                &by_class,
                "app",
                &off,
                json!({}),
                "ssd",
                Some("by-class"),
            ),
            ("class not listed", &by_class, "app", &off, json!({}), "slow", None),
        ];
        for (name, set, ns, ns_labels, pvc_labels, class, want) in cases {
            let p = pvc(ns, pvc_labels, json!({}), class);
            assert_eq!(policy_of(set, &p, ns_labels).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn a_new_pvc_gets_settings_mappings_and_a_record() {
        let set = PolicySet::new([policy(
            "gold",
            json!({"defaults": {"schedule": "0 * * * *", "service-type": "NodePort"},
                   "storageClassMapping": {"fast": "fast-b"},
                   "volumeSnapshotClassMapping": {"snap-a": "snap-b"}}),
        )]);
        let p = pvc("app", json!({}), json!({}), "fast");
        let (outcome, change) = evaluate(&set, &p, &BTreeMap::new(), &scope()).expect("applies");
        assert_eq!(outcome, Outcome::Applied { policy: "gold".into() });
        let want = [
            (keys::PROTECT, "true"),
            (keys::SCHEDULE, "0 * * * *"),
            (keys::COPY_METHOD, "Snapshot"),
            (keys::SERVICE_TYPE, "NodePort"),
            (keys::DESTINATION_STORAGE_CLASS, "fast-b"),
            (keys::DESTINATION_VOLUME_SNAPSHOT_CLASS, "snap-b"),
            (keys::POLICY, "gold"),
        ];
        for (k, v) in want {
            assert_eq!(change.set.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(change.remove.is_empty());
        let after = applied(&p, &change);
        assert_eq!(
            protecting_policy(after.metadata.annotations.as_ref().expect("a")),
            Some("gold")
        );
        assert_eq!(
            evaluate(&set, &after, &BTreeMap::new(), &scope()),
            None,
            "applying twice changes nothing"
        );
    }

    #[test]
    fn explicit_annotations_win_and_opt_out() {
        let set = PolicySet::new([policy("gold", json!({"defaults": {"schedule": "0 * * * *"}}))]);
        let ns = BTreeMap::new();
        // Explicit schedule: kept, and not recorded as the policy's.
        let p = pvc("app", json!({}), json!({keys::SCHEDULE: "@daily"}), "std");
        let (_, change) = evaluate(&set, &p, &ns, &scope()).expect("applies");
        assert!(!change.set.contains_key(keys::SCHEDULE));
        let after = applied(&p, &change);
        assert!(!recorded(after.metadata.annotations.as_ref().expect("a")).contains_key(keys::SCHEDULE));
        // protect set by the user, either way: the policy stays away.
        for value in ["false", "true"] {
            let p = pvc("app", json!({}), json!({keys::PROTECT: value}), "std");
            assert_eq!(evaluate(&set, &p, &ns, &scope()), None, "protect={value}");
        }
    }

    #[test]
    fn policy_changes_follow_but_user_edits_stay() {
        let ns = BTreeMap::new();
        let v1 = PolicySet::new([policy(
            "gold",
            json!({"defaults": {"schedule": "0 * * * *", "copy-method": "Clone"}}),
        )]);
        let p = pvc("app", json!({}), json!({}), "std");
        let p = applied(&p, &evaluate(&v1, &p, &ns, &scope()).expect("apply").1);
        // The user changes copy-method by hand; then the policy changes its schedule and drops copy-method.
        let mut edited = p.clone();
        edited
            .metadata
            .annotations
            .as_mut()
            .expect("a")
            .insert(keys::COPY_METHOD.into(), "Direct".into());
        let v2 = PolicySet::new([policy("gold", json!({"defaults": {"schedule": "30 * * * *"}}))]);
        let (outcome, change) = evaluate(&v2, &edited, &ns, &scope()).expect("update");
        assert_eq!(outcome, Outcome::Updated { policy: "gold".into() });
        assert_eq!(change.set.get(keys::SCHEDULE).map(String::as_str), Some("30 * * * *"));
        assert!(!change.set.contains_key(keys::COPY_METHOD) && !change.remove.contains(keys::COPY_METHOD));
        let after = applied(&edited, &change);
        let a = after.metadata.annotations.as_ref().expect("a");
        assert_eq!(a.get(keys::COPY_METHOD).map(String::as_str), Some("Direct"));
        // Released: what the policy wrote goes, the user's edit stays.
        let (outcome, change) = evaluate(&PolicySet::default(), &after, &ns, &scope()).expect("release");
        assert_eq!(outcome, Outcome::Released { policy: "gold".into() });
        let released = applied(&after, &change);
        let a = released.metadata.annotations.as_ref().expect("a");
        assert!(
            !a.contains_key(keys::PROTECT) && !a.contains_key(keys::SCHEDULE),
            "{a:?}"
        );
        assert!(
            !a.contains_key(keys::POLICY) && !a.contains_key(keys::POLICY_APPLIED),
            "{a:?}"
        );
        assert_eq!(a.get(keys::COPY_METHOD).map(String::as_str), Some("Direct"));
        assert_eq!(evaluate(&PolicySet::default(), &released, &ns, &scope()), None);
    }

    #[test]
    fn two_policies_first_name_wins_and_paused_or_invalid_freeze() {
        let ns = BTreeMap::new();
        let both = PolicySet::new([
            policy("b-hourly", json!({"defaults": {"schedule": "0 * * * *"}})),
            policy("a-daily", json!({"defaults": {"schedule": "@daily"}})),
        ]);
        let p = pvc("app", json!({}), json!({}), "std");
        assert_eq!(policy_of(&both, &p, &ns).as_deref(), Some("a-daily"));
        let protected = applied(&p, &evaluate(&both, &p, &ns, &scope()).expect("apply").1);
        // a-daily deleted: b-hourly takes over, its schedule replaces the old policy's.
        let only_b = PolicySet::new([policy("b-hourly", json!({"defaults": {"schedule": "0 * * * *"}}))]);
        let (outcome, change) = evaluate(&only_b, &protected, &ns, &scope()).expect("moves");
        assert_eq!(
            outcome,
            Outcome::Applied {
                policy: "b-hourly".into()
            }
        );
        assert_eq!(change.set.get(keys::SCHEDULE).map(String::as_str), Some("0 * * * *"));
        // a-daily paused, or made invalid: its PVC is left alone (not moved, not released).
        for frozen in [
            policy("a-daily", json!({"paused": true})),
            policy("a-daily", json!({"defaults": {"schedule": "never"}})),
        ] {
            let set = PolicySet::new([frozen.clone(), policy("b-hourly", json!({}))]);
            assert_eq!(evaluate(&set, &protected, &ns, &scope()), None, "{frozen:?}");
        }
        // A paused policy protects no new PVC.
        let paused = PolicySet::new([policy("a", json!({"paused": true}))]);
        assert_eq!(evaluate(&paused, &p, &ns, &scope()), None);
    }

    #[test]
    fn pvcs_it_must_not_touch() {
        let set = PolicySet::new([policy("all", json!({}))]);
        let ns = BTreeMap::new();
        let secondary = pvc("app", json!({}), json!({keys::ROLE: "secondary"}), "std");
        let volsync = pvc("app", json!({keys::CREATED_BY: "volsync"}), json!({}), "std");
        let running = pvc(
            "app",
            json!({}),
            json!({keys::ACTION_PHASE: "Running", keys::ACTION_RUNNING: "migrate"}),
            "std",
        );
        let mut restored = pvc("app", json!({}), json!({}), "std");
        if let Some(spec) = restored.spec.as_mut() {
            spec.data_source_ref = Some(k8s_openapi::api::core::v1::TypedObjectReference {
                api_group: Some("volsync.backube".into()),
                kind: "ReplicationDestination".into(),
                name: "rd-data".into(),
                namespace: None,
            });
        }
        for (name, p) in [
            ("secondary", secondary),
            ("VolSync's", volsync),
            ("action in flight", running),
            ("restored", restored),
        ] {
            assert_eq!(evaluate(&set, &p, &ns, &scope()), None, "{name}");
        }
    }

    #[test]
    fn only_watched_namespaces() {
        let set = PolicySet::new([policy("all", json!({}))]);
        let scoped = Scope {
            namespaces: vec!["app".into()],
            ..scope()
        };
        let ns = BTreeMap::new();
        assert!(evaluate(&set, &pvc("app", json!({}), json!({}), "std"), &ns, &scoped).is_some());
        assert_eq!(
            evaluate(&set, &pvc("other", json!({}), json!({}), "std"), &ns, &scoped),
            None
        );
    }

    #[test]
    fn release_when_the_pvc_no_longer_matches() {
        let set = PolicySet::new([policy(
            "tiered",
            json!({"pvcSelector": {"matchLabels": {"tier": "db"}}}),
        )]);
        let ns = BTreeMap::new();
        let p = pvc("app", json!({"tier": "db"}), json!({}), "std");
        let mut protected = applied(&p, &evaluate(&set, &p, &ns, &scope()).expect("apply").1);
        protected.metadata.labels = Some(labels(&[("tier", "web")]));
        let (outcome, change) = evaluate(&set, &protected, &ns, &scope()).expect("release");
        assert_eq!(
            outcome,
            Outcome::Released {
                policy: "tiered".into()
            }
        );
        assert!(change.remove.contains(keys::PROTECT));
        assert_eq!(
            policy_after(protected.metadata.annotations.as_ref().expect("a"), Some(&change)),
            None
        );
    }

    #[test]
    fn merge_patch_sets_and_removes() {
        let change = AnnotationChange {
            set: BTreeMap::from([("a".to_string(), "1".to_string())]),
            remove: BTreeSet::from(["b".to_string()]),
        };
        assert_eq!(
            change.merge_patch(),
            json!({"metadata": {"annotations": {"a": "1", "b": null}}})
        );
    }
}
