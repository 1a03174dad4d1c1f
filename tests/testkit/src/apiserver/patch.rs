//! Patch semantics: JSON merge (RFC 7386) and JSON patch (RFC 6902) from the json-patch crate;
//! strategic merge and server-side apply written here for the fields that matter.
//!
//! Strategic merge and apply merge lists of objects by a key (containers by `name`, volume
//! mounts by `mountPath`, ...) the way the real API server does for built-in types; the key is
//! chosen by the list's field name, which is what the Go struct tags amount to for the kinds
//! served here. Other lists are replaced whole.

use serde_json::{Map, Value};

/// The merge key of a list field, if its items are merged rather than the list replaced.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "volumeClaimTemplates" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "ports" => {
            let container_ports = items.iter().any(|i| i.get("containerPort").is_some());
            Some(if container_ports { "containerPort" } else { "port" })
        }
        _ => None,
    }
}

/// Lists of scalars whose patches add to the set rather than replace it.
fn is_primitive_merge_list(field: &str) -> bool {
    field == "finalizers"
}

pub fn json_merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let mut ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
    // The API server's JSON patch (evanphx/json-patch) lets `test` with a null value pass on a
    // missing path; kube's finalizer helper relies on it to add the first finalizer.
    ops.0.retain(|op| match op {
        json_patch::PatchOperation::Test(t) if t.value.is_null() => {
            !target.pointer(t.path.as_str()).is_none_or(Value::is_null)
        }
        _ => true,
    });
    json_patch::patch(target, &ops).map_err(|e| e.to_string())
}

/// Strategic merge patch, with the directives kubectl sends.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => merge_map(t, p),
        _ => *target = strip_directives(patch),
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(&Value::Object(patch.clone()))
            .as_object()
            .cloned()
            .unwrap_or_default();
        return;
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (target.get_mut(field), value.as_array()) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        if value.get("$patch").and_then(Value::as_str) == Some("delete") {
            target.remove(key);
            continue;
        }
        match (target.get_mut(key), value) {
            (Some(Value::Object(t)), Value::Object(p)) => merge_map(t, p),
            (Some(Value::Array(t)), Value::Array(p)) => merge_list(key, t, p),
            (_, v) => {
                target.insert(key.clone(), strip_directives(v));
            }
        }
    }
}

fn merge_list(field: &str, target: &mut Vec<Value>, patch: &[Value]) {
    if is_primitive_merge_list(field) {
        for v in patch {
            if !target.contains(v) {
                target.push(v.clone());
            }
        }
        return;
    }
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        return;
    }
    let Some(key) = merge_key(field, target).or_else(|| merge_key(field, patch)) else {
        *target = patch.iter().map(strip_directives).collect();
        return;
    };
    for item in patch {
        let id = item.get(key).cloned();
        let position = id
            .as_ref()
            .and_then(|id| target.iter().position(|t| t.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                target.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let (Some(t), Some(p)) = (target[i].as_object_mut(), item.as_object()) {
                    merge_map(t, p);
                }
            }
            (None, false) => target.push(strip_directives(item)),
        }
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Server-side apply of `config` by one field manager whose previous applied configuration was
/// `previous`: fields it applied before and no longer applies are removed, then the config is
/// merged in (maps recursively, keyed lists by key, other lists replaced).
pub fn apply(target: &mut Value, previous: Option<&Value>, config: &Value) {
    if let Some(previous) = previous {
        remove_dropped(target, previous, config, "");
    }
    apply_merge(target, config, "");
}

fn apply_merge(target: &mut Value, config: &Value, field: &str) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(existing) if !v.is_null() => apply_merge(existing, v, k),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(c)) => match merge_key(field, c) {
            Some(key) => {
                for item in c {
                    let id = item.get(key);
                    match t.iter_mut().find(|x| id.is_some() && x.get(key) == id) {
                        Some(existing) => apply_merge(existing, item, ""),
                        None => t.push(item.clone()),
                    }
                }
            }
            None if is_primitive_merge_list(field) => {
                for v in c {
                    if !t.contains(v) {
                        t.push(v.clone());
                    }
                }
            }
            None => *t = c.clone(),
        },
        (t, c) => *t = c.clone(),
    }
}

fn remove_dropped(target: &mut Value, previous: &Value, config: &Value, field: &str) {
    match (target, previous) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, pv) in p {
                match config.get(k) {
                    None => {
                        t.remove(k);
                    }
                    Some(cv) => {
                        if let Some(tv) = t.get_mut(k) {
                            remove_dropped(tv, pv, cv, k);
                        }
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p)) => {
            let Some(key) = merge_key(field, p) else {
                if is_primitive_merge_list(field) {
                    let keep = config.as_array().cloned().unwrap_or_default();
                    t.retain(|v| !p.contains(v) || keep.contains(v));
                }
                return;
            };
            let config_items = config.as_array().cloned().unwrap_or_default();
            for pitem in p {
                let id = pitem.get(key);
                match config_items.iter().find(|c| c.get(key) == id) {
                    None => t.retain(|x| x.get(key) != id),
                    Some(citem) => {
                        if let Some(titem) = t.iter_mut().find(|x| x.get(key) == id) {
                            remove_dropped(titem, pitem, citem, "");
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_by_key_and_directives() {
        let mut t = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
                           "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v1"}, {"name": "side", "image": "s"}]}}}});
        let p = json!({"metadata": {"finalizers": ["b"], "labels": {"y": null}},
                       "$setElementOrder/finalizers": ["a", "b"],
                       "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}],
                                "containers": [{"name": "app", "image": "v2"}, {"name": "side", "$patch": "delete"}]}}}});
        strategic_merge(&mut t, &p);
        assert_eq!(t["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(t["metadata"]["labels"], json!({"x": "1"}));
        assert_eq!(
            t["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "image": "v2"}])
        );
        strategic_merge(
            &mut t,
            &json!({"$deleteFromPrimitiveList/metadata": [], "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(t["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn test_null_passes_on_a_missing_path_as_on_the_api_server() {
        let mut t = json!({"metadata": {"name": "x"}});
        let add_first = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                               {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]);
        json_patch(&mut t, &add_first).expect("test null on a missing path passes");
        assert_eq!(t["metadata"]["finalizers"], json!(["f"]));
        // A test that does not hold still fails the whole patch.
        let stale = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                           {"op": "add", "path": "/metadata/finalizers", "value": ["g"]}]);
        assert!(json_patch(&mut t, &stale).is_err());
        assert_eq!(t["metadata"]["finalizers"], json!(["f"]));
    }

    #[test]
    fn apply_removes_what_the_manager_dropped() {
        let mut t = json!({"metadata": {"labels": {"mine": "1", "theirs": "2"}}, "spec": {"a": 1, "b": 2}});
        let prev = json!({"metadata": {"labels": {"mine": "1"}}, "spec": {"a": 1, "b": 2}});
        let next = json!({"metadata": {"labels": {}}, "spec": {"a": 3}});
        apply(&mut t, Some(&prev), &next);
        assert_eq!(t, json!({"metadata": {"labels": {"theirs": "2"}}, "spec": {"a": 3}}));
    }
}
