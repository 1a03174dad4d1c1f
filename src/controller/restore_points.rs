//! Restore points on the secondary: keep the synced images `plan::restore_points` decides on,
//! prune the oldest, and list them on the PVC. A PVC that never asked for more than one point
//! costs no read.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch};
use serde_json::{Value, json};

use super::apply::{delete_if_present, field_manager};
use super::clusters::ClusterRef;
use super::context::Context;
use super::error::Error;
use crate::model::keys;
use crate::model::names::Names;
use crate::model::volsync::ReplicationDestination;
use crate::plan::restore_points::{self, Point};
use crate::plan::status::SyncTimes;

/// VolumeSnapshots in `namespace` on `on` (a dynamic type: the snapshot API is a CRD).
pub(super) fn snapshots(on: &ClusterRef, namespace: &str) -> kube::Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot");
    on.dynamic(namespace, &ApiResource::from_gvk(&gvk))
}

/// The restore points kept for `names` on `on`, as labelled (oldest or newest: unsorted).
pub(super) async fn kept(on: &ClusterRef, namespace: &str, names: &Names) -> Result<Vec<Point>, Error> {
    let selector = format!("{},{}", names.selector(), keys::RESTORE_POINT_LABEL);
    let list = on
        .call(
            "list restore points",
            snapshots(on, namespace).list(&ListParams::default().labels(&selector)),
        )
        .await?;
    Ok(list
        .items
        .iter()
        .map(|s| Point {
            name: s.name_any(),
            synced_at: s.annotations().get(keys::SYNCED_AT).cloned().unwrap_or_default(),
        })
        .collect())
}

/// Keep, prune and list this secondary PVC's points after its RD's latest sync.
pub(super) async fn keep(
    pvc: &PersistentVolumeClaim,
    rd: Option<&ReplicationDestination>,
    ctx: &Context,
) -> Result<(), Error> {
    let wanted: u32 = pvc
        .annotations()
        .get(keys::RESTORE_POINTS)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let listed_now = pvc.annotations().get(keys::RESTORE_POINTS_KEPT);
    if wanted <= 1 && listed_now.is_none() {
        return Ok(());
    }
    let namespace = pvc.namespace().unwrap_or_default();
    let names = Names::for_pvc(&pvc.name_any());
    let latest = rd.and_then(|rd| {
        let image = rd.latest_image().filter(|i| i.kind == "VolumeSnapshot")?;
        Some(Point {
            name: image.name.clone(),
            synced_at: SyncTimes::from_destination(rd).last_sync_time?,
        })
    });
    let kept = kept(&ctx.here, &namespace, &names).await?;
    let keeping = restore_points::decide(wanted, latest.as_ref(), &kept);
    let api = snapshots(&ctx.here, &namespace);
    if let Some(point) = &keeping.label {
        let patch = Patch::Merge(restore_points::label_patch(&names, point));
        ctx.here
            .call("keep restore point", api.patch(&point.name, &field_manager(), &patch))
            .await?;
        tracing::info!(
            namespace,
            pvc = pvc.name_any(),
            snapshot = point.name,
            "restore point kept"
        );
    }
    for name in &keeping.prune {
        ctx.here
            .call("prune restore point", delete_if_present(&api, name))
            .await?;
        tracing::info!(namespace, pvc = pvc.name_any(), snapshot = name, "restore point pruned");
    }
    if let Some(name) = &keeping.release {
        let patch = Patch::Merge(restore_points::release_patch(&names));
        ctx.here
            .call("release restore point", api.patch(name, &field_manager(), &patch))
            .await?;
    }
    let listed = restore_points::listed_annotation(&keeping.listed);
    let want: Value = if listed.is_empty() { Value::Null } else { json!(listed) };
    let current = listed_now.map_or(Value::Null, |v| json!(v));
    if want != current {
        let patch = json!({"metadata": {"annotations": {keys::RESTORE_POINTS_KEPT: want}}});
        ctx.here
            .call(
                "list restore points",
                ctx.here.api::<PersistentVolumeClaim>(&namespace).patch(
                    &pvc.name_any(),
                    &field_manager(),
                    &Patch::Merge(patch),
                ),
            )
            .await?;
    }
    Ok(())
}

/// Every restore point of `names` on `on`, deleted (unprotect).
pub(super) async fn remove_all(on: &ClusterRef, namespace: &str, names: &Names) -> Result<usize, Error> {
    let api = snapshots(on, namespace);
    let points = kept(on, namespace, names).await?;
    for p in &points {
        on.call("delete restore point", delete_if_present(&api, &p.name))
            .await?;
    }
    Ok(points.len())
}
