//! The object store: one resourceVersion counter, objects by key, a bounded event history that
//! watches resume from, and the write rules of the real API server (optimistic concurrency,
//! status subresource, generation, finalizers and deletionTimestamp, owner-reference garbage
//! collection, namespace termination, per-kind defaults such as cluster IPs and node ports).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::patch;
use super::registry::{self, ResourceType};
use super::schema;
use super::selectors::{FieldSelector, LabelSelector};

/// An API error, rendered as a `Status` object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = json!({"name": name, "group": rt.group, "kind": rt.plural});
        self
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", rt.qualified())).with_details(rt, name)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .with_details(rt, name)
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
        .with_details(rt, name)
    }

    pub fn invalid(rt: &ResourceType, name: &str, causes: &[String]) -> Self {
        let kind_group = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{kind_group} \"{name}\" is invalid: {}", causes.join(", ")),
        );
        // As the real server: details name the Kind, and each cause splits field from message.
        e.details = json!({"name": name, "group": rt.group, "kind": rt.kind});
        e.details["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| match c.split_once(": ") {
                    Some((field, message)) => {
                        json!({"reason": "FieldValueInvalid", "field": field, "message": message})
                    }
                    None => json!({"reason": "FieldValueInvalid", "message": c}),
                })
                .collect(),
        );
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn status(&self) -> Value {
        let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": self.message, "reason": self.reason, "code": self.code});
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it. `old` lets a filtered watch turn a change that leaves (or
/// enters) its selector into DELETED (or ADDED), as the real watch cache does.
#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub type_: EventType,
    pub resource: String,
    pub namespace: String,
    pub object: Value,
    pub old: Option<Value>,
    /// When the store made the change (a lagging watch delivers it relative to this).
    pub at: std::time::Instant,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// Query options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields are an error instead of a warning.
    pub strict: bool,
    pub field_manager: Option<String>,
    pub force: bool,
}

/// A write's result: the object and any warnings (pruned unknown fields).
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// Whether the store changed (false for a no-op write or a dry run).
    pub changed: bool,
    /// Whether the write created the object.
    pub created: bool,
}

/// A watch as it starts: the events to send first, a receiver for what follows, and the
/// resourceVersion the first batch brings the watcher up to.
pub struct WatchStarted {
    pub initial: Vec<Arc<WatchEvent>>,
    pub live: broadcast::Receiver<Arc<WatchEvent>>,
    pub rv: u64,
}

/// How a watch starts.
pub enum WatchStart {
    /// `resourceVersion` empty or "0": synthetic ADDED events for the current objects first.
    Now,
    /// Events after this resourceVersion.
    After(u64),
}

struct State {
    rv: u64,
    types: Vec<ResourceType>,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Events with rv <= this were dropped from the history.
    compacted: u64,
    applied: HashMap<(Key, String), Value>,
    next_node_port: u32,
    next_cluster_ip: u32,
    /// First two octets of cluster IPs: clusters of a pair get distinct service networks.
    cluster_ip_prefix: String,
}

pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    history_limit: usize,
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

/// Whether two versions differ in anything but resourceVersion and managedFields.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

/// Whether anything outside metadata and status changed (what bumps `generation`).
fn spec_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(a) != strip(b)
}

fn valid_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

impl Store {
    /// Allocate cluster IPs as `<prefix>.x.y` (default `10.96`).
    pub fn set_cluster_ip_prefix(&self, prefix: &str) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).cluster_ip_prefix = prefix.to_string();
    }

    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(16_384);
        let store = Store {
            state: Mutex::new(State {
                rv: 1,
                types: registry::builtins(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 1,
                applied: HashMap::new(),
                next_node_port: 30000,
                next_cluster_ip: 10,
                cluster_ip_prefix: "10.96".into(),
            }),
            tx,
            history_limit,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let rt = store
                .find_type("", "v1", "namespaces")
                .expect("namespaces are built in");
            let created = store.create(
                &rt,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                &WriteOptions::default(),
            );
            debug_assert!(created.is_ok());
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test bug; keep serving what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.clone()
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock()
            .types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The type served under this plural, when exactly one group serves it (e.g. not `events`,
    /// which core and events.k8s.io both serve).
    pub fn find_plural(&self, plural: &str) -> Option<ResourceType> {
        let s = self.lock();
        let mut matching = s.types.iter().filter(|t| t.plural == plural);
        let first = matching.next()?;
        matching.all(|t| t.group == first.group).then(|| first.clone())
    }

    pub fn find_kind(&self, group: &str, kind: &str) -> Option<ResourceType> {
        self.lock()
            .types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    /// Drop the watch history: every watch from an older resourceVersion now gets 410 Gone.
    pub fn compact(&self) {
        let mut s = self.lock();
        s.history.clear();
        s.compacted = s.rv;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }

    fn key(rt: &ResourceType, namespace: &str, name: &str) -> Key {
        Key {
            resource: rt.id(),
            namespace: if rt.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value> {
        self.lock()
            .objects
            .get(&Self::key(rt, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Objects of one resource (in one namespace, or all), with the list's resourceVersion.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> (Vec<Value>, u64) {
        let s = self.lock();
        let items = Self::in_scope(&s, rt, namespace)
            .filter(|(_, v)| labels.matches(v) && fields.matches(v))
            .map(|(_, v)| v.clone())
            .collect();
        (items, s.rv)
    }

    /// The objects of one resource (in one namespace, or all), read from the key range alone:
    /// keys sort by resource, then namespace, so a list at 10,000 PVCs does not scan the
    /// Secrets, Events and VolSync objects next to them.
    fn in_scope<'s>(
        s: &'s State,
        rt: &ResourceType,
        namespace: Option<&'s str>,
    ) -> impl Iterator<Item = (&'s Key, &'s Value)> + 's {
        let id = rt.id();
        let namespace = namespace.filter(|_| rt.namespaced);
        let start = Key {
            resource: id.clone(),
            namespace: namespace.unwrap_or_default().to_string(),
            name: String::new(),
        };
        s.objects
            .range(start..)
            .take_while(move |(k, _)| k.resource == id && namespace.is_none_or(|ns| k.namespace == ns))
    }

    /// Start a watch.
    pub fn watch(&self, rt: &ResourceType, namespace: Option<&str>, start: WatchStart) -> Result<WatchStarted> {
        let s = self.lock();
        let rx = self.tx.subscribe();
        let id = rt.id();
        let in_scope = |resource: &str, ns: &str| resource == id && namespace.is_none_or(|n| !rt.namespaced || ns == n);
        let first = match start {
            WatchStart::Now => Self::in_scope(&s, rt, namespace)
                .map(|(k, v)| {
                    Arc::new(WatchEvent {
                        rv: v["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|r| r.parse().ok())
                            .unwrap_or(0),
                        type_: EventType::Added,
                        resource: k.resource.clone(),
                        namespace: k.namespace.clone(),
                        object: v.clone(),
                        old: None,
                        at: std::time::Instant::now(),
                    })
                })
                .collect(),
            WatchStart::After(rv) => {
                if rv < s.compacted {
                    return Err(ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {rv} ({})", s.compacted + 1),
                    ));
                }
                s.history
                    .iter()
                    .filter(|e| e.rv > rv && in_scope(&e.resource, &e.namespace))
                    .cloned()
                    .collect()
            }
        };
        Ok(WatchStarted {
            initial: first,
            live: rx,
            rv: s.rv,
        })
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let mut s = self.lock();
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was in an unknown format",
            ));
        }
        let meta = object["metadata"].as_object().cloned().unwrap_or_default();
        if rt.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => object["metadata"]["namespace"] = json!(namespace),
            }
            let ns_key = Key {
                resource: "/namespaces".into(),
                namespace: String::new(),
                name: namespace.into(),
            };
            match s.objects.get(&ns_key) {
                None => {
                    return Err(
                        ApiError::new(404, "NotFound", format!("namespaces \"{namespace}\" not found"))
                            .with_details(&s.type_by_id("/namespaces"), namespace),
                    );
                }
                Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                            rt.qualified(),
                            name_of(&object)
                        ),
                    ));
                }
                _ => {}
            }
        } else if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let mut name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) => {
                    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                    let suffix: String = (0..5)
                        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                        .collect();
                    name = format!("{prefix}{suffix}");
                    object["metadata"]["name"] = json!(name);
                }
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        &["metadata.name: Required value: name or generateName is required".into()],
                    ));
                }
            }
        }
        if !valid_dns_subdomain(&name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                &[format!(
                    "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                )],
            ));
        }
        let key = Self::key(rt, namespace, &name);
        if s.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt, &name));
        }
        object["apiVersion"] = json!(rt.api_version());
        object["kind"] = json!(rt.kind);
        {
            let m = object["metadata"]
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
            m.insert("uid".into(), json!(new_uid()));
            m.insert("creationTimestamp".into(), json!(now()));
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
            ] {
                m.remove(k);
            }
            if rt.status || rt.crd.is_some() {
                m.insert("generation".into(), json!(1));
            }
        }
        if rt.status
            && let Some(m) = object.as_object_mut()
        {
            m.remove("status");
        }
        s.default_on_create(rt, &mut object)?;
        let warnings = validate(rt, &name, &mut object, opts)?;
        if rt.id() == "apiextensions.k8s.io/customresourcedefinitions" {
            let types = registry::from_crd(&object).map_err(|e| ApiError::invalid(rt, &name, &[e]))?;
            if !opts.dry_run {
                s.types.retain(|t| t.crd.as_deref() != Some(name.as_str()));
                s.types.extend(types);
            }
        }
        if opts.dry_run {
            return Ok(Written {
                object,
                warnings,
                changed: false,
                created: false,
            });
        }
        let object = s.commit(&self.tx, self.history_limit, key, EventType::Added, object, None);
        Ok(Written {
            object,
            warnings,
            changed: true,
            created: true,
        })
    }

    /// PUT of a whole object (or its status).
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let mut s = self.lock();
        let key = Self::key(rt, namespace, name);
        let old = s
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let body_rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
        if body_rv.is_empty() && rt.crd.is_some() {
            return Err(ApiError::invalid(
                rt,
                name,
                &["metadata.resourceVersion: Invalid value: 0x0: must be specified for an update".into()],
            ));
        }
        if !body_rv.is_empty() && body_rv != old["metadata"]["resourceVersion"].as_str().unwrap_or("") {
            return Err(ApiError::conflict(rt, name));
        }
        self.write_existing(&mut s, rt, key, old, object, sub, opts)
    }

    /// PATCH of any type, of the object or its status. Apply creates a missing object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let mut s = self.lock();
        let key = Self::key(rt, namespace, name);
        let manager = opts.field_manager.clone().unwrap_or_default();
        if patch_type == PatchType::Apply {
            if manager.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &["fieldManager: Required value: is required for apply patch".into()],
                ));
            }
            if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    name_of(body)
                )));
            }
        }
        let Some(old) = s.objects.get(&key).cloned() else {
            if patch_type != PatchType::Apply || sub != Subresource::Main {
                return Err(ApiError::not_found(rt, name));
            }
            let mut object = body.clone();
            object["metadata"]["name"] = json!(name);
            drop(s);
            let written = self.create(rt, namespace, object, opts)?;
            if written.changed {
                self.lock().applied.insert((key, manager), body.clone());
            }
            return Ok(written);
        };
        let previous = s.applied.get(&(key.clone(), manager.clone())).cloned();
        let target = patched(rt, name, &old, patch_type, body, previous.as_ref())?;
        let written = self.write_existing(&mut s, rt, key.clone(), old, target, sub, opts)?;
        if patch_type == PatchType::Apply && !opts.dry_run {
            s.applied.insert((key, manager), body.clone());
        }
        Ok(written)
    }

    /// What a patch would make of the object, without storing it: the candidate an admission
    /// webhook sees. `None` as the old object means an apply that would create it.
    pub fn preview_patch(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        field_manager: &str,
    ) -> Result<(Value, Option<Value>)> {
        let s = self.lock();
        let key = Self::key(rt, namespace, name);
        match s.objects.get(&key).cloned() {
            None if patch_type == PatchType::Apply => {
                let mut object = body.clone();
                object["metadata"]["name"] = json!(name);
                Ok((object, None))
            }
            None => Err(ApiError::not_found(rt, name)),
            Some(old) => {
                let previous = s.applied.get(&(key, field_manager.to_string())).cloned();
                Ok((patched(rt, name, &old, patch_type, body, previous.as_ref())?, Some(old)))
            }
        }
    }

    /// Record a server-side apply configuration written through another path (after admission).
    pub fn record_applied(&self, rt: &ResourceType, namespace: &str, name: &str, field_manager: &str, config: &Value) {
        let key = Self::key(rt, namespace, name);
        self.lock()
            .applied
            .insert((key, field_manager.to_string()), config.clone());
    }

    #[allow(clippy::too_many_arguments)]
    fn write_existing(
        &self,
        s: &mut State,
        rt: &ResourceType,
        key: Key,
        old: Value,
        mut new: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let name = key.name.clone();
        if name_of(&new) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&new)
            )));
        }
        if !new.is_object() || !new["metadata"].is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was in an unknown format",
            ));
        }
        if sub == Subresource::Status {
            // A status write changes only the status.
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(st) if !st.is_null() => new["status"] = st,
                _ => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else if rt.status {
            match old.get("status") {
                Some(st) => new["status"] = st.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "generation",
        ] {
            match old["metadata"].get(k) {
                Some(v) => new["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if !old["metadata"]["deletionTimestamp"].is_null() {
            let before: Vec<Value> = old["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            let added = new["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| !before.contains(f));
            if added {
                return Err(ApiError::invalid(
                    rt,
                    &name,
                    &[
                        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                    ],
                ));
            }
        }
        if rt.id() == "/services" {
            keep_allocations(&old, &mut new);
        }
        if rt.id() == "/persistentvolumeclaims" && sub == Subresource::Main {
            check_pvc_spec_immutable(rt, &name, &old, &new)?;
        }
        let warnings = validate(rt, &name, &mut new, opts)?;
        omit_empty_metadata(&mut new);
        if same_content(&old, &new) {
            return Ok(Written {
                object: old,
                warnings,
                changed: false,
                created: false,
            });
        }
        if (rt.status || rt.crd.is_some()) && spec_changed(&old, &new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        if opts.dry_run {
            return Ok(Written {
                object: new,
                warnings,
                changed: false,
                created: false,
            });
        }
        let deleting = !new["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        if deleting && no_finalizers {
            let object = s.remove(&self.tx, self.history_limit, &key, new, true);
            return Ok(Written {
                object,
                warnings,
                changed: true,
                created: false,
            });
        }
        if rt.id() == "apiextensions.k8s.io/customresourcedefinitions"
            && let Ok(types) = registry::from_crd(&new)
        {
            s.types.retain(|t| t.crd.as_deref() != Some(name.as_str()));
            s.types.extend(types);
        }
        let object = s.commit(&self.tx, self.history_limit, key, EventType::Modified, new, Some(old));
        Ok(Written {
            object,
            warnings,
            changed: true,
            created: false,
        })
    }

    /// DELETE: removes the object, or marks it for deletion while finalizers remain.
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<(Value, bool)> {
        let mut s = self.lock();
        let key = Self::key(rt, namespace, name);
        let old = s
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let pre = &options["preconditions"];
        if let Some(uid) = pre["uid"].as_str()
            && old["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    rt.qualified(),
                    old["metadata"]["uid"].as_str().unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = pre["resourceVersion"].as_str()
            && old["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::conflict(rt, name));
        }
        if dry_run {
            return Ok((old, false));
        }
        let orphan = options["propagationPolicy"].as_str() == Some("Orphan");
        Ok(s.delete_internal(&self.tx, self.history_limit, &key, !orphan))
    }
}

/// `old` with a patch applied (not stored); a patch carrying a stale resourceVersion conflicts.
fn patched(
    rt: &ResourceType,
    name: &str,
    old: &Value,
    patch_type: PatchType,
    body: &Value,
    previous_apply: Option<&Value>,
) -> Result<Value> {
    let mut target = old.clone();
    match patch_type {
        PatchType::Merge => patch::json_merge(&mut target, body),
        PatchType::Strategic => patch::strategic_merge(&mut target, body),
        PatchType::Json => patch::json_patch(&mut target, body).map_err(|e| {
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?,
        PatchType::Apply => patch::apply(&mut target, previous_apply, body),
    }
    let patched_rv = target["metadata"]["resourceVersion"].as_str().unwrap_or("");
    if patched_rv != old["metadata"]["resourceVersion"].as_str().unwrap_or("") {
        return Err(ApiError::conflict(rt, name));
    }
    Ok(target)
}

fn validate(rt: &ResourceType, name: &str, object: &mut Value, opts: &WriteOptions) -> Result<Vec<String>> {
    let Some(schema) = &rt.schema else {
        return Ok(Vec::new());
    };
    let outcome = schema::validate(schema, object);
    if opts.strict && !outcome.unknown.is_empty() {
        let fields: Vec<String> = outcome
            .unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            fields.join(", ")
        )));
    }
    if !outcome.errors.is_empty() {
        return Err(ApiError::invalid(rt, name, &outcome.errors));
    }
    Ok(outcome
        .unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect())
}

/// Go's `omitempty`: empty metadata lists and maps are not stored.
fn omit_empty_metadata(object: &mut Value) {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.retain(|k, v| {
            let empty = v.as_array().is_some_and(|a| a.is_empty()) || v.as_object().is_some_and(|m| m.is_empty());
            !(empty && matches!(k.as_str(), "finalizers" | "labels" | "annotations" | "ownerReferences"))
        });
    }
}

/// A PVC's spec is immutable after creation, but for the storage request (expansion) and the
/// volume attributes class; the binder may still set `volumeName`.
fn check_pvc_spec_immutable(rt: &ResourceType, name: &str, old: &Value, new: &Value) -> Result<()> {
    let strip = |v: &Value| {
        let mut spec = v["spec"].clone();
        if let Some(m) = spec.as_object_mut() {
            m.remove("resources");
            m.remove("volumeAttributesClassName");
            if old["spec"]["volumeName"].is_null() {
                m.remove("volumeName");
            }
        }
        spec
    };
    if strip(old) != strip(new) {
        return Err(ApiError::invalid(
            rt,
            name,
            &["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into()],
        ));
    }
    Ok(())
}

/// A Service keeps its allocated cluster IP and node ports when an update omits them.
fn keep_allocations(old: &Value, new: &mut Value) {
    for k in ["clusterIP", "clusterIPs"] {
        if new["spec"].get(k).is_none_or(Value::is_null)
            && let Some(v) = old["spec"].get(k)
        {
            new["spec"][k] = v.clone();
        }
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = new["spec"]["ports"].as_array_mut() {
        for p in ports {
            if p.get("nodePort").is_none()
                && let Some(np) = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"])
                    .and_then(|o| o.get("nodePort"))
            {
                p["nodePort"] = np.clone();
            }
        }
    }
}

impl State {
    fn type_by_id(&self, id: &str) -> ResourceType {
        self.types
            .iter()
            .find(|t| t.id() == id)
            .cloned()
            .unwrap_or_else(|| registry::builtins().remove(0))
    }

    fn commit(
        &mut self,
        tx: &broadcast::Sender<Arc<WatchEvent>>,
        limit: usize,
        key: Key,
        type_: EventType,
        mut object: Value,
        old: Option<Value>,
    ) -> Value {
        omit_empty_metadata(&mut object);
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if type_ == EventType::Deleted {
            self.objects.remove(&key);
            self.applied.retain(|(k, _), _| *k != key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        let event = Arc::new(WatchEvent {
            rv: self.rv,
            type_,
            resource: key.resource,
            namespace: key.namespace,
            object: object.clone(),
            old,
            at: std::time::Instant::now(),
        });
        self.history.push_back(event.clone());
        while self.history.len() > limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        // No receiver is fine: nobody is watching.
        let _ = tx.send(event);
        object
    }

    /// Delete now, or mark for deletion if finalizers remain. Returns the object and whether it
    /// is gone.
    fn delete_internal(
        &mut self,
        tx: &broadcast::Sender<Arc<WatchEvent>>,
        limit: usize,
        key: &Key,
        cascade: bool,
    ) -> (Value, bool) {
        let Some(old) = self.objects.get(key).cloned() else {
            return (Value::Null, true);
        };
        let has_finalizers = old["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        let is_namespace = key.resource == "/namespaces";
        if has_finalizers || is_namespace {
            if !old["metadata"]["deletionTimestamp"].is_null() {
                return (old, false);
            }
            let mut marked = old.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if is_namespace {
                marked["status"]["phase"] = json!("Terminating");
            }
            let marked = self.commit(tx, limit, key.clone(), EventType::Modified, marked, Some(old));
            if is_namespace {
                let contents: Vec<Key> = self
                    .objects
                    .keys()
                    .filter(|k| k.namespace == key.name && !k.namespace.is_empty())
                    .cloned()
                    .collect();
                for k in contents {
                    self.delete_internal(tx, limit, &k, true);
                }
                if self.finish_namespace(tx, limit, &key.name) {
                    return (marked, true);
                }
            }
            return (marked, false);
        }
        let object = self.remove(tx, limit, key, old, cascade);
        (object, true)
    }

    fn remove(
        &mut self,
        tx: &broadcast::Sender<Arc<WatchEvent>>,
        limit: usize,
        key: &Key,
        last: Value,
        cascade: bool,
    ) -> Value {
        let uid = last["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let previous = self.objects.get(key).cloned();
        let object = self.commit(tx, limit, key.clone(), EventType::Deleted, last, previous);
        self.collect_dependents(tx, limit, &uid, cascade);
        if !key.namespace.is_empty() {
            self.finish_namespace(tx, limit, &key.namespace);
        }
        if key.resource == "apiextensions.k8s.io/customresourcedefinitions" {
            let gone: Vec<String> = self
                .types
                .iter()
                .filter(|t| t.crd.as_deref() == Some(key.name.as_str()))
                .map(|t| t.id())
                .collect();
            self.types.retain(|t| t.crd.as_deref() != Some(key.name.as_str()));
            let instances: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| gone.contains(&k.resource))
                .cloned()
                .collect();
            for k in instances {
                if let Some(v) = self.objects.get(&k).cloned() {
                    self.commit(tx, limit, k, EventType::Deleted, v, None);
                }
            }
        }
        object
    }

    /// Garbage collection: dependents lose the reference to a deleted owner and, with no owner
    /// left, are deleted themselves (unless orphaned).
    fn collect_dependents(
        &mut self,
        tx: &broadcast::Sender<Arc<WatchEvent>>,
        limit: usize,
        owner_uid: &str,
        cascade: bool,
    ) {
        if owner_uid.is_empty() {
            return;
        }
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in dependents {
            let Some(old) = self.objects.get(&k).cloned() else {
                continue;
            };
            let mut new = old.clone();
            if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != owner_uid);
            }
            let orphaned = new["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(|r| r.is_empty());
            if cascade && orphaned {
                self.delete_internal(tx, limit, &k, true);
            } else {
                if let Some(m) = new["metadata"].as_object_mut()
                    && orphaned
                {
                    m.remove("ownerReferences");
                }
                self.commit(tx, limit, k, EventType::Modified, new, Some(old));
            }
        }
    }

    /// Remove a terminating namespace once it is empty. Returns whether it is gone.
    fn finish_namespace(&mut self, tx: &broadcast::Sender<Arc<WatchEvent>>, limit: usize, namespace: &str) -> bool {
        let key = Key {
            resource: "/namespaces".into(),
            namespace: String::new(),
            name: namespace.into(),
        };
        let Some(ns) = self.objects.get(&key).cloned() else {
            return true;
        };
        if ns["metadata"]["deletionTimestamp"].is_null() || self.objects.keys().any(|k| k.namespace == namespace) {
            return false;
        }
        self.commit(tx, limit, key, EventType::Deleted, ns, None);
        true
    }

    /// What the API server (and its admission defaults) fills in on create.
    fn default_on_create(&mut self, rt: &ResourceType, object: &mut Value) -> Result<()> {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => {
                let name = name_of(object).to_string();
                object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                object["status"] = json!({"phase": "Active"});
            }
            ("", "secrets") => {
                if let Some(string_data) = object.get("stringData").and_then(Value::as_object).cloned() {
                    use base64::Engine as _;
                    for (k, v) in string_data {
                        let text = v.as_str().unwrap_or("");
                        object["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                    }
                    if let Some(m) = object.as_object_mut() {
                        m.remove("stringData");
                    }
                }
                if object.get("type").is_none() {
                    object["type"] = json!("Opaque");
                }
            }
            ("", "persistentvolumeclaims") => {
                if object["spec"].get("volumeMode").is_none() {
                    object["spec"]["volumeMode"] = json!("Filesystem");
                }
                object["status"] = json!({"phase": "Pending"});
            }
            ("", "pods") => object["status"] = json!({"phase": "Pending"}),
            ("", "services") => {
                let type_ = object["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
                object["spec"]["type"] = json!(type_);
                if object["spec"].get("clusterIP").is_none() {
                    let n = self.next_cluster_ip;
                    self.next_cluster_ip += 1;
                    let ip = format!("{}.{}.{}", self.cluster_ip_prefix, n / 250, n % 250 + 1);
                    object["spec"]["clusterIP"] = json!(ip);
                    object["spec"]["clusterIPs"] = json!([ip]);
                }
                if let Some(ports) = object["spec"]["ports"].as_array_mut() {
                    for p in ports {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                        if p.get("targetPort").is_none() {
                            p["targetPort"] = p["port"].clone();
                        }
                        if matches!(type_.as_str(), "NodePort" | "LoadBalancer") && p.get("nodePort").is_none() {
                            p["nodePort"] = json!(self.next_node_port);
                            self.next_node_port += 1;
                        }
                    }
                }
                object["status"] = json!({"loadBalancer": {}});
            }
            ("apps", "deployments") | ("apps", "statefulsets") if object["spec"].get("replicas").is_none() => {
                object["spec"]["replicas"] = json!(1);
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let names = object["spec"]["names"].clone();
                object["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": object["spec"]["versions"].as_array().map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()}
                    ]
                });
            }
            _ => {}
        }
        Ok(())
    }
}
