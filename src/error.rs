//! The command-line layer's error: one line for a person, naming what is wrong and what to do.

use std::path::PathBuf;

use crate::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    ReadInput { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: document {index}: {message}")]
    NotAPvc {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("{path}: PVC {namespace}/{name}: {source}")]
    Plan {
        path: PathBuf,
        namespace: String,
        name: String,
        source: PlanError,
    },
    #[error("invalid flag: {0}")]
    Flag(String),
    #[error("cannot generate a random key: {0}")]
    Random(String),
    #[error("cannot write output: {0}")]
    Output(String),
    #[error("{0}")]
    Cluster(String),
    /// `doctor` found problems (each already printed with what to do).
    #[error("{failed} of {total} checks failed")]
    ChecksFailed { failed: usize, total: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
