//! volsync-dr: cross-cluster disaster recovery of PersistentVolumeClaims with VolSync, driven by
//! annotations.
//!
//! Layers, from pure to effectful: [`model`] (the vocabulary: annotation keys, parsed settings,
//! names, VolSync types) ← [`plan`] (desired objects and status from a PVC, settings and what
//! was observed) ← [`controller`] (the only writer: observe, apply, report) ← [`cmd`] (one
//! module per subcommand). `model`, `plan` and [`report`] (what `status` shows) never touch a
//! client, the clock or randomness.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod controller;
pub mod error;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod report;
pub mod server;
pub mod steps;
pub mod telemetry;
