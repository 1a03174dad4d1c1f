//! The two clusters as an action sees them: "here" (where the action was requested) and the
//! peer. Every call is bounded (the peer's by its timeout) and its error names the cluster.

use std::future::Future;

use kube::{Api, Client};

use super::context::Context;
use super::error::Error;
use crate::cluster::peer::Peer;

#[derive(Clone)]
pub struct ClusterRef {
    pub name: String,
    client: Client,
    /// Set for the peer: its calls go through its timeout.
    peer: Option<Peer>,
}

impl ClusterRef {
    pub fn here(ctx: &Context) -> ClusterRef {
        ClusterRef {
            name: ctx.config.cluster_name.clone(),
            client: ctx.local.clone(),
            peer: None,
        }
    }

    pub fn peer(ctx: &Context) -> ClusterRef {
        ClusterRef {
            name: ctx.peer.name.clone(),
            client: ctx.peer.client(),
            peer: Some(ctx.peer.clone()),
        }
    }

    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn dynamic(&self, namespace: &str, resource: &kube::api::ApiResource) -> Api<kube::api::DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, resource)
    }

    /// One call, its error naming what was done and on which cluster.
    pub async fn call<T>(&self, what: &str, call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Error> {
        match &self.peer {
            Some(peer) => peer.call(what, call).await.map_err(|source| Error::Peer {
                peer: peer.name.clone(),
                source,
            }),
            None => call.await.map_err(Error::local(what)),
        }
    }
}
