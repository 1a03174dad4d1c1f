//! The webhook's TLS: certificate and key read from files, validated together before the server
//! binds, and reloaded when the files change (cert-manager or a Secret volume rotating them),
//! without a restart. A new pair replaces the old one only if both parse and match: never half
//! a pair. Connections already open keep going; new handshakes get the new certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {path}: {problem}")]
pub struct TlsError {
    pub what: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A rustls server configuration (TLS 1.2 and 1.3, ring) from the two PEM files.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let err = |what: &'static str, path: &Path, problem: String| TlsError {
        what,
        path: path.to_path_buf(),
        problem,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| err("certificate", &files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("certificate", &files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err("certificate", &files.cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| err("key", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err("certificate", &files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("key", &files.key, format!("does not go with the certificate: {e}")))?;
    Ok(Arc::new(config))
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Poll the files every `every` and hand each good new pair to `apply`. Runs until dropped.
pub async fn watch(files: TlsFiles, every: Duration, apply: impl Fn(Arc<ServerConfig>)) {
    let mut seen = (stamp(&files.cert), stamp(&files.key));
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = (stamp(&files.cert), stamp(&files.key));
        if now == seen {
            continue;
        }
        match load(&files) {
            Ok(config) => {
                apply(config);
                seen = now;
                tracing::info!(cert = %files.cert.display(), "webhook certificate reloaded");
            }
            // Mid-rotation (one file written, not the other) or broken: keep serving the old pair.
            Err(e) => tracing::warn!(error = %e, "new webhook certificate not loaded; keeping the current one"),
        }
    }
}
