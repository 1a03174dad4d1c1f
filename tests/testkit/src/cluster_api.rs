//! How the VolSync simulator reads and writes a cluster: straight into the in-process test
//! API server's store, or through the REST API of any API server (a real kube-apiserver).
//! Writes are fire-and-forget: a conflict or a vanished object is retried on the next tick,
//! as a controller would.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::apiserver::ApiServer;
use crate::apiserver::store::{PatchType, Subresource, WriteOptions};

/// The simulator's field manager.
const MANAGER: &str = "volsync";
/// Every API call is bounded: a stopped API server must not stall the simulator.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub enum Backend {
    /// The in-process test API server: no controllers run there, so the simulator also binds
    /// PVCs and runs workloads.
    Store(Arc<ApiServer>),
    /// A real API server: its controllers bind PVCs to the PersistentVolumes the simulator
    /// provisions, and run Deployments and StatefulSets (kwok runs their pods).
    Api(kube::Client),
}

impl Backend {
    /// Whether the cluster's own controllers run workloads and bind volumes.
    pub fn has_controllers(&self) -> bool {
        matches!(self, Backend::Api(_))
    }

    pub async fn list(&self, group: &str, version: &str, plural: &str) -> Vec<Value> {
        match self {
            Backend::Store(server) => {
                let store = server.store();
                let Some(t) = store.find_type(group, version, plural) else {
                    return Vec::new();
                };
                store.list(&t, None, &Default::default(), &Default::default()).0
            }
            Backend::Api(client) => {
                let Some(list) = call(client, http::Method::GET, &path(group, version, plural, ""), None, None).await
                else {
                    return Vec::new();
                };
                // List items carry no kind or apiVersion; owner references need them.
                let kind = list["kind"].as_str().unwrap_or("").trim_end_matches("List").to_string();
                let api_version = if group.is_empty() {
                    version.to_string()
                } else {
                    format!("{group}/{version}")
                };
                let mut items = list["items"].as_array().cloned().unwrap_or_default();
                for item in &mut items {
                    item["kind"] = json!(kind);
                    item["apiVersion"] = json!(api_version);
                }
                items
            }
        }
    }

    pub async fn get(&self, group: &str, version: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        match self {
            Backend::Store(server) => {
                let store = server.store();
                store.get(&store.find_type(group, version, plural)?, ns, name).ok()
            }
            Backend::Api(client) => {
                let path = format!("{}/{name}", path(group, version, plural, ns));
                call(client, http::Method::GET, &path, None, None).await
            }
        }
    }

    pub async fn create(&self, group: &str, version: &str, plural: &str, ns: &str, object: Value) {
        match self {
            Backend::Store(server) => {
                let store = server.store();
                if let Some(t) = store.find_type(group, version, plural) {
                    let _ = store.create(&t, ns, object, &options());
                }
            }
            Backend::Api(client) => {
                let path = format!("{}?fieldManager={MANAGER}", path(group, version, plural, ns));
                call(
                    client,
                    http::Method::POST,
                    &path,
                    Some("application/json"),
                    Some(object),
                )
                .await;
            }
        }
    }

    /// A JSON merge patch of the object or its status.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        ns: &str,
        name: &str,
        body: Value,
        sub: Subresource,
    ) {
        match self {
            Backend::Store(server) => {
                let store = server.store();
                if let Some(t) = store.find_type(group, version, plural) {
                    let _ = store.patch(&t, ns, name, PatchType::Merge, &body, sub, &options());
                }
            }
            Backend::Api(client) => {
                let status = if sub == Subresource::Status { "/status" } else { "" };
                let path = format!(
                    "{}/{name}{status}?fieldManager={MANAGER}",
                    path(group, version, plural, ns)
                );
                call(
                    client,
                    http::Method::PATCH,
                    &path,
                    Some("application/merge-patch+json"),
                    Some(body),
                )
                .await;
            }
        }
    }

    pub async fn delete(&self, group: &str, version: &str, plural: &str, ns: &str, name: &str) {
        match self {
            Backend::Store(server) => {
                let store = server.store();
                if let Some(t) = store.find_type(group, version, plural) {
                    let _ = store.delete(&t, ns, name, &json!({}), false);
                }
            }
            Backend::Api(client) => {
                // Background propagation: owned objects go too, as with kubectl delete.
                let path = format!("{}/{name}", path(group, version, plural, ns));
                let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
                call(
                    client,
                    http::Method::DELETE,
                    &path,
                    Some("application/json"),
                    Some(body),
                )
                .await;
            }
        }
    }
}

fn options() -> WriteOptions {
    WriteOptions {
        field_manager: Some(MANAGER.into()),
        ..WriteOptions::default()
    }
}

/// The REST path of a collection: all namespaces when `ns` is empty (or the kind is
/// cluster-scoped).
fn path(group: &str, version: &str, plural: &str, ns: &str) -> String {
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    if ns.is_empty() {
        format!("{prefix}/{plural}")
    } else {
        format!("{prefix}/namespaces/{ns}/{plural}")
    }
}

/// One bounded call; `None` for any error (not found, conflict, unreachable).
async fn call(
    client: &kube::Client,
    method: http::Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<Value>,
) -> Option<Value> {
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let request = request.body(body).ok()?;
    match tokio::time::timeout(CALL_TIMEOUT, client.request::<Value>(request)).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::debug!(path, error = %e, "simulator call failed");
            None
        }
        Err(_) => None,
    }
}
