//! Validation and pruning of custom resources against a CRD's structural openAPIV3Schema, the
//! way the API server does it: unknown fields are pruned (or, with `fieldValidation=Strict`,
//! refused), null values of non-nullable fields dropped, defaults filled in, and types, enums, patterns, bounds and
//! required fields checked.

use regex::Regex;
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Outcome {
    /// Field errors, each `path: message` as the API server words them.
    pub errors: Vec<String>,
    /// Paths of fields the schema does not declare (pruned from the object).
    pub unknown: Vec<String>,
}

/// Check `object` (a whole custom resource) against `schema`, pruning what it does not declare.
pub fn validate(schema: &Value, object: &mut Value) -> Outcome {
    let mut outcome = Outcome::default();
    if let Some(map) = object.as_object_mut() {
        let props = &schema["properties"];
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.get(&key) {
                Some(sub) => {
                    if let Some(v) = map.get_mut(&key) {
                        if v.is_null() && sub["nullable"].as_bool() != Some(true) {
                            map.remove(&key);
                            continue;
                        }
                        check(sub, v, &key, &mut outcome);
                    }
                }
                None if schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true) => {}
                None => {
                    outcome.unknown.push(key.clone());
                    map.remove(&key);
                }
            }
        }
        required(schema, map, "", &mut outcome);
    }
    outcome
}

fn required(schema: &Value, map: &serde_json::Map<String, Value>, path: &str, outcome: &mut Outcome) {
    for r in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(r) {
            outcome.errors.push(format!("{}: Required value", join(path, r)));
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &mut Value, path: &str, outcome: &mut Outcome) {
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            outcome.errors.push(format!(
                "{path}: Invalid value: \"{}\": {path} in body must be of type integer or string",
                type_name(value)
            ));
            return;
        }
    } else if let Some(want) = schema["type"].as_str() {
        let actual = type_name(value);
        let ok = actual == want || (want == "number" && actual == "integer");
        if !ok {
            outcome.errors.push(format!(
                "{path}: Invalid value: \"{actual}\": {path} in body must be of type {want}: \"{actual}\""
            ));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        outcome.errors.push(format!(
            "{path}: Unsupported value: {value}: supported values: {}",
            supported.join(", ")
        ));
    }
    match value {
        Value::String(s) => {
            if let Some(pattern) = schema["pattern"].as_str() {
                // Go's regexp.MatchString: a match anywhere, as the API server applies it.
                match Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => outcome.errors.push(format!(
                        "{path}: Invalid value: {:?}: {path} in body should match '{pattern}'",
                        s
                    )),
                    _ => {}
                }
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && s.chars().count() as u64 > max
            {
                outcome
                    .errors
                    .push(format!("{path}: Too long: may not be more than {max} bytes"));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && (s.chars().count() as u64) < min
            {
                outcome.errors.push(format!(
                    "{path}: Invalid value: {s:?}: {path} in body should be at least {min} chars long"
                ));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema["minimum"].as_f64()
                && x < min
            {
                outcome.errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be greater than or equal to {min}"
                ));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && x > max
            {
                outcome.errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be less than or equal to {max}"
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                outcome.errors.push(format!(
                    "{path}: Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            let item_schema = &schema["items"];
            if item_schema.is_object() {
                for (i, item) in items.iter_mut().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), outcome);
                }
            }
        }
        Value::Object(map) => {
            let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let sub_path = join(path, &key);
                let sub_schema = props.and_then(|p| p.get(&key)).or(additional.filter(|a| a.is_object()));
                match sub_schema {
                    Some(sub) => {
                        let drop_null =
                            map.get(&key).is_some_and(Value::is_null) && sub["nullable"].as_bool() != Some(true);
                        if drop_null {
                            map.remove(&key);
                        } else if let Some(v) = map.get_mut(&key) {
                            check(sub, v, &sub_path, outcome);
                        }
                    }
                    None if preserve || additional.and_then(Value::as_bool) == Some(true) => {}
                    None => {
                        outcome.unknown.push(sub_path);
                        map.remove(&key);
                    }
                }
            }
            // Defaulting, as the API server does for structural schemas: absent fields with a
            // `default` get it.
            if let Some(props) = props {
                for (key, sub) in props {
                    if let Some(default) = sub.get("default")
                        && !map.contains_key(key)
                    {
                        map.insert(key.clone(), default.clone());
                    }
                }
            }
            required(schema, map, path, outcome);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prunes_unknown_and_reports_errors() {
        let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "required": ["a"], "properties": {
            "a": {"type": "string", "enum": ["x", "y"]},
            "n": {"type": "integer", "minimum": 0, "maximum": 10},
            "p": {"type": "string", "pattern": "^[a-z]+$"},
            "q": {"x-kubernetes-int-or-string": true},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "m": {"type": "object", "additionalProperties": {"type": "string"}}
        }}}});
        let mut ok = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
                            "spec": {"a": "x", "n": 3, "p": "abc", "q": "10Gi", "free": {"any": 1}, "m": {"k": "v"}, "extra": 1}});
        let out = validate(&schema, &mut ok);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.unknown, vec!["spec.extra"]);
        assert!(ok["spec"].get("extra").is_none());
        assert_eq!(ok["spec"]["free"]["any"], 1);

        let mut bad = json!({"spec": {"a": "z", "n": 11, "p": "ABC", "q": true, "m": {"k": 1}}, "status": {}});
        let out = validate(&schema, &mut bad);
        let text = out.errors.join("\n");
        for want in [
            "spec.a: Unsupported value: \"z\"",
            "spec.n: Invalid value: 11",
            "spec.p: Invalid value: \"ABC\"",
            "spec.q: Invalid value: \"boolean\"",
            "spec.m.k: Invalid value: \"integer\"",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        assert_eq!(out.unknown, vec!["status"]);
        let mut missing = json!({"spec": {}});
        assert_eq!(validate(&schema, &mut missing).errors, vec!["spec.a: Required value"]);
    }
}
