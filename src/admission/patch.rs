//! A mutation as an RFC 6902 JSON patch: the PVC is changed in a copy and the two are diffed
//! (json-patch), which creates missing maps and escapes `/` in `volsync-dr.io/...` keys, and
//! touches nothing else.

use serde_json::{Value, json};

use super::decide::Mutation;
use crate::model::marks;

/// The patch turning `object` into the mutated PVC; empty when nothing changes.
pub fn patch_for(object: &Value, mutation: &Mutation) -> json_patch::Patch {
    let mut after = object.clone();
    if !after["metadata"].is_object() {
        after["metadata"] = json!({});
    }
    let meta = &mut after["metadata"];
    for (key, value) in &mutation.annotations {
        if !meta["annotations"].is_object() {
            meta["annotations"] = json!({});
        }
        meta["annotations"][key] = json!(value);
    }
    if mutation.stamp {
        marks::stamp(meta);
    }
    json_patch::diff(object, &after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::keys;

    #[test]
    fn creates_maps_escapes_keys_and_touches_nothing_else() {
        let pvc = json!({"metadata": {"name": "p", "finalizers": ["x"]}, "spec": {"a": [1, 2]}});
        let m = Mutation {
            annotations: [(keys::SCHEDULE.to_string(), "@hourly".to_string())].into(),
            stamp: true,
        };
        let patch = patch_for(&pvc, &m);
        let text = serde_json::to_string(&patch).expect("json");
        assert!(text.contains("/metadata/annotations"), "{text}");
        assert!(!text.contains("/spec"), "{text}");
        let mut applied = pvc.clone();
        json_patch::patch(&mut applied, &patch).expect("applies");
        assert_eq!(applied["metadata"]["annotations"][keys::SCHEDULE], "@hourly");
        assert_eq!(applied["metadata"]["labels"][keys::PROTECTED_LABEL], "true");
        assert_eq!(applied["metadata"]["finalizers"], json!(["x", keys::FINALIZER]));
        assert_eq!(applied["spec"], pvc["spec"]);
        // Keys with '/' are escaped inside a map that already exists.
        let with_map = json!({"metadata": {"annotations": {"a": "b"}}});
        let p = patch_for(&with_map, &m);
        assert!(
            serde_json::to_string(&p)
                .expect("json")
                .contains("volsync-dr.io~1schedule")
        );
        assert!(
            patch_for(&pvc, &Mutation::default()).0.is_empty(),
            "no change, no patch"
        );
    }
}
