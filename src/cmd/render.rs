//! `volsync-dr render -f PVC.yaml`: the protect plan as multi-document YAML, no cluster needed.

use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::cli::RenderArgs;
use crate::error::{Error, Result};
use crate::model::keys;
use crate::model::names::RSYNC_TLS_PORT;
use crate::model::protection::dns_label;
use crate::model::volsync::ServiceType;
use crate::plan::{self, Endpoint, InstanceSettings, PSK_BYTES, Psk};

/// What `render` produced: the YAML for standard output, notes for standard error.
pub struct Rendered {
    pub yaml: String,
    pub notes: Vec<String>,
}

pub fn run(args: &RenderArgs) -> Result<()> {
    let input = read_input(&args.file)?;
    let rendered = render(args, &args.file, &input, &mut random_psk)?;
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    print!("{}", rendered.yaml);
    Ok(())
}

fn read_input(path: &Path) -> Result<String> {
    let read_error = |source| Error::ReadInput {
        path: path.to_path_buf(),
        source,
    };
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(read_error)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(read_error)
    }
}

/// A fresh 256-bit key from the operating system's generator.
pub fn random_psk() -> Result<Psk> {
    let mut bytes = [0u8; PSK_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(Psk::from_random_bytes(bytes))
}

/// Render every PVC in `input`. Pure but for `new_psk`, which supplies one key per PVC.
pub fn render(
    args: &RenderArgs,
    path: &Path,
    input: &str,
    new_psk: &mut dyn FnMut() -> Result<Psk>,
) -> Result<Rendered> {
    let path: PathBuf = path.to_path_buf();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(input).map_err(|e| Error::Yaml {
        path: path.clone(),
        message: first_line(&e.to_string()),
    })?;
    if documents.is_empty() {
        return Err(Error::NotAPvc {
            path,
            index: 1,
            message: "the file holds no document".into(),
        });
    }
    if let Some(name) = &args.cluster_name {
        dns_label(name).map_err(|e| Error::Flag(format!("--cluster-name {name:?}: {e}")))?;
    }
    let mut yaml = String::new();
    let mut notes = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        let index = i + 1;
        let mut pvc = as_pvc(document).map_err(|message| Error::NotAPvc {
            path: path.clone(),
            index,
            message,
        })?;
        match pvc.metadata.namespace.as_deref() {
            None | Some("") => pvc.metadata.namespace = Some(args.namespace.clone()),
            Some(_) => {}
        }
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let namespace = pvc.metadata.namespace.clone().unwrap_or_default();
        let plan_error = |source| Error::Plan {
            path: path.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        };

        let peer_from_pvc = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::PEER))
            .cloned();
        let instance = InstanceSettings {
            cluster_name: args.cluster_name.clone(),
            peer_name: args
                .peer_name
                .clone()
                .or(peer_from_pvc)
                .unwrap_or_else(|| "peer".to_string()),
            default_service_type: args.service_type.into(),
            volume_snapshot_class: args.volume_snapshot_class.clone(),
            destination_volume_snapshot_class: args.destination_volume_snapshot_class.clone(),
        };
        // The service type in force decides how the endpoint is made, so plan once without it.
        let psk = new_psk()?;
        let service_type = plan::protect(&pvc, &instance, &psk, None)
            .map_err(plan_error)?
            .settings
            .service_type;
        let endpoint = endpoint(service_type, args.peer_address.as_deref(), args.peer_port)?;
        let protect_plan = plan::protect(&pvc, &instance, &psk, endpoint.as_ref()).map_err(plan_error)?;
        if protect_plan.replication_source.is_none() {
            notes.push(format!(
                "{namespace}/{} left out: it needs the destination's address; pass --peer-address{} \
                 (at run time volsync-dr reads it from the ReplicationDestination's status)",
                protect_plan.names.replication_source,
                if service_type == ServiceType::NodePort {
                    " and --peer-port (the node port)"
                } else {
                    ""
                }
            ));
        }
        for (side, document) in protect_plan.documents().map_err(|e| Error::Output(e.to_string()))? {
            let text = serde_saphyr::to_string(&document).map_err(|e| Error::Output(e.to_string()))?;
            yaml.push_str("---\n# cluster: ");
            yaml.push_str(side.as_str());
            yaml.push('\n');
            yaml.push_str(&text);
            if !text.ends_with('\n') {
                yaml.push('\n');
            }
        }
    }
    Ok(Rendered { yaml, notes })
}

fn endpoint(service_type: ServiceType, address: Option<&str>, port: Option<u16>) -> Result<Option<Endpoint>> {
    let Some(address) = address else {
        return Ok(None);
    };
    let port = match (service_type, port) {
        (_, Some(port)) => i32::from(port),
        (ServiceType::NodePort, None) => {
            return Err(Error::Flag(
                "--peer-port is required with --peer-address for NodePort: the RD Service's node port".into(),
            ));
        }
        _ => RSYNC_TLS_PORT,
    };
    if port == 0 {
        return Err(Error::Flag("--peer-port 0: accepted: 1-65535".into()));
    }
    Ok(Some(Endpoint {
        address: address.to_string(),
        port,
    }))
}

fn as_pvc(document: serde_json::Value) -> std::result::Result<PersistentVolumeClaim, String> {
    let kind = document.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let api_version = document.get("apiVersion").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "PersistentVolumeClaim" || api_version != "v1" {
        return Err(format!(
            "expected a PersistentVolumeClaim (apiVersion v1), found kind {kind:?} apiVersion {api_version:?}"
        ));
    }
    serde_json::from_value(document).map_err(|e| format!("not a valid PersistentVolumeClaim: {e}"))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_string()
}
