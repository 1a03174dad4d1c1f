//! A test cluster: an API server with VolSync's and the snapshot CRDs installed, as a cluster
//! with VolSync deployed looks to its clients.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::apiserver::store::WriteOptions;
use crate::apiserver::{ApiServer, Config};

/// The vendored CRDs (VolSync's and the snapshot API's), relative to the testkit crate.
pub fn crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/volsync-crds")
}

/// volsync-dr's own CRDs (DRPolicy), as `deploy/` ships them.
pub fn volsync_dr_crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

/// Install every CRD in the YAML files of `dir`.
pub fn install_crds(server: &ApiServer, dir: &Path) -> Result<usize, String> {
    let mut installed = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    let rt = server
        .store()
        .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or("CRDs are not served")?;
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for doc in docs.into_iter().filter(|d| d["kind"] == "CustomResourceDefinition") {
            server
                .store()
                .create(&rt, "", doc, &WriteOptions::default())
                .map_err(|e| format!("{}: {}", path.display(), e.message))?;
            installed += 1;
        }
    }
    Ok(installed)
}

/// Start a server with the VolSync and snapshot CRDs installed.
pub async fn start_with_volsync(config: Config) -> Result<ApiServer, String> {
    let server = ApiServer::start(config).await.map_err(|e| e.to_string())?;
    install_crds(&server, &crd_dir())?;
    Ok(server)
}
