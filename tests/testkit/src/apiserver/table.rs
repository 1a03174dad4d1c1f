//! `meta.k8s.io/v1` Table output, which `kubectl get` asks for.

use serde_json::{Value, json};

use super::registry::ResourceType;

/// Go-style short age: `45s`, `12m`, `5h`, `3d`.
fn age(created: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(created) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Evaluate a simple JSONPath such as `.status.lastSyncTime`, `.spec.ports[0].port` or
/// `.status.conditions[?(@.type=="Ready")].status` (a filter by one field's string value).
fn json_path<'a>(object: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    let mut v = object;
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        // A segment ends at the next '.' outside brackets.
        let mut depth = 0;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ => {}
                }
                c == '.' && depth == 0
            })
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let seg = &rest[..end];
        rest = rest[end..].trim_start_matches('.');
        let (field, index) = match seg.split_once('[') {
            Some((f, idx)) => (f, Some(idx.trim_end_matches(']'))),
            None => (seg, None),
        };
        if !field.is_empty() {
            v = &v[field];
        }
        match index {
            None => {}
            Some(filter) if filter.starts_with("?(@.") => {
                let inner = filter.trim_start_matches("?(@.").trim_end_matches(')');
                let Some((key, want)) = inner.split_once("==") else {
                    return &NULL;
                };
                let want = want.trim_matches('"').trim_matches('\'');
                v = v
                    .as_array()
                    .and_then(|items| items.iter().find(|i| i[key].as_str() == Some(want)))
                    .unwrap_or(&NULL);
            }
            Some(i) => v = i.parse::<usize>().map(|i| &v[i]).unwrap_or(&NULL),
        }
    }
    v
}

fn cell(v: &Value) -> Value {
    match v {
        Value::Null => json!("<none>"),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => v.clone(),
        other => json!(other.to_string()),
    }
}

pub fn table(rt: &ResourceType, items: &[Value], resource_version: Option<u64>, include_object: &str) -> Value {
    let mut columns =
        vec![json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0})];
    for c in &rt.printer_columns {
        columns.push(json!({"name": c.name, "type": c.type_, "format": "", "description": c.name, "priority": 0}));
    }
    // A CRD that lists its own columns gets only those (it adds Age itself when it wants it).
    let own_age = rt.printer_columns.iter().any(|c| c.name == "Age");
    if !own_age {
        columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut cells = vec![item["metadata"]["name"].clone()];
            for c in &rt.printer_columns {
                let value = json_path(item, &c.json_path);
                // As the real server renders a CRD's date columns: an age.
                match value.as_str() {
                    Some(t) if c.type_ == "date" => cells.push(json!(age(t))),
                    _ => cells.push(cell(value)),
                }
            }
            if !own_age {
                cells.push(json!(age(item["metadata"]["creationTimestamp"].as_str().unwrap_or(""))));
            }
            let object = match include_object {
                "None" => Value::Null,
                "Object" => item.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv.to_string());
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let o = json!({"spec": {"ports": [{"port": 80}, {"port": 443}]},
                       "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(json_path(&o, ".spec.ports[1].port"), &json!(443));
        assert_eq!(
            json_path(&o, r#".status.conditions[?(@.type=="Ready")].status"#),
            &json!("True")
        );
        assert_eq!(
            json_path(&o, r#".status.conditions[?(@.type=="Gone")].status"#),
            &Value::Null
        );
        assert_eq!(json_path(&o, ".status.missing"), &Value::Null);
    }
}
