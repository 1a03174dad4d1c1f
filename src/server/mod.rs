//! HTTP servers the process runs.

pub mod admin;
