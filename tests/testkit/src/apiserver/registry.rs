//! Which resources the server knows: the built-in kinds volsync-dr touches, plus every kind a
//! CustomResourceDefinition adds at run time.

use serde_json::{Value, json};

/// One served resource (one group/version/plural).
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub status: bool,
    pub scale: bool,
    /// openAPIV3Schema of a custom resource: validated and pruned against.
    /// Shared: schemas are large and resource types are cloned on every request.
    pub schema: Option<std::sync::Arc<Value>>,
    /// additionalPrinterColumns of a custom resource, for Table output.
    pub printer_columns: Vec<PrinterColumn>,
    /// Name of the CRD that defined it, when it is a custom resource.
    pub crd: Option<String>,
}

#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
}

impl ResourceType {
    /// Storage key prefix: `group/plural`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` as the API server names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Namespaced,
    Cluster,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sub {
    Status,
    Scale,
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    scope: Scope,
    short: &[&str],
    subs: &[Sub],
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced: scope == Scope::Namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        status: subs.contains(&Sub::Status),
        scale: subs.contains(&Sub::Scale),
        schema: None,
        printer_columns: Vec::new(),
        crd: None,
    }
}

/// The built-in resources, as a Kubernetes 1.32 API server serves them (the subset volsync-dr,
/// its tests and kubectl use).
pub fn builtins() -> Vec<ResourceType> {
    vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            Scope::Cluster,
            &["ns"],
            &[Sub::Status],
        ),
        builtin("", "v1", "Node", "nodes", Scope::Cluster, &["no"], &[Sub::Status]),
        builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            Scope::Namespaced,
            &["pvc"],
            &[Sub::Status],
        ),
        builtin(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            Scope::Cluster,
            &["pv"],
            &[Sub::Status],
        ),
        builtin("", "v1", "Secret", "secrets", Scope::Namespaced, &[], &[]),
        builtin("", "v1", "ConfigMap", "configmaps", Scope::Namespaced, &["cm"], &[]),
        builtin(
            "",
            "v1",
            "Service",
            "services",
            Scope::Namespaced,
            &["svc"],
            &[Sub::Status],
        ),
        builtin("", "v1", "Pod", "pods", Scope::Namespaced, &["po"], &[Sub::Status]),
        builtin("", "v1", "Event", "events", Scope::Namespaced, &["ev"], &[]),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            Scope::Namespaced,
            &["sa"],
            &[],
        ),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            Scope::Namespaced,
            &["deploy"],
            &[Sub::Status, Sub::Scale],
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            Scope::Namespaced,
            &["sts"],
            &[Sub::Status, Sub::Scale],
        ),
        builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            Scope::Namespaced,
            &["pdb"],
            &[Sub::Status],
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            Scope::Namespaced,
            &[],
            &[],
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            Scope::Namespaced,
            &["ev"],
            &[],
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            Scope::Cluster,
            &[],
            &[],
        ),
        builtin(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            Scope::Cluster,
            &["sc"],
            &[],
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            Scope::Cluster,
            &[],
            &[],
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            Scope::Cluster,
            &[],
            &[],
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            Scope::Cluster,
            &["crd", "crds"],
            &[Sub::Status],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            Scope::Cluster,
            &[],
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            Scope::Cluster,
            &[],
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            Scope::Namespaced,
            &[],
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            Scope::Namespaced,
            &[],
            &[],
        ),
    ]
}

/// The resource types a CRD defines (one per served version).
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let name = crd["metadata"]["name"]
        .as_str()
        .ok_or("metadata.name: Required value")?;
    let spec = &crd["spec"];
    let group = spec["group"].as_str().ok_or("spec.group: Required value")?;
    let names = &spec["names"];
    let plural = names["plural"].as_str().ok_or("spec.names.plural: Required value")?;
    let kind = names["kind"].as_str().ok_or("spec.names.kind: Required value")?;
    if name != format!("{plural}.{group}") {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ));
        }
    };
    let versions = spec["versions"].as_array().ok_or("spec.versions: Required value")?;
    let mut out = Vec::new();
    for v in versions {
        if v["served"].as_bool() != Some(true) {
            continue;
        }
        let version = v["name"].as_str().ok_or("spec.versions[].name: Required value")?;
        out.push(ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: names["singular"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| kind.to_lowercase()),
            namespaced,
            short_names: names["shortNames"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            status: v["subresources"].get("status").is_some(),
            scale: v["subresources"].get("scale").is_some(),
            schema: v["schema"].get("openAPIV3Schema").cloned().map(std::sync::Arc::new),
            printer_columns: v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .filter_map(|c| {
                            Some(PrinterColumn {
                                name: c["name"].as_str()?.to_string(),
                                type_: c["type"].as_str().unwrap_or("string").to_string(),
                                json_path: c["jsonPath"].as_str()?.to_string(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            crd: Some(name.to_string()),
        });
    }
    Ok(out)
}

/// APIResource entries of one group/version, for discovery.
pub fn api_resource_list(group_version: &str, types: &[&ResourceType]) -> Value {
    let mut resources = Vec::new();
    for t in types {
        resources.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": t.verbs(), "shortNames": t.short_names,
        }));
        if t.status {
            resources.push(
                json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                                  "kind": t.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if t.scale {
            resources.push(
                json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced,
                                  "group": "autoscaling", "version": "v1", "kind": "Scale",
                                  "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}
