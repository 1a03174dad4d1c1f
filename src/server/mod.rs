//! HTTP servers the process runs.

pub mod admin;
pub mod tls;
pub mod webhook;
