//! Test-only support for volsync-dr: an in-process Kubernetes API server, a VolSync simulator,
//! and a harness that runs two clusters side by side.

pub mod apiserver;
pub mod cluster;
pub mod cluster_api;
pub mod http;
pub mod kubectl;
pub mod pair;
pub mod realk8s;
pub mod simulator;
pub mod tls;
