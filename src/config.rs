//! `run`'s arguments validated once into a typed configuration; nothing else reads flags or env.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{LogFormat, RunArgs};
use crate::model::protection::dns_label;
use crate::model::volsync::ServiceType;
use crate::plan::InstanceSettings;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub cluster_name: String,
    pub peer_name: String,
    pub peer_kubeconfig: PathBuf,
    pub peer_node_address: Option<String>,
    pub default_service_type: ServiceType,
    pub volume_snapshot_class: Option<String>,
    pub destination_volume_snapshot_class: Option<String>,
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    /// volsync-dr's own namespace (no policy reaches it).
    pub own_namespace: String,
    pub admin_addr: SocketAddr,
    pub webhook_addr: SocketAddr,
    pub tls: crate::server::tls::TlsFiles,
    pub tls_reload: Duration,
    pub peer_timeout: Duration,
    pub resync: Duration,
    /// Longest an action may wait for one sync.
    pub action_sync_timeout: Duration,
    /// Longest any other action step may take.
    pub action_step_timeout: Duration,
    /// Fence a stale primary on return (`plan::fence`); off: report only.
    pub fence_on_return: bool,
    /// Rotate a key older than this (`--rotate-keys-every`); `None`: only on request.
    pub rotate_keys_every: Option<Duration>,
    /// Crash-test hook: hold the action engine right after this `VERB/STEP` starts.
    #[cfg(feature = "test-hooks")]
    pub test_hold_at_step: Option<String>,
    pub concurrency: u16,
    pub log_format: LogFormat,
    /// `None`: no leader election (a single replica).
    pub leader: Option<LeaderConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub lease_duration: Duration,
    pub identity: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?}: {problem}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub value: String,
    pub problem: String,
}

/// Leader election's settings, when it is on.
fn leader_config(args: &RunArgs) -> Result<Option<LeaderConfig>, ConfigError> {
    if !args.leader_elect {
        return Ok(None);
    }
    if args.lease_duration_seconds < 2 {
        return Err(ConfigError {
            flag: "--lease-duration-seconds",
            value: args.lease_duration_seconds.to_string(),
            problem: "must be at least 2".into(),
        });
    }
    Ok(Some(LeaderConfig {
        lease_name: args.lease_name.clone(),
        lease_duration: Duration::from_secs(args.lease_duration_seconds),
        identity: args
            .pod_name
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("volsync-dr-{}", std::process::id())),
    }))
}

impl RunConfig {
    pub fn from_args(args: &RunArgs) -> Result<Self, ConfigError> {
        let label = |flag: &'static str, value: &str| {
            dns_label(value).map_err(|_| ConfigError {
                flag,
                value: value.to_string(),
                problem: "accepted: a cluster name of up to 63 lowercase letters, digits or '-'".into(),
            })
        };
        let cluster_name = label("--cluster-name", &args.cluster_name)?;
        let peer_name = label("--peer-name", &args.peer_name)?;
        if cluster_name == peer_name {
            return Err(ConfigError {
                flag: "--peer-name",
                value: peer_name,
                problem: "must differ from --cluster-name".into(),
            });
        }
        let namespaces: Vec<String> = args
            .namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        for ns in &namespaces {
            dns_label(ns).map_err(|_| ConfigError {
                flag: "--namespaces",
                value: ns.clone(),
                problem: "accepted: comma-separated namespace names".into(),
            })?;
        }
        let positive = |flag: &'static str, v: u64| {
            if v == 0 {
                Err(ConfigError {
                    flag,
                    value: "0".into(),
                    problem: "must be at least 1".into(),
                })
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        if args.concurrency == 0 {
            return Err(ConfigError {
                flag: "--concurrency",
                value: "0".into(),
                problem: "must be at least 1".into(),
            });
        }
        Ok(RunConfig {
            cluster_name,
            peer_name,
            peer_kubeconfig: args.peer_kubeconfig.clone(),
            peer_node_address: args.peer_node_address.clone().filter(|a| !a.is_empty()),
            default_service_type: args.default_service_type.into(),
            volume_snapshot_class: args.volume_snapshot_class.clone().filter(|c| !c.is_empty()),
            destination_volume_snapshot_class: args.destination_volume_snapshot_class.clone().filter(|c| !c.is_empty()),
            namespaces,
            own_namespace: dns_label(&args.own_namespace).map_err(|_| ConfigError {
                flag: "--own-namespace",
                value: args.own_namespace.clone(),
                problem: "accepted: a namespace name".into(),
            })?,
            admin_addr: args.admin_addr,
            webhook_addr: args.webhook_addr,
            tls: crate::server::tls::TlsFiles {
                cert: args.tls_cert_file.clone(),
                key: args.tls_key_file.clone(),
            },
            tls_reload: positive("--tls-reload-seconds", args.tls_reload_seconds)?,
            peer_timeout: positive("--peer-timeout-seconds", args.peer_timeout_seconds)?,
            resync: positive("--resync-seconds", args.resync_seconds)?,
            action_sync_timeout: positive("--action-sync-timeout-seconds", args.action_sync_timeout_seconds)?,
            action_step_timeout: positive("--action-step-timeout-seconds", args.action_step_timeout_seconds)?,
            fence_on_return: args.fence_on_return,
            rotate_keys_every: args
                .rotate_keys_every
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| {
                    crate::plan::rotation::interval(v).map_err(|problem| ConfigError {
                        flag: "--rotate-keys-every",
                        value: v.to_string(),
                        problem,
                    })
                })
                .transpose()?,
            #[cfg(feature = "test-hooks")]
            test_hold_at_step: args.test_hold_at_step.clone(),
            concurrency: args.concurrency,
            log_format: args.log_format,
            leader: leader_config(args)?,
        })
    }

    /// What the instance contributes to policy decisions.
    pub fn policy_scope(&self) -> crate::plan::policy::Scope {
        crate::plan::policy::Scope {
            own_namespace: self.own_namespace.clone(),
            namespaces: self.namespaces.clone(),
            default_service_type: self.default_service_type,
            volume_snapshot_class: self.volume_snapshot_class.clone(),
        }
    }

    /// The planner's view of this instance.
    pub fn instance(&self) -> InstanceSettings {
        InstanceSettings {
            cluster_name: Some(self.cluster_name.clone()),
            peer_name: self.peer_name.clone(),
            default_service_type: self.default_service_type,
            volume_snapshot_class: self.volume_snapshot_class.clone(),
            destination_volume_snapshot_class: self.destination_volume_snapshot_class.clone(),
        }
    }
}
