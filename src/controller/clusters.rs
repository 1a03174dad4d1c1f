//! The two clusters as the controller sees them: "here" (this instance's own cluster) and the
//! peer. Every call to either goes through [`ClusterRef::call`]: bounded by a timeout, and its
//! error names what was done and on which cluster.

use std::future::Future;
use std::time::Duration;

use kube::{Api, Client};

use super::error::Error;
use crate::cluster::peer::{Peer, PeerError};

/// How long a call to this instance's own API server may take before it counts as failed.
/// The peer's limit is `--peer-timeout-seconds`.
pub const LOCAL_CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Here,
    Peer,
}

#[derive(Clone)]
pub struct ClusterRef {
    pub name: String,
    client: Client,
    timeout: Duration,
    side: Side,
}

impl ClusterRef {
    /// This instance's own cluster.
    pub fn here(name: &str, client: Client, timeout: Duration) -> ClusterRef {
        ClusterRef {
            name: name.to_string(),
            client,
            timeout,
            side: Side::Here,
        }
    }

    pub fn peer(peer: &Peer) -> ClusterRef {
        ClusterRef {
            name: peer.name.clone(),
            client: peer.client(),
            timeout: peer.timeout(),
            side: Side::Peer,
        }
    }

    /// The client, for watches (they are long-lived streams, not bounded calls).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn all<K>(&self) -> Api<K>
    where
        K: kube::Resource,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::all(self.client.clone())
    }

    pub fn dynamic(&self, namespace: &str, resource: &kube::api::ApiResource) -> Api<kube::api::DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, resource)
    }

    /// One call, bounded by this cluster's timeout; its error names what was done and where.
    pub async fn call<T>(&self, what: &str, call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Error> {
        let outcome = tokio::time::timeout(self.timeout, call).await;
        match (self.side, outcome) {
            (_, Ok(Ok(value))) => Ok(value),
            (Side::Here, Ok(Err(source))) => Err(Error::Local {
                what: what.to_string(),
                source,
            }),
            (Side::Here, Err(_)) => Err(Error::LocalTimeout {
                what: what.to_string(),
                after: self.timeout,
            }),
            (Side::Peer, Ok(Err(source))) => Err(Error::Peer {
                peer: self.name.clone(),
                source: PeerError::Api {
                    what: what.to_string(),
                    source,
                },
            }),
            (Side::Peer, Err(_)) => Err(Error::Peer {
                peer: self.name.clone(),
                source: PeerError::Timeout {
                    what: what.to_string(),
                    after: self.timeout,
                },
            }),
        }
    }

    /// Whether the API server answers now (its version endpoint, within the timeout).
    pub async fn reachable(&self) -> bool {
        self.call("probe", self.client.apiserver_version()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable(side: Side) -> ClusterRef {
        // A client whose calls are never made: the futures below resolve or stall by themselves.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
        let client = Client::try_from(config).expect("client");
        ClusterRef {
            name: "west".into(),
            client,
            timeout: Duration::from_millis(20),
            side,
        }
    }

    #[tokio::test]
    async fn errors_name_the_cluster_the_call_and_whether_it_timed_out() {
        let api_error = || {
            let status = kube::core::Status::failure("pvcs \"db\" is forbidden", "Forbidden").with_code(403);
            async move { Err::<(), _>(kube::Error::Api(Box::new(status))) }
        };
        let stalled = || std::future::pending::<Result<(), kube::Error>>();
        let cases: Vec<(Side, bool, &str, &str)> = vec![
            (Side::Here, false, "LocalApiError", "read PVC: "),
            (Side::Here, true, "LocalApiTimeout", "read PVC: no answer within 20ms"),
            (Side::Peer, false, "PeerApiError", "peer cluster west: read PVC: "),
            (
                Side::Peer,
                true,
                "PeerUnreachable",
                "peer cluster west: read PVC: no answer within 20ms",
            ),
        ];
        for (side, stall, reason, starts) in cases {
            let cluster = unreachable(side);
            let error = if stall {
                cluster.call("read PVC", stalled()).await
            } else {
                cluster.call("read PVC", api_error()).await
            }
            .expect_err("fails");
            assert_eq!(error.reason(), reason, "{side:?} stall={stall}: {error}");
            assert!(error.to_string().starts_with(starts), "{side:?} stall={stall}: {error}");
            assert!(error.is_transient(), "{error}");
        }
        assert_eq!(
            unreachable(Side::Here)
                .call("read PVC", async { Ok(7) })
                .await
                .expect("ok"),
            7
        );
    }
}
