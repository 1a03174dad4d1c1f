//! An in-process Kubernetes API server for tests.
//!
//! Real HTTP on 127.0.0.1 with the real REST paths, discovery and OpenAPI v3 good enough for
//! kubectl, list and watch with resource versions (410 Gone when too old, bookmarks, initial
//! events), label and field selectors, create with generateName, update with optimistic
//! concurrency, merge / JSON / strategic-merge / server-side-apply patches, status and scale
//! subresources, finalizers, garbage collection, CRDs with schema validation, and Status
//! errors with the real reasons and codes. Tests can stop and restart it (an outage that drops
//! every connection), inject errors, and count requests.

pub mod admission;
pub mod patch;
pub mod registry;
pub mod schema;
pub mod selectors;
pub mod store;
pub mod table;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use registry::ResourceType;
use selectors::{FieldSelector, LabelSelector};
use store::{ApiError, EventType, PatchType, Store, Subresource, WatchStart, WriteOptions};

/// Settings of one server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Events kept for watches to resume from; older resume points get 410 Gone.
    pub history: usize,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Serve HTTPS with a certificate from a throwaway CA (in the kubeconfig) instead of HTTP.
    pub tls: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            history: 100_000,
            bookmark_interval: Duration::from_secs(1),
            tls: false,
        }
    }
}

/// An error to return instead of serving a matching request.
#[derive(Clone, Debug)]
pub struct Fault {
    /// `create`, `update`, `patch`, `delete`, `get`, `list`, `watch`; `None` matches any verb.
    pub verb: Option<&'static str>,
    /// Resource plural (`persistentvolumeclaims`); `None` matches any resource.
    pub resource: Option<String>,
    /// How many matching requests fail.
    pub count: usize,
    pub code: u16,
}

/// Request counts by `verb resource`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub by_verb_resource: BTreeMap<String, u64>,
    /// Watches answered with 410 Gone (resume point compacted away).
    pub expired_watches: u64,
}

impl Stats {
    pub fn count(&self, verb: &str) -> u64 {
        self.by_verb_resource
            .iter()
            .filter(|(k, _)| k.split(' ').next() == Some(verb))
            .map(|(_, v)| v)
            .sum()
    }

    /// create + update + patch + delete + deletecollection requests, reviews left out: a
    /// SelfSubjectAccessReview is a question put as a create, never stored.
    pub fn writes(&self) -> u64 {
        let reviews = self
            .by_verb_resource
            .get("create selfsubjectaccessreviews.authorization.k8s.io")
            .copied()
            .unwrap_or(0);
        ["create", "update", "patch", "delete", "deletecollection"]
            .iter()
            .map(|v| self.count(v))
            .sum::<u64>()
            - reviews
    }
}

struct Shared {
    store: Store,
    config: Config,
    faults: Mutex<Vec<Fault>>,
    stats: Mutex<Stats>,
    addr: Mutex<SocketAddr>,
    tls: Option<crate::tls::ServingCert>,
    /// Where Services are served, for webhook calls.
    routes: Mutex<admission::ServiceRoutes>,
    /// `verb group/resource` a SelfSubjectAccessReview answers "not allowed" for (everything
    /// else is allowed: the server does no authorization).
    denied: Mutex<std::collections::BTreeSet<String>>,
    /// Bumped by `stop`: a watch of an older generation sends nothing more, even before its
    /// aborted connection is gone, so an outage takes effect at once.
    generation: std::sync::atomic::AtomicU64,
    /// Per resource plural: how long after a change its watchers are told (see `lag_watches`).
    watch_lag: Mutex<BTreeMap<String, Duration>>,
}

/// A running (or stopped) test API server. Dropping it stops it.
pub struct ApiServer {
    shared: Arc<Shared>,
    serving: Mutex<Option<JoinSet<()>>>,
}

impl ApiServer {
    /// Start on a free port of 127.0.0.1.
    pub async fn start(config: Config) -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tls = if config.tls {
            Some(crate::tls::generate().map_err(std::io::Error::other)?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            routes: Mutex::new(Default::default()),
            denied: Mutex::new(Default::default()),
            generation: std::sync::atomic::AtomicU64::new(0),
            watch_lag: Mutex::new(BTreeMap::new()),
            tls,
            store: Store::new(config.history),
            config,
            faults: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            addr: Mutex::new(addr),
        });
        let server = ApiServer {
            shared,
            serving: Mutex::new(None),
        };
        server.serve(listener);
        Ok(server)
    }

    fn serve(&self, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        let shared = self.shared.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    match shared
                        .tls
                        .as_ref()
                        .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()))
                    {
                        // A failed handshake or connection is the client's business.
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                serve_connection(shared, tls).await;
                            }
                        }
                        None => serve_connection(shared, stream).await,
                    }
                });
                while connections.try_join_next().is_some() {}
            }
            // Dropping `connections` (when this task is aborted) aborts every connection.
        });
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(tasks);
    }

    /// Stop serving: the port is closed when this returns, and every open connection (watches
    /// included) drops.
    pub async fn stop(&self) {
        let tasks = self.abort();
        if let Some(mut tasks) = tasks {
            // Wait for the accept loop to be gone, so its listener (and the port) is closed.
            while tasks.join_next().await.is_some() {}
        }
    }

    fn abort(&self) -> Option<JoinSet<()>> {
        self.shared.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut tasks = self.serving.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        tasks.abort_all();
        Some(tasks)
    }

    /// Serve again on the same port, with the same objects.
    pub async fn restart(&self) -> std::io::Result<()> {
        self.stop().await;
        let addr = self.addr();
        // The old listener may take a moment to release the port.
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    self.serve(listener);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("could not rebind")))
    }

    pub fn addr(&self) -> SocketAddr {
        *self.shared.addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// PEM of the CA behind the HTTPS certificate, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.shared.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Serve the Service `namespace/name:port` at `addr` (webhooks configured by Service are
    /// called there).
    pub fn route_service(&self, namespace: &str, name: &str, port: i64, addr: SocketAddr) {
        self.shared
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((namespace.into(), name.into(), port), addr);
    }

    /// Make SelfSubjectAccessReviews say `verb` on `group/resource` is not allowed.
    pub fn deny_access(&self, verb: &str, group: &str, resource: &str) {
        self.shared
            .denied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("{verb} {group}/{resource}"));
    }

    /// Undo every `deny_access`.
    pub fn allow_all_access(&self) {
        self.shared.denied.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Tell watchers of `resource` (a plural, e.g. `persistentvolumeclaims`) of each change only
    /// `lag` after it was made, in order, while reads already return it: a real API server's
    /// watch cache lags behind its writes the same way, so a client's cache (a reflector) can
    /// be older than what it just wrote. `Duration::ZERO` ends the lag.
    pub fn lag_watches(&self, resource: &str, lag: Duration) {
        let mut lags = self.shared.watch_lag.lock().unwrap_or_else(|p| p.into_inner());
        if lag.is_zero() {
            lags.remove(resource);
        } else {
            lags.insert(resource.to_string(), lag);
        }
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()).push(fault);
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset_stats(&self) {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = Stats::default();
    }

    /// A kubeconfig whose only context points at this server.
    pub fn kubeconfig(&self, cluster: &str) -> String {
        use base64::Engine as _;
        let ca = self
            .ca_pem()
            .map(|pem| {
                format!(
                    "    certificate-authority-data: {}\n",
                    base64::engine::general_purpose::STANDARD.encode(pem)
                )
            })
            .unwrap_or_default();
        // Over HTTPS kubectl asks for a password when the user has no credentials; the server
        // does not check them, so any token does.
        let user = if self.shared.tls.is_some() {
            "{token: testkit}"
        } else {
            "{}"
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {url}\n{ca}\
             users:\n- name: {cluster}\n  user: {user}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {cluster}\n    namespace: default\n\
             current-context: {cluster}\npreferences: {{}}\n",
            url = self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path, cluster: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig(cluster))
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.abort();
    }
}

async fn serve_connection<IO>(shared: Arc<Shared>, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

// === request handling ===

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error(e: &ApiError) -> Response<Body> {
    respond(e.code, &e.status())
}

fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        if let Ok(v) = format!("299 - \"{}\"", w.replace('"', "'")).parse() {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Query(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            dry_run: self.get("dryRun") == Some("All"),
            strict: self.get("fieldValidation") == Some("Strict"),
            field_manager: self.get("fieldManager").map(str::to_string),
            force: self.flag("force"),
        }
    }
}

/// A parsed resource path.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(&ApiError::bad_request(format!("cannot read body: {e}"))),
    };
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let query = Query::parse(parts.uri.query());
    let accept = parts
        .headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let store = &shared.store;
    match segs.as_slice() {
        ["version"] => respond(
            200,
            &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-testkit", "gitCommit": "testkit",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"}),
        ),
        ["healthz"] | ["readyz"] | ["livez"] => Response::new(Body::from("ok")),
        ["api"] => respond(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.lock().map(|a| a.to_string()).unwrap_or_default()}]}),
        ),
        ["api", "v1"] => respond(200, &resource_list(store, "", "v1")),
        ["apis"] => respond(200, &group_list(store)),
        ["apis", group] => match group_entry(store, group) {
            Some(g) => respond(200, &g),
            None => respond(
                404,
                &ApiError::new(404, "NotFound", "the server could not find the requested resource").status(),
            ),
        },
        ["apis", group, version] => {
            if store.types().iter().any(|t| t.group == *group && t.version == *version) {
                respond(200, &resource_list(store, group, version))
            } else {
                error(&ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ))
            }
        }
        ["openapi", "v3"] => respond(200, &openapi_root(store)),
        ["openapi", "v3", "api", "v1"] => respond(200, &openapi_doc(store, "", "v1")),
        ["openapi", "v3", "apis", group, version] => respond(200, &openapi_doc(store, group, version)),
        ["api", "v1", rest @ ..] => {
            resource(
                &shared,
                &parts.method,
                "",
                "v1",
                rest,
                &query,
                &accept,
                &content_type,
                body,
            )
            .await
        }
        ["apis", group, version, rest @ ..] => {
            resource(
                &shared,
                &parts.method,
                group,
                version,
                rest,
                &query,
                &accept,
                &content_type,
                body,
            )
            .await
        }
        _ => error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

fn parse_target(store: &Store, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let (namespace, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if store.find_type(group, version, plural).is_some_and(|t| t.namespaced) =>
        {
            (Some(ns.to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let rt = store.find_type(group, version, tail.first()?)?;
    Some(Target {
        rt,
        namespace,
        name: tail.get(1).map(|s| s.to_string()),
        sub: tail.get(2).map(|s| s.to_string()),
    })
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    shared: &Arc<Shared>,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &Query,
    accept: &str,
    content_type: &str,
    body: Bytes,
) -> Response<Body> {
    let store = &shared.store;
    let Some(t) = parse_target(store, group, version, rest) else {
        return error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let verb = match (method, &t.name, query.flag("watch")) {
        (&Method::GET, None, true) => "watch",
        (&Method::GET, None, false) => "list",
        (&Method::GET, Some(_), _) => "get",
        (&Method::POST, None, _) => "create",
        (&Method::PUT, Some(_), _) => "update",
        (&Method::PATCH, Some(_), _) => "patch",
        (&Method::DELETE, Some(_), _) => "delete",
        (&Method::DELETE, None, _) => "deletecollection",
        _ => {
            return error(&ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource".to_string(),
            ));
        }
    };
    {
        let mut stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
        let sub = t.sub.as_deref().map(|s| format!("/{s}")).unwrap_or_default();
        *stats
            .by_verb_resource
            .entry(format!("{verb} {}{sub}", t.rt.qualified()))
            .or_default() += 1;
    }
    if let Some(code) = take_fault(shared, verb, &t.rt.plural) {
        let e = match code {
            409 => ApiError::conflict(&t.rt, t.name.as_deref().unwrap_or("")),
            429 => ApiError::new(429, "TooManyRequests", "injected: too many requests"),
            503 => ApiError::new(503, "ServiceUnavailable", "injected: service unavailable"),
            c => ApiError::new(c, "InternalError", format!("injected error {c}")),
        };
        return error(&e);
    }
    if t.rt.namespaced && t.namespace.is_none() && !matches!(verb, "list" | "watch") {
        // e.g. POST /api/v1/persistentvolumeclaims: namespace required.
        return error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let table = accept.contains("as=Table");
    // Metadata-only clients (kube's PartialObjectMeta, client-go's metadata informers).
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let include = query.get("includeObject").unwrap_or("Metadata");
    let parse_body = |body: &Bytes| -> Result<Value, ApiError> {
        if content_type.contains("protobuf") {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml".to_string(),
            ));
        }
        serde_json::from_slice(body)
            .or_else(|_| {
                std::str::from_utf8(body)
                    .map_err(|e| e.to_string())
                    .and_then(|s| serde_saphyr::from_str::<Value>(s).map_err(|e| e.to_string()))
            })
            .map_err(|e| ApiError::bad_request(format!("the body of the request was in an unknown format: {e}")))
    };
    let result: Result<Response<Body>, ApiError> = async {
        match (verb, t.sub.as_deref()) {
            ("list", None) => {
                let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
                let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
                let (items, rv) = store.list(&t.rt, t.namespace.as_deref(), &labels, &fields);
                if table {
                    return Ok(respond(200, &table::table(&t.rt, &items, Some(rv), include)));
                }
                if metadata_only {
                    let items: Vec<Value> = items.iter().map(partial_object_metadata).collect();
                    return Ok(respond(200, &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                                   "metadata": {"resourceVersion": rv.to_string()}, "items": items})));
                }
                Ok(respond(200, &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(),
                                         "metadata": {"resourceVersion": rv.to_string()}, "items": items})))
            }
            ("watch", None) => watch(shared, &t, query, table, metadata_only, include),
            ("get", None) => {
                let obj = store.get(&t.rt, &ns, t.name.as_deref().unwrap_or(""))?;
                if table {
                    return Ok(respond(200, &table::table(&t.rt, &[obj], None, include)));
                }
                if metadata_only {
                    return Ok(respond(200, &partial_object_metadata(&obj)));
                }
                Ok(respond(200, &obj))
            }
            ("get", Some("status")) => Ok(respond(200, &store.get(&t.rt, &ns, t.name.as_deref().unwrap_or(""))?)),
            ("create", None) if t.rt.id() == "authorization.k8s.io/selfsubjectaccessreviews" => {
                // Answered, never stored, as the real server does.
                let mut review = parse_body(&body)?;
                let attrs = &review["spec"]["resourceAttributes"];
                let key = format!(
                    "{} {}/{}",
                    attrs["verb"].as_str().unwrap_or(""),
                    attrs["group"].as_str().unwrap_or(""),
                    attrs["resource"].as_str().unwrap_or("")
                );
                let denied = shared.denied.lock().unwrap_or_else(|p| p.into_inner()).contains(&key);
                review["status"] = if denied {
                    json!({"allowed": false, "reason": "denied by the test's deny_access"})
                } else {
                    json!({"allowed": true, "reason": "the test API server authorizes every request"})
                };
                Ok(respond(201, &review))
            }
            ("create", None) => {
                let opts = query.write_options();
                let object = admit(shared, &t.rt, "CREATE", &ns, parse_body(&body)?, None, opts.dry_run).await?;
                let w = store.create(&t.rt, &ns, object, &opts)?;
                Ok(with_warnings(respond(201, &w.object), &w.warnings))
            }
            ("update", sub @ (None | Some("status"))) => {
                let sub = if sub.is_some() { Subresource::Status } else { Subresource::Main };
                if sub == Subresource::Status && !t.rt.status {
                    return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
                }
                let name = t.name.as_deref().unwrap_or("");
                let opts = query.write_options();
                let mut object = parse_body(&body)?;
                if sub == Subresource::Main {
                    let old = store.get(&t.rt, &ns, name).ok();
                    object = admit(shared, &t.rt, "UPDATE", &ns, object, old, opts.dry_run).await?;
                }
                let w = store.update(&t.rt, &ns, name, object, sub, &opts)?;
                Ok(with_warnings(respond(200, &w.object), &w.warnings))
            }
            ("patch", sub @ (None | Some("status"))) => {
                let sub = if sub.is_some() { Subresource::Status } else { Subresource::Main };
                if sub == Subresource::Status && !t.rt.status {
                    return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
                }
                let patch_type = patch_type(content_type, &t.rt)?;
                let name = t.name.as_deref().unwrap_or("");
                let opts = query.write_options();
                let patch_body = parse_body(&body)?;
                let manager = opts.field_manager.clone().unwrap_or_default();
                let w = match sub {
                    Subresource::Main if has_webhooks(shared) => {
                        // The webhook sees the patched object; what it returns is written under the
                        // old resourceVersion, so a concurrent change is a conflict, not lost.
                        let (candidate, old) = store.preview_patch(&t.rt, &ns, name, patch_type, &patch_body, &manager)?;
                        let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
                        let mut object = admit(shared, &t.rt, operation, &ns, candidate, old.clone(), opts.dry_run).await?;
                        let written = match old {
                            None => store.create(&t.rt, &ns, object, &opts)?,
                            Some(old) => {
                                object["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
                                store.update(&t.rt, &ns, name, object, Subresource::Main, &opts)?
                            }
                        };
                        if patch_type == PatchType::Apply && !opts.dry_run {
                            store.record_applied(&t.rt, &ns, name, &manager, &patch_body);
                        }
                        written
                    }
                    _ => store.patch(&t.rt, &ns, name, patch_type, &patch_body, sub, &opts)?,
                };
                Ok(with_warnings(respond(if w.created { 201 } else { 200 }, &w.object), &w.warnings))
            }
            ("get" | "update" | "patch", Some("scale")) if t.rt.scale => scale(store, &t, verb, content_type, &body, query),
            ("delete", None) => {
                let options = if body.is_empty() { json!({}) } else { parse_body(&body)? };
                let mut options = options;
                if let Some(p) = query.get("propagationPolicy") {
                    options["propagationPolicy"] = json!(p);
                }
                let dry_run = query.get("dryRun") == Some("All") || options["dryRun"].as_array().is_some_and(|a| !a.is_empty());
                let name = t.name.clone().unwrap_or_default();
                let (object, gone) = store.delete(&t.rt, &ns, &name, &options, dry_run)?;
                if gone {
                    return Ok(respond(200, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": t.rt.group, "kind": t.rt.plural, "uid": object["metadata"]["uid"]}})));
                }
                Ok(respond(200, &object))
            }
            ("deletecollection", None) => {
                let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
                let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
                let (items, _) = store.list(&t.rt, t.namespace.as_deref(), &labels, &fields);
                for item in &items {
                    let item_ns = item["metadata"]["namespace"].as_str().unwrap_or("");
                    let _ = store.delete(&t.rt, item_ns, item["metadata"]["name"].as_str().unwrap_or(""), &json!({}), false);
                }
                Ok(respond(200, &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {}, "items": items})))
            }
            _ => Err(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
        }
    }
    .await;
    result.unwrap_or_else(|e| error(&e))
}

fn has_webhooks(shared: &Shared) -> bool {
    let store = &shared.store;
    store
        .find_type("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")
        .is_some_and(|t| {
            !store
                .list(&t, None, &Default::default(), &Default::default())
                .0
                .is_empty()
        })
}

/// Mutating admission: the object after every matching webhook, or the refusal.
async fn admit(
    shared: &Shared,
    rt: &ResourceType,
    operation: &str,
    namespace: &str,
    object: Value,
    old: Option<Value>,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let hooks = admission::matching(&shared.store, rt, operation, namespace, &object, old.as_ref());
    if hooks.is_empty() {
        return Ok(object);
    }
    let routes = shared.routes.lock().unwrap_or_else(|p| p.into_inner()).clone();
    admission::mutate(&hooks, &routes, rt, operation, namespace, object, old, dry_run).await
}

fn take_fault(shared: &Shared, verb: &str, plural: &str) -> Option<u16> {
    let mut faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
    let found = faults.iter_mut().find(|f| {
        f.count > 0 && f.verb.is_none_or(|v| v == verb) && f.resource.as_deref().is_none_or(|r| r == plural)
    })?;
    found.count -= 1;
    let code = found.code;
    faults.retain(|f| f.count > 0);
    Some(code)
}

fn patch_type(content_type: &str, rt: &ResourceType) -> Result<PatchType, ApiError> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    match mime {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" if rt.crd.is_none() => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{} (got {other:?})",
                if rt.crd.is_none() {
                    ", application/strategic-merge-patch+json"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// The autoscaling/v1 Scale view of a Deployment or StatefulSet.
fn scale_of(obj: &Value) -> Value {
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "uid": obj["metadata"]["uid"],
                        "resourceVersion": obj["metadata"]["resourceVersion"], "creationTimestamp": obj["metadata"]["creationTimestamp"]},
           "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
           "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector}})
}

fn scale(
    store: &Store,
    t: &Target,
    verb: &str,
    content_type: &str,
    body: &Bytes,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let obj = store.get(&t.rt, &ns, &name)?;
    let mut current = scale_of(&obj);
    if verb == "get" {
        return Ok(respond(200, &current));
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match verb {
        "update" => {
            let rv = body["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if !rv.is_empty() && rv != obj["metadata"]["resourceVersion"].as_str().unwrap_or("") {
                return Err(ApiError::conflict(&t.rt, &name));
            }
            current = body;
        }
        _ => match patch_type(content_type, &t.rt)? {
            PatchType::Json => patch::json_patch(&mut current, &body).map_err(|e| ApiError::new(422, "Invalid", e))?,
            PatchType::Merge | PatchType::Strategic | PatchType::Apply => patch::json_merge(&mut current, &body),
        },
    }
    let replicas = current["spec"]["replicas"]
        .as_i64()
        .ok_or_else(|| ApiError::invalid(&t.rt, &name, &["spec.replicas: Required value".into()]))?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            &t.rt,
            &name,
            &[format!(
                "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            )],
        ));
    }
    let w = store.patch(
        &t.rt,
        &ns,
        &name,
        PatchType::Merge,
        &json!({"spec": {"replicas": replicas}}),
        Subresource::Main,
        &query.write_options(),
    )?;
    Ok(respond(200, &scale_of(&w.object)))
}

/// An object as a metadata-only client receives it.
fn partial_object_metadata(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

fn watch(
    shared: &Arc<Shared>,
    t: &Target,
    query: &Query,
    table: bool,
    metadata_only: bool,
    include: &str,
) -> Result<Response<Body>, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
    let rv_param = query.get("resourceVersion").unwrap_or("");
    let initial_events = query.flag("sendInitialEvents");
    let start = if rv_param.is_empty() || rv_param == "0" || initial_events {
        WatchStart::Now
    } else {
        WatchStart::After(
            rv_param
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?,
        )
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let rt = t.rt.clone();
    let include = include.to_string();
    let namespace = t.namespace.clone();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let store::WatchStarted {
        initial: first,
        mut live,
        rv: start_rv,
    } = match shared.store.watch(&rt, namespace.as_deref(), start) {
        Ok(x) => x,
        Err(e) => {
            shared.stats.lock().unwrap_or_else(|p| p.into_inner()).expired_watches += 1;
            // As the real server: a 200 watch whose only event is an ERROR carrying the Status.
            let line = json!({"type": "ERROR", "object": e.status()}).to_string() + "\n";
            return Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(line))
                .unwrap_or_else(|_| Response::new(Body::empty())));
        }
    };
    let bookmark_interval = shared.config.bookmark_interval;
    let id = rt.id();
    let generation = shared.generation.load(std::sync::atomic::Ordering::SeqCst);
    let server = shared.clone();
    let alive = move || server.generation.load(std::sync::atomic::Ordering::SeqCst) == generation;
    let render = move |type_: &str, object: &Value| -> Bytes {
        let object = if table && type_ != "BOOKMARK" {
            table::table(&rt, std::slice::from_ref(object), None, &include)
        } else if metadata_only && type_ != "BOOKMARK" {
            partial_object_metadata(object)
        } else {
            object.clone()
        };
        Bytes::from(json!({"type": type_, "object": object}).to_string() + "\n")
    };
    let kind = t.rt.kind.clone();
    let api_version = t.rt.api_version();
    let server_lag = shared.clone();
    let resource = t.rt.plural.clone();
    tokio::spawn(async move {
        let matches = |v: &Value| labels.matches(v) && fields.matches(v);
        let mut last_rv = start_rv;
        for e in &first {
            if matches(&e.object) {
                let type_ = if e.type_ == EventType::Deleted {
                    "DELETED"
                } else {
                    e.type_.as_str()
                };
                if !alive() || tx.send(Ok(render(type_, &e.object))).await.is_err() {
                    return;
                }
            }
        }
        let bookmark = |rv: u64, end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"kind": kind, "apiVersion": api_version, "metadata": meta})
        };
        if initial_events
            && tx
                .send(Ok(render("BOOKMARK", &bookmark(start_rv, true))))
                .await
                .is_err()
        {
            return;
        }
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        loop {
            let sleep_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if !alive() || tx.send(Ok(render("BOOKMARK", &bookmark(last_rv, false)))).await.is_err() { return; }
                }
                event = live.recv() => {
                    let e = match event {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let status = ApiError::new(410, "Expired", "watch fell too far behind").status();
                            let _ = tx.send(Ok(Bytes::from(json!({"type": "ERROR", "object": status}).to_string() + "\n"))).await;
                            return;
                        }
                        Err(_) => return,
                    };
                    if e.rv <= start_rv {
                        continue;
                    }
                    last_rv = e.rv;
                    let in_scope = e.resource == id && namespace.as_deref().is_none_or(|n| e.namespace == n || e.namespace.is_empty());
                    if !in_scope {
                        continue;
                    }
                    let now_matches = matches(&e.object);
                    let was_matching = e.old.as_ref().is_some_and(&matches);
                    let type_ = match (e.type_, was_matching, now_matches) {
                        (EventType::Deleted, _, true) => "DELETED",
                        (EventType::Added, _, true) => "ADDED",
                        (EventType::Modified, true, true) => "MODIFIED",
                        (EventType::Modified, false, true) => "ADDED",
                        (EventType::Modified, true, false) => "DELETED",
                        _ => continue,
                    };
                    let lag = lag_of(&server_lag, &resource);
                    if !lag.is_zero() {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(e.at + lag)).await;
                    }
                    if !alive() || tx.send(Ok(render(type_, &e.object))).await.is_err() { return; }
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

/// The lag set by `ApiServer::lag_watches` for a resource (zero when none).
fn lag_of(shared: &Shared, resource: &str) -> Duration {
    shared
        .watch_lag
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(resource)
        .copied()
        .unwrap_or_default()
}

// === discovery ===

fn group_versions(store: &Store) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in store.types() {
        if t.group.is_empty() {
            continue;
        }
        let versions = groups.entry(t.group.clone()).or_default();
        if !versions.contains(&t.version) {
            versions.push(t.version.clone());
        }
    }
    groups
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = group_versions(store).iter().map(|(g, vs)| group_json(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_entry(store: &Store, group: &str) -> Option<Value> {
    let versions = group_versions(store).remove(group)?;
    let mut g = group_json(group, &versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn resource_list(store: &Store, group: &str, version: &str) -> Value {
    let types = store.types();
    let matching: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    registry::api_resource_list(&gv, &matching)
}

fn openapi_root(store: &Store) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", store.current_rv())}),
    );
    for (group, versions) in group_versions(store) {
        for v in versions {
            paths.insert(
                format!("apis/{group}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{group}/{v}?hash={}", store.current_rv())}),
            );
        }
    }
    json!({"paths": paths})
}

/// Enough OpenAPI v3 for kubectl to see that every kind supports `fieldValidation`, so it
/// validates on the server (which, for custom resources, checks the CRD schema).
fn openapi_doc(store: &Store, group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for t in store
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let prefix = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let params = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}}]);
        let op = json!({"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch", "parameters": params,
                        "responses": {"200": {"description": "OK"}}});
        paths.insert(path, json!({"patch": op}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths, "components": {"schemas": {}}})
}
