//! The peer's side of a protection: the Secret, the counterpart PVC and the RD on the peer,
//! and where this cluster reaches that RD. Every call goes through the peer's bounded `call`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch};
use serde_json::json;

use super::apply::{ensure, field_manager};
use super::context::Context;
use super::error::Error;
use crate::model::names::{Names, volsync_rsync_tls_service};
use crate::model::volsync::{ReplicationDestination, ServiceType};
use crate::plan::fence::{Pair, judge};
use crate::plan::status::pick_node_address;
use crate::plan::{self, Endpoint, resolve_endpoint};

/// The peer's side: Secret, counterpart PVC, RD; then the RD's endpoint if it is known.
pub(super) async fn ensure_peer(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    namespace: &str,
    p: &plan::ProtectPlan,
) -> Result<PeerSide, Error> {
    let pvcs: Api<PersistentVolumeClaim> = ctx.peer.api(namespace);
    let existing = ctx.peer.call("read PVC", pvcs.get_opt(&p.names.pvc)).await?;
    // The peer's copy may have taken over (failover) or be taking over: then it is not ours
    // to overwrite, whatever this side's annotations say; of two primaries, the stale one is
    // fenced.
    if let Some(peer_pvc) = &existing {
        match judge(
            pvc.annotations(),
            peer_pvc.annotations(),
            &ctx.config.cluster_name,
            &ctx.peer.name,
        ) {
            Pair::Ours => {}
            Pair::HandedOff(reason) => return Ok(PeerSide::HandedOff(reason)),
            Pair::FenceHere { generation, message } => return Ok(PeerSide::FenceHere { generation, message }),
            Pair::FencePeer { generation, message } => return Ok(PeerSide::FencePeer { generation, message }),
        }
    }
    let secrets: Api<Secret> = ctx.peer.api(namespace);
    ctx.peer
        .call("apply Secret", ensure(&secrets, &p.secondary_secret))
        .await?;
    match existing {
        None => {
            ctx.peer.call("create PVC", ensure(&pvcs, &p.secondary_pvc)).await?;
        }
        // Once it exists its spec is immutable, and applying only metadata under our field
        // manager would drop the spec we applied: labels and annotations go by merge patch.
        Some(current) => {
            let wanted = &p.secondary_pvc.metadata;
            if super::apply::metadata_lacks(&current.metadata, wanted) {
                let want = json!({"metadata": {"labels": wanted.labels, "annotations": wanted.annotations}});
                ctx.peer
                    .call(
                        "label PVC",
                        pvcs.patch(&p.names.pvc, &field_manager(), &Patch::Merge(want)),
                    )
                    .await?;
            }
        }
    }
    let rds: Api<ReplicationDestination> = ctx.peer.api(namespace);
    ctx.peer
        .call("apply ReplicationDestination", ensure(&rds, &p.replication_destination))
        .await?;
    Ok(PeerSide::Destination(
        destination_endpoint(ctx, namespace, &p.names, p.settings.service_type).await?,
    ))
}

/// How the peer's side of a protection stands.
pub(super) enum PeerSide {
    /// Ours; the RD's endpoint once it is known.
    Destination(Option<Endpoint>),
    /// The peer's PVC is primary too, or fails over, or is fenced: this side leaves the pair
    /// alone.
    HandedOff(String),
    /// The peer took over after this side: this side is to be fenced.
    FenceHere { generation: u64, message: String },
    /// This side took over and the peer came back still primary: the peer is to be fenced.
    FencePeer { generation: u64, message: String },
}

/// How soon a primary that handed off looks at the peer again (the peer's change that ends it,
/// a failback, is not watched from here).
pub(super) const HANDED_OFF_RETRY: Duration = Duration::from_secs(15);

/// Where this cluster reaches the peer's `rd-P`, if it exists and its address is known.
pub(super) async fn destination_endpoint(
    ctx: &Context,
    namespace: &str,
    names: &Names,
    service_type: ServiceType,
) -> Result<Option<Endpoint>, Error> {
    let rds: Api<ReplicationDestination> = ctx.peer.api(namespace);
    let rd = ctx
        .peer
        .call(
            "read ReplicationDestination",
            rds.get_opt(&names.replication_destination),
        )
        .await?;
    let Some(rd) = rd else { return Ok(None) };
    let published = rd.published_address().map(str::to_string);
    let (node_address, node_port) = if service_type == ServiceType::NodePort {
        let services: Api<Service> = ctx.peer.api(namespace);
        let service_name = volsync_rsync_tls_service(&names.replication_destination);
        // The node port changes whenever the RD is re-created, so it is read every time.
        let service = ctx
            .peer
            .call("read RD Service", services.get_opt(&service_name))
            .await?;
        let node_port = service.and_then(|s| s.spec?.ports?.first()?.node_port);
        (peer_node_address(ctx).await?, node_port)
    } else {
        (None, None)
    };
    Ok(resolve_endpoint(
        service_type,
        published.as_deref(),
        node_address.as_deref(),
        node_port,
    ))
}

async fn peer_node_address(ctx: &Context) -> Result<Option<String>, Error> {
    if let Some(address) = &ctx.config.peer_node_address {
        return Ok(Some(address.clone()));
    }
    if let Some(address) = ctx.cached_node_address() {
        return Ok(Some(address));
    }
    let nodes: Api<Node> = ctx.peer.all();
    let list = ctx.peer.call("list Nodes", nodes.list(&Default::default())).await?;
    let address = pick_node_address(&list.items);
    if let Some(a) = &address {
        ctx.remember_node_address(a);
    }
    Ok(address)
}
