//! Idempotent writes: compare what should be with what is, and write (server-side apply, one
//! field manager) only when they differ, so reconciling an unchanged object makes no write.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::keys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Created,
    Updated,
}

/// Whether `actual` differs from `desired` in what volsync-dr owns: its labels and annotations
/// (others' may be there too) and every other top-level field it sets (spec, data, type),
/// which must be equal. Status and server-set metadata are not compared.
pub fn needs_write(desired: &Value, actual: &Value) -> bool {
    for map in ["labels", "annotations"] {
        if let Some(want) = desired["metadata"][map].as_object() {
            let have = &actual["metadata"][map];
            if want.iter().any(|(k, v)| have.get(k) != Some(v)) {
                return true;
            }
        }
    }
    let Some(fields) = desired.as_object() else { return true };
    fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
        .any(|(k, v)| actual.get(k) != Some(v))
}

/// Whether `have` lacks a label or annotation of `want` (or holds another value for it).
pub fn metadata_lacks(have: &ObjectMeta, want: &ObjectMeta) -> bool {
    let lacks = |want: &Option<BTreeMap<String, String>>, have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .any(|(k, v)| have.as_ref().and_then(|h| h.get(k)) != Some(v))
    };
    lacks(&want.labels, &have.labels) || lacks(&want.annotations, &have.annotations)
}

/// Make the object look as desired; no request beyond a read when it already does.
pub async fn ensure<K>(api: &Api<K>, desired: &K) -> Result<Outcome, kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let want = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    let current = api.get_opt(&name).await?;
    if let Some(current) = &current {
        let have = serde_json::to_value(current).map_err(kube::Error::SerdeError)?;
        if !needs_write(&want, &have) {
            return Ok(Outcome::Unchanged);
        }
    }
    api.patch(
        &name,
        &PatchParams::apply(keys::FIELD_MANAGER).force(),
        &Patch::Apply(&want),
    )
    .await?;
    Ok(if current.is_some() {
        Outcome::Updated
    } else {
        Outcome::Created
    })
}

/// Patch parameters for volsync-dr's own (non-apply) writes, under its field manager.
pub fn field_manager() -> PatchParams {
    PatchParams {
        field_manager: Some(keys::FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// Delete if present; absent is success.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_lacks_only_what_is_wanted() {
        let meta = |labels: &[(&str, &str)], annotations: &[(&str, &str)]| ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        };
        let want = meta(&[("a", "1")], &[("n", "p")]);
        assert!(!metadata_lacks(
            &meta(&[("a", "1"), ("x", "y")], &[("n", "p"), ("z", "q")]),
            &want
        ));
        assert!(metadata_lacks(&meta(&[("a", "2")], &[("n", "p")]), &want));
        assert!(metadata_lacks(&meta(&[("a", "1")], &[]), &want));
        assert!(metadata_lacks(&ObjectMeta::default(), &want));
        assert!(!metadata_lacks(&ObjectMeta::default(), &ObjectMeta::default()));
    }

    #[test]
    fn compares_only_what_volsync_dr_owns() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "labels": {"a": "1"}, "annotations": {"n": "p"}},
            "type": "Opaque", "data": {"k": "dg=="}});
        let same_plus_server_fields = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "uid": "u", "resourceVersion": "9", "labels": {"a": "1", "other": "x"},
                         "annotations": {"n": "p", "kubectl": "y"}},
            "type": "Opaque", "data": {"k": "dg=="}});
        assert!(!needs_write(&desired, &same_plus_server_fields));
        let cases = [
            json!({"metadata": {"labels": {"a": "2"}, "annotations": {"n": "p"}}, "type": "Opaque", "data": {"k": "dg=="}}),
            json!({"metadata": {"labels": {"a": "1"}}, "type": "Opaque", "data": {"k": "dg=="}}),
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {"n": "p"}}, "type": "Opaque", "data": {"k": "x"}}),
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {"n": "p"}}, "type": "Opaque", "data": {"k": "dg==", "extra": "e"}}),
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {"n": "p"}}, "data": {"k": "dg=="}}),
        ];
        for actual in cases {
            assert!(needs_write(&desired, &actual), "{actual}");
        }
        // A spec field dropped from the desired object must be removed: specs are compared whole.
        let rs = json!({"metadata": {"name": "rs"}, "spec": {"trigger": {"schedule": "@hourly"}}});
        let with_extra =
            json!({"metadata": {"name": "rs"}, "spec": {"trigger": {"schedule": "@hourly"}, "paused": true}});
        assert!(needs_write(&rs, &with_extra));
        assert!(!needs_write(
            &rs,
            &json!({"metadata": {"name": "rs"}, "spec": {"trigger": {"schedule": "@hourly"}}, "status": {"x": 1}})
        ));
    }
}
