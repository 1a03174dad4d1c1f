//! volsync-dr's marks on a protected primary PVC: its finalizer (cleanup on both clusters runs
//! before the PVC goes) and its label (selects protected PVCs). The webhook stamps them on
//! admission and the watcher when the webhook was missed: both through [`stamp`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::keys;

pub fn has_finalizer(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == keys::FINALIZER)
}

pub fn has_protected_label(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(keys::PROTECTED_LABEL))
        .map(String::as_str)
        == Some("true")
}

/// VolSync's own PVC (a mover's cache, a restore): never ours to protect or change.
pub fn is_volsync_owned(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(keys::CREATED_BY))
        .map(String::as_str)
        == Some(keys::CREATED_BY_VOLSYNC)
}

/// Both marks are there.
pub fn is_stamped(meta: &ObjectMeta) -> bool {
    has_finalizer(meta) && has_protected_label(meta)
}

/// Add whichever marks are missing to an object's JSON `metadata` (created if absent), keeping
/// every other finalizer and label.
pub fn stamp(metadata: &mut Value) {
    if !metadata.is_object() {
        *metadata = json!({});
    }
    if !metadata["labels"].is_object() {
        metadata["labels"] = json!({});
    }
    metadata["labels"][keys::PROTECTED_LABEL] = json!("true");
    match metadata["finalizers"].as_array_mut() {
        Some(list) if list.iter().any(|f| f == keys::FINALIZER) => {}
        Some(list) => list.push(json!(keys::FINALIZER)),
        None => metadata["finalizers"] = json!([keys::FINALIZER]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_adds_only_what_is_missing_and_keeps_the_rest() {
        let cases = [
            (
                json!(null),
                json!({"labels": {keys::PROTECTED_LABEL: "true"}, "finalizers": [keys::FINALIZER]}),
            ),
            (
                json!({"labels": {"app": "db"}, "finalizers": ["x"]}),
                json!({"labels": {"app": "db", keys::PROTECTED_LABEL: "true"}, "finalizers": ["x", keys::FINALIZER]}),
            ),
            (
                json!({"labels": {keys::PROTECTED_LABEL: "false"}, "finalizers": [keys::FINALIZER, "y"]}),
                json!({"labels": {keys::PROTECTED_LABEL: "true"}, "finalizers": [keys::FINALIZER, "y"]}),
            ),
        ];
        for (before, want) in cases {
            let mut meta = before.clone();
            stamp(&mut meta);
            assert_eq!(meta, want, "from {before}");
            let typed: ObjectMeta = serde_json::from_value(meta).expect("metadata");
            assert!(is_stamped(&typed), "from {before}");
        }
    }

    #[test]
    fn marks_are_read_from_metadata() {
        let meta = |labels: &[(&str, &str)], finalizers: &[&str]| ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..ObjectMeta::default()
        };
        let cases = [
            (meta(&[], &[]), false, false),
            (meta(&[(keys::PROTECTED_LABEL, "true")], &[]), false, true),
            (meta(&[(keys::PROTECTED_LABEL, "yes")], &[keys::FINALIZER]), true, false),
            (
                meta(&[(keys::PROTECTED_LABEL, "true")], &["x", keys::FINALIZER]),
                true,
                true,
            ),
        ];
        for (m, finalizer, label) in cases {
            assert_eq!(has_finalizer(&m), finalizer, "{m:?}");
            assert_eq!(has_protected_label(&m), label, "{m:?}");
            assert_eq!(is_stamped(&m), finalizer && label, "{m:?}");
        }
        assert!(!has_finalizer(&ObjectMeta::default()));
    }
}
