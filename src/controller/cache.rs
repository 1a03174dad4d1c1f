//! The watcher's PVC cache, kept small. kube-runtime keeps every watched PVC in memory; as
//! `PersistentVolumeClaim` structs that is about 4 KB each (every annotation a pair of heap
//! strings in B-tree nodes, plus `managedFields`, which on a real API server is often the
//! largest part and is never read here). [`CachedPvc`] holds the object as its JSON text
//! instead, without `managedFields`: about a third of the memory. A pass reads the PVC back with [`CachedPvc::pvc`], which costs a few
//! microseconds per reconcile. The identity kept outside the text is what kube-runtime reads:
//! the name and namespace (the cache's key) and the resource version (where a watch resumes).
//!
//! It is a [`Resource`] at the PVC's URL, so `Api<CachedPvc>` lists and watches PVCs and
//! decodes each straight into this form; kube-runtime's `Controller` and `Store` take it as
//! they would any resource.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

/// One cached PVC: its identity, and the rest of the object as JSON without `managedFields`.
#[derive(Clone)]
pub struct CachedPvc {
    /// Name, namespace and resource version only: every other field is in `encoded`. Do not
    /// read labels or annotations from here; read the PVC with [`CachedPvc::pvc`].
    identity: ObjectMeta,
    encoded: Box<[u8]>,
}

/// The cached text no longer reads as a PVC (not expected: this module wrote it).
#[derive(Debug, thiserror::Error)]
#[error("cached PVC {namespace}/{name} cannot be read back: {source}")]
pub struct DecodeError {
    namespace: String,
    name: String,
    source: serde_json::Error,
}

impl CachedPvc {
    /// The compact form of `pvc`; its `managedFields` are dropped.
    pub fn from_pvc(mut pvc: PersistentVolumeClaim) -> Result<Self, serde_json::Error> {
        pvc.metadata.managed_fields = None;
        // Kept once, outside the text; `pvc()` puts them back.
        let identity = ObjectMeta {
            name: pvc.metadata.name.take(),
            namespace: pvc.metadata.namespace.take(),
            // The watcher resumes from the last event's version.
            resource_version: pvc.metadata.resource_version.take(),
            ..ObjectMeta::default()
        };
        let encoded = serde_json::to_vec(&pvc)?.into_boxed_slice();
        Ok(CachedPvc { identity, encoded })
    }

    /// The PVC as the watch last saw it (without `managedFields`).
    pub fn pvc(&self) -> Result<PersistentVolumeClaim, DecodeError> {
        let mut pvc: PersistentVolumeClaim = serde_json::from_slice(&self.encoded).map_err(|source| DecodeError {
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
            source,
        })?;
        pvc.metadata.name.clone_from(&self.identity.name);
        pvc.metadata.namespace.clone_from(&self.identity.namespace);
        pvc.metadata
            .resource_version
            .clone_from(&self.identity.resource_version);
        Ok(pvc)
    }

    pub fn name(&self) -> &str {
        self.identity.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.identity.namespace.as_deref().unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for CachedPvc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pvc = PersistentVolumeClaim::deserialize(deserializer)?;
        CachedPvc::from_pvc(pvc).map_err(serde::de::Error::custom)
    }
}

impl Resource for CachedPvc {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<PersistentVolumeClaim as k8s_openapi::Resource>::KIND)
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<PersistentVolumeClaim as k8s_openapi::Resource>::GROUP)
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<PersistentVolumeClaim as k8s_openapi::Resource>::VERSION)
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<PersistentVolumeClaim as k8s_openapi::Resource>::URL_PATH_SEGMENT)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.identity
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.identity
    }
}

/// Identity only: the object's text is not for logs.
impl fmt::Debug for CachedPvc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedPvc")
            .field("namespace", &self.namespace())
            .field("name", &self.name())
            .field("bytes", &self.encoded.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::{Lookup, ObjectRef};
    use serde_json::json;

    use super::*;

    fn sample() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": "data", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "db"},
                "annotations": {"volsync-dr.io/protect": "true", "volsync-dr.io/state": "Protected"},
                "finalizers": ["volsync-dr.io/protection"],
                "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}]
            },
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "fast"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}
        })
    }

    #[test]
    fn reads_back_the_whole_pvc_but_managed_fields() {
        let cached: CachedPvc = serde_json::from_value(sample()).expect("decode");
        let pvc = cached.pvc().expect("read back");
        let mut expected: PersistentVolumeClaim = serde_json::from_value(sample()).expect("pvc");
        expected.metadata.managed_fields = None;
        assert_eq!(pvc, expected);
        assert!(!String::from_utf8_lossy(&cached.encoded).contains("managedFields"));
    }

    #[test]
    fn is_keyed_like_the_pvc_it_holds() {
        let cached: CachedPvc = serde_json::from_value(sample()).expect("decode");
        assert_eq!((cached.namespace(), cached.name()), ("shop", "data"));
        let key = cached.to_object_ref(());
        assert_eq!(key, ObjectRef::<CachedPvc>::new("data").within("shop"));
        // The watcher resumes from the version; the uid is not copied into every key.
        assert_eq!(key.extra.resource_version.as_deref(), Some("42"));
        assert_eq!(key.extra.uid, None);
        assert_eq!(
            CachedPvc::url_path(&(), Some("shop")),
            "/api/v1/namespaces/shop/persistentvolumeclaims"
        );
    }

    #[test]
    fn debug_shows_identity_not_content() {
        let cached: CachedPvc = serde_json::from_value(sample()).expect("decode");
        let shown = format!("{cached:?}");
        assert!(shown.contains("data") && shown.contains("shop"), "{shown}");
        assert!(!shown.contains("Protected"), "{shown}");
    }

    #[test]
    fn a_list_of_pvcs_decodes_into_the_compact_form() {
        let list = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList",
            "metadata": {"resourceVersion": "7"}, "items": [sample()]});
        let decoded: kube::core::ObjectList<CachedPvc> = serde_json::from_value(list).expect("list");
        assert_eq!(decoded.items.len(), 1);
        assert_eq!(
            decoded.items[0].pvc().expect("pvc").metadata.uid.as_deref(),
            Some("u-1")
        );
    }

    #[test]
    fn text_that_is_not_a_pvc_is_an_error_naming_the_pvc() {
        let mut cached: CachedPvc = serde_json::from_value(sample()).expect("decode");
        cached.encoded = b"{\"spec\": 3}".to_vec().into_boxed_slice();
        let message = cached.pvc().expect_err("not a PVC").to_string();
        assert!(message.contains("shop/data"), "{message}");
    }
}
