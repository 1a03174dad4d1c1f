//! The controller layer's error: a stable reason (Event reason, log field) and whether
//! retrying can help.

use crate::cluster::peer::PeerError;
use crate::model::protection::AnnotationErrors;
use crate::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Local { what: String, source: kube::Error },
    #[error("{what}: no answer within {after:?}")]
    LocalTimeout { what: String, after: std::time::Duration },
    #[error("peer cluster {peer}: {source}")]
    Peer { peer: String, source: PeerError },
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Annotations(#[from] AnnotationErrors),
    #[error("the PVC has no {0}")]
    Missing(&'static str),
    #[error("cannot generate a pre-shared key: {0}")]
    Random(String),
    /// Something a step needs is not there yet (it comes by itself; look again later).
    #[error("waiting for {0}")]
    Waiting(String),
    #[error("{0}")]
    Cache(#[from] super::cache::DecodeError),
}

impl Error {
    pub fn local(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Local { what, source }
    }

    /// PascalCase reason for Events and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Local { .. } => "LocalApiError",
            Error::LocalTimeout { .. } => "LocalApiTimeout",
            Error::Peer { source, .. } if source.answered() => "PeerApiError",
            Error::Peer { .. } => "PeerUnreachable",
            Error::Plan(_) | Error::Annotations(_) => "InvalidSettings",
            Error::Missing(_) => "InvalidObject",
            Error::Random(_) => "KeyGenerationFailed",
            Error::Waiting(_) => "Waiting",
            Error::Cache(_) => "InvalidObject",
        }
    }

    /// The write lost a race (409): the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Local {
                source: kube::Error::Api(s),
                ..
            } => s.code == 409,
            Error::Peer {
                source:
                    PeerError::Api {
                        source: kube::Error::Api(s),
                        ..
                    },
                ..
            } => s.code == 409,
            _ => false,
        }
    }

    /// Whether the same reconcile may succeed later without the object changing.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Local { .. }
                | Error::LocalTimeout { .. }
                | Error::Peer { .. }
                | Error::Random(_)
                | Error::Waiting(_)
        )
    }
}
