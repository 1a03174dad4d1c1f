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

/// Evaluate a simple JSONPath such as `.status.lastSyncTime` or `.spec.ports[0].port`.
fn json_path<'a>(object: &'a Value, path: &str) -> &'a Value {
    let mut v = object;
    for seg in path.trim_start_matches('.').split('.') {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !field.is_empty() {
            v = &v[field];
        }
        if let Some(i) = index {
            v = &v[i];
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
    columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}));
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut cells = vec![item["metadata"]["name"].clone()];
            for c in &rt.printer_columns {
                cells.push(cell(json_path(item, &c.json_path)));
            }
            cells.push(json!(age(item["metadata"]["creationTimestamp"].as_str().unwrap_or(""))));
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
