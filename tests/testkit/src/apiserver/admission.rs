//! Mutating admission as the API server does it: registered MutatingWebhookConfigurations are
//! matched (rules, namespaceSelector, objectSelector), called over HTTPS verifying `caBundle`
//! within `timeoutSeconds`, and their patches applied in order; a denial refuses the request,
//! and a failed call follows `failurePolicy`. Services are reached through routes a test
//! registers (there is no cluster network here).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::registry::ResourceType;
use super::store::{ApiError, Store};
use crate::http::TlsConnection;

/// Where a Service's port is actually served, for webhook calls.
pub type ServiceRoutes = BTreeMap<(String, String, i64), SocketAddr>;

const MWC_ID: &str = "admissionregistration.k8s.io/mutatingwebhookconfigurations";

fn contains(list: &Value, value: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|v| v == "*" || v == value))
}

fn rule_matches(rule: &Value, rt: &ResourceType, operation: &str) -> bool {
    let scope = rule["scope"].as_str().unwrap_or("*");
    let scope_ok = scope == "*" || (scope == "Namespaced") == rt.namespaced;
    contains(&rule["operations"], operation)
        && contains(&rule["apiGroups"], &rt.group)
        && contains(&rule["apiVersions"], &rt.version)
        && contains(&rule["resources"], &rt.plural)
        && scope_ok
}

/// A metav1.LabelSelector (matchLabels and matchExpressions) against a set of labels.
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    if selector.is_null() {
        return true;
    }
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_ok = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| get(k) == v.as_str()));
    let exprs_ok = selector["matchExpressions"].as_array().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str().unwrap_or("") {
                "In" => get(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => get(key).is_some(),
                "DoesNotExist" => get(key).is_none(),
                _ => false,
            }
        })
    });
    labels_ok && exprs_ok
}

/// The webhooks that apply to this request, in order.
pub fn matching(
    store: &Store,
    rt: &ResourceType,
    operation: &str,
    namespace: &str,
    object: &Value,
    old: Option<&Value>,
) -> Vec<Value> {
    if rt.group == "admissionregistration.k8s.io" {
        return Vec::new();
    }
    let Some(mwc) = store.types().into_iter().find(|t| t.id() == MWC_ID) else {
        return Vec::new();
    };
    let (configs, _) = store.list(&mwc, None, &Default::default(), &Default::default());
    let namespace_labels = if rt.namespaced {
        store
            .find_type("", "v1", "namespaces")
            .and_then(|t| store.get(&t, "", namespace).ok())
            .map(|ns| ns["metadata"]["labels"].clone())
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let mut out = Vec::new();
    for config in configs {
        for hook in config["webhooks"].as_array().into_iter().flatten() {
            let rules_ok = hook["rules"]
                .as_array()
                .is_some_and(|rules| rules.iter().any(|r| rule_matches(r, rt, operation)));
            let ns_ok = !rt.namespaced || selector_matches(&hook["namespaceSelector"], &namespace_labels);
            let object_ok = selector_matches(&hook["objectSelector"], &object["metadata"]["labels"])
                || old.is_some_and(|o| selector_matches(&hook["objectSelector"], &o["metadata"]["labels"]));
            if rules_ok && ns_ok && object_ok {
                out.push(hook.clone());
            }
        }
    }
    out
}

/// Run the matching webhooks over `object`; the mutated object, or why the request is refused.
#[allow(clippy::too_many_arguments)]
pub async fn mutate(
    hooks: &[Value],
    routes: &ServiceRoutes,
    rt: &ResourceType,
    operation: &str,
    namespace: &str,
    mut object: Value,
    old: Option<Value>,
    dry_run: bool,
) -> Result<Value, ApiError> {
    for hook in hooks {
        let name = hook["name"].as_str().unwrap_or("").to_string();
        let fail_open = hook["failurePolicy"].as_str() == Some("Ignore");
        match call(hook, routes, rt, operation, namespace, &object, old.as_ref(), dry_run).await {
            Ok(Verdict::Allow(Some(patch))) => {
                let ops: json_patch::Patch = serde_json::from_slice(&patch).map_err(|e| {
                    ApiError::new(
                        500,
                        "InternalError",
                        format!("Internal error occurred: webhook {name:?} returned a bad patch: {e}"),
                    )
                })?;
                json_patch::patch(&mut object, &ops).map_err(|e| {
                    ApiError::new(
                        500,
                        "InternalError",
                        format!("Internal error occurred: webhook {name:?} patch does not apply: {e}"),
                    )
                })?;
            }
            Ok(Verdict::Allow(None)) => {}
            Ok(Verdict::Deny { code, reason, message }) => {
                let mut e = ApiError::new(
                    code,
                    "BadRequest",
                    format!("admission webhook \"{name}\" denied the request: {message}"),
                );
                if let Some(r) = reason {
                    e.reason = match r.as_str() {
                        "Forbidden" => "Forbidden",
                        "Invalid" => "Invalid",
                        _ => "BadRequest",
                    };
                }
                return Err(e);
            }
            Err(problem) if fail_open => {
                tracing::debug!(webhook = name, problem, "webhook failed; failurePolicy Ignore");
            }
            Err(problem) => {
                return Err(ApiError::new(
                    500,
                    "InternalError",
                    format!("Internal error occurred: failed calling webhook \"{name}\": {problem}"),
                ));
            }
        }
    }
    Ok(object)
}

enum Verdict {
    Allow(Option<Vec<u8>>),
    Deny {
        code: u16,
        reason: Option<String>,
        message: String,
    },
}

#[allow(clippy::too_many_arguments)]
async fn call(
    hook: &Value,
    routes: &ServiceRoutes,
    rt: &ResourceType,
    operation: &str,
    namespace: &str,
    object: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<Verdict, String> {
    let client = &hook["clientConfig"];
    let ca = client["caBundle"].as_str().ok_or("no caBundle")?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .map_err(|e| format!("caBundle: {e}"))?;
    let ca = String::from_utf8(ca).map_err(|e| format!("caBundle: {e}"))?;
    let (addr, server_name, path) = if let Some(service) = client.get("service").filter(|s| s.is_object()) {
        let (ns, name) = (
            service["namespace"].as_str().unwrap_or(""),
            service["name"].as_str().unwrap_or(""),
        );
        let port = service["port"].as_i64().unwrap_or(443);
        let addr = routes
            .get(&(ns.to_string(), name.to_string(), port))
            .ok_or_else(|| format!("service \"{name}\" not found"))?;
        (
            *addr,
            format!("{name}.{ns}.svc"),
            service["path"].as_str().unwrap_or("/").to_string(),
        )
    } else {
        let url = url::Url::parse(client["url"].as_str().ok_or("no url or service")?).map_err(|e| e.to_string())?;
        let addr = url
            .socket_addrs(|| Some(443))
            .map_err(|e| e.to_string())?
            .first()
            .copied()
            .ok_or("no address")?;
        (addr, url.host_str().unwrap_or("").to_string(), url.path().to_string())
    };
    let timeout = Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap_or(10));
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uuid_like(), "kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "resource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
        "requestKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "requestResource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
        "name": object["metadata"]["name"], "namespace": namespace, "operation": operation,
        "userInfo": {"username": "testkit-admin", "groups": ["system:masters"]},
        "object": object, "oldObject": old, "dryRun": dry_run, "options": {}}});
    let exchange = async {
        let mut conn = TlsConnection::open(addr, &ca, &server_name).await.map_err(|e| e.0)?;
        Ok::<_, String>(conn.request("POST", &path, &review.to_string()).await)
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("timeout after {timeout:?}"))??;
    if reply.status != 200 {
        return Err(format!("webhook answered HTTP {}", reply.status));
    }
    let response = &reply.body["response"];
    if response["uid"] != review["request"]["uid"] {
        return Err("response uid does not match the request".into());
    }
    if response["allowed"] != true {
        let status = &response["status"];
        return Ok(Verdict::Deny {
            code: status["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| *c >= 400)
                .unwrap_or(400),
            reason: status["reason"].as_str().map(str::to_string),
            message: status["message"].as_str().unwrap_or("").to_string(),
        });
    }
    // Go decodes a []byte from base64 text or from an array of numbers.
    let patch = match &response["patch"] {
        Value::Null => None,
        Value::String(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("patch: {e}"))?,
        ),
        Value::Array(bytes) => Some(bytes.iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect()),
        other => return Err(format!("patch of unexpected type: {other}")),
    };
    if patch.is_some() && response["patchType"] != "JSONPatch" {
        return Err("patch without patchType JSONPatch".into());
    }
    Ok(Verdict::Allow(patch))
}

fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
}
