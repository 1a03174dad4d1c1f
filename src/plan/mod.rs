//! Desired state, computed purely: a PVC plus settings in, the objects that should exist out.
//!
//! Nothing here reads the clock, generates randomness or talks to a cluster: the pre-shared key
//! and the destination's address are inputs, so the same inputs always give the same plan and
//! the controller can compare plan and cluster to decide whether to write at all.

pub mod action;
pub mod fence;
pub mod group;
pub mod namespace;
pub mod pass;
pub mod policy;
pub mod protect;
pub mod restore_points;
pub mod rotation;
pub mod status;

use std::fmt;

use crate::model::protection::AnnotationErrors;
use crate::model::volsync::ServiceType;

pub use protect::{ProtectPlan, protect};

/// What an instance knows that annotations may override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSettings {
    /// This cluster's name; recorded on the counterpart PVC so the peer knows its peer.
    pub cluster_name: Option<String>,
    pub peer_name: String,
    pub default_service_type: ServiceType,
    /// VolumeSnapshotClass on this cluster when the PVC does not name one.
    pub volume_snapshot_class: Option<String>,
    /// VolumeSnapshotClass on the peer when the PVC does not name one.
    pub destination_volume_snapshot_class: Option<String>,
}

/// Where the primary reaches the ReplicationDestination's rsync-tls endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: String,
    pub port: i32,
}

/// The endpoint for a service type, from what the peer cluster shows.
///
/// VolSync publishes only an address. ClusterIP and LoadBalancer use it with port 8000. For
/// NodePort that address is the Service's cluster IP, unreachable from the primary, so a node
/// address of the peer and the Service's node port are used instead.
pub fn resolve_endpoint(
    service_type: ServiceType,
    published_address: Option<&str>,
    node_address: Option<&str>,
    node_port: Option<i32>,
) -> Option<Endpoint> {
    match service_type {
        ServiceType::ClusterIP | ServiceType::LoadBalancer => published_address.map(|address| Endpoint {
            address: address.to_string(),
            port: crate::model::names::RSYNC_TLS_PORT,
        }),
        ServiceType::NodePort => match (node_address, node_port) {
            (Some(address), Some(port)) if port > 0 => Some(Endpoint {
                address: address.to_string(),
                port,
            }),
            _ => None,
        },
        ServiceType::ExternalName => None,
    }
}

/// The pre-shared key of one PVC pair, `<identity>:<hex>`, as VolSync's rsync-tls reads it.
/// Its Debug form hides the key so it can never reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(String);

/// Bytes of randomness in a key: 256 bits.
pub const PSK_BYTES: usize = 32;

impl Psk {
    /// A key from 32 random bytes (the caller supplies the randomness).
    pub fn from_random_bytes(bytes: [u8; PSK_BYTES]) -> Self {
        Psk(format!("{}:{}", crate::model::keys::PSK_IDENTITY, hex::encode(bytes)))
    }

    /// A key read back from a Secret: `<identity>:<at least 32 hex digits>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (identity, key) = text.trim_end().split_once(':')?;
        let valid = !identity.is_empty() && key.len() >= 32 && key.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| Psk(text.trim_end().to_string()))
    }

    /// The key a pair's Secret holds (`psk.txt`), if it holds a valid one. The one reader of
    /// key Secrets: the protection pass and the action steps both use it.
    pub fn from_secret(secret: &k8s_openapi::api::core::v1::Secret) -> Option<Self> {
        let bytes = secret.data.as_ref()?.get(crate::model::keys::PSK_KEY)?;
        Psk::parse(std::str::from_utf8(&bytes.0).ok()?)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// When a key Secret's key was made: its last rotation (`volsync-dr.io/key-created`), else
/// the Secret's creation.
pub fn key_created(meta: &kube::api::ObjectMeta) -> Option<jiff::Timestamp> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(crate::model::keys::KEY_CREATED))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .or_else(|| meta.creation_timestamp.as_ref().map(|t| t.0))
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

/// Why a PVC cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Annotations(#[from] AnnotationErrors),
    #[error("the PVC has no {field}; {hint}")]
    MissingField { field: &'static str, hint: &'static str },
    #[error("annotation volsync-dr.io/peer={peer:?} names an unknown peer; accepted: {known:?}")]
    UnknownPeer { peer: String, known: String },
    #[error("the PVC cannot be protected: {0}")]
    NotProtectable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_per_service_type() {
        let cases = [
            (
                ServiceType::ClusterIP,
                Some("10.96.0.9"),
                None,
                None,
                Some(("10.96.0.9", 8000)),
            ),
            (
                ServiceType::LoadBalancer,
                Some("203.0.113.7"),
                None,
                None,
                Some(("203.0.113.7", 8000)),
            ),
            (ServiceType::ClusterIP, None, None, None, None),
            // NodePort ignores the published cluster IP and needs node address and port.
            (
                ServiceType::NodePort,
                Some("10.96.0.9"),
                Some("192.168.129.201"),
                Some(30532),
                Some(("192.168.129.201", 30532)),
            ),
            (ServiceType::NodePort, Some("10.96.0.9"), None, Some(30532), None),
            (
                ServiceType::NodePort,
                Some("10.96.0.9"),
                Some("192.168.129.201"),
                None,
                None,
            ),
            (ServiceType::NodePort, None, Some("192.168.129.201"), Some(0), None),
            (ServiceType::ExternalName, Some("x"), Some("y"), Some(1), None),
        ];
        for (ty, published, node, port, want) in cases {
            let got = resolve_endpoint(ty, published, node, port);
            let want = want.map(|(a, p)| Endpoint {
                address: a.to_string(),
                port: p,
            });
            assert_eq!(got, want, "{ty:?} {published:?} {node:?} {port:?}");
        }
    }

    #[test]
    fn psk_format_and_redaction() {
        let psk = Psk::from_random_bytes([0xab; PSK_BYTES]);
        assert_eq!(psk.expose(), format!("volsync-dr:{}", "ab".repeat(32)));
        assert_eq!(format!("{psk:?}"), "Psk(<redacted>)");
        assert_eq!(Psk::parse(psk.expose()), Some(psk.clone()));
        assert_eq!(
            Psk::parse("1:23b7395fafc3e842bd8ac0fe142e6ad1").map(|p| p.expose().len()),
            Some(34)
        );
        for bad in ["", "nocolon", ":abcd", "1:short", "1:zz7395fafc3e842bd8ac0fe142e6ad1zz"] {
            assert_eq!(Psk::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn psk_from_secret() {
        use k8s_openapi::ByteString;
        use k8s_openapi::api::core::v1::Secret;
        let secret = |key: &str, value: &[u8]| Secret {
            data: Some([(key.to_string(), ByteString(value.to_vec()))].into()),
            ..Secret::default()
        };
        let good = Psk::from_random_bytes([7; PSK_BYTES]);
        assert_eq!(
            Psk::from_secret(&secret("psk.txt", good.expose().as_bytes())),
            Some(good)
        );
        assert_eq!(Psk::from_secret(&secret("other", b"volsync-dr:00")), None);
        assert_eq!(Psk::from_secret(&secret("psk.txt", &[0xff, 0xfe])), None, "not UTF-8");
        assert_eq!(Psk::from_secret(&secret("psk.txt", b"1:short")), None);
        assert_eq!(Psk::from_secret(&Secret::default()), None);
    }
}
