//! Connections to the clusters: the local one the usual way, the peer from its kubeconfig.

pub mod groups;
pub mod leader;
pub mod peer;
pub mod policies;
