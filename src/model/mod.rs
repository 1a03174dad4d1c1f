//! The vocabulary shared by every layer: annotation keys, parsed settings, names, VolSync types.
//! Pure: nothing here touches a client, the clock or the network.

pub mod action;
pub mod group;
pub mod keys;
pub mod marks;
pub mod names;
pub mod policy;
pub mod progress;
pub mod protection;
pub mod role;
pub mod schedule;
pub mod view;
pub mod volsync;
pub mod workload;
