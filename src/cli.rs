//! Command line: one subcommand per job, flags with `VOLSYNC_DR_*` environment fallbacks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::volsync::ServiceType;

#[derive(Debug, Parser)]
#[command(
    name = "volsync-dr",
    version,
    about = "Cross-cluster disaster recovery of PVCs with VolSync, driven by annotations"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the protection watcher against this cluster and its peer.
    Run(Box<RunArgs>),
    /// Print every object that protecting a PVC creates on both clusters (no cluster needed).
    Render(RenderArgs),
    /// Generate a CA and the webhook's serving certificate; print the caBundle.
    Certs(CertsArgs),
    /// Print the DRPolicy CustomResourceDefinition (apply it with `kubectl apply -f -`).
    Crd,
    /// Show every protected PVC on this cluster and its peer: role, state, last sync, RPO age,
    /// running action and step.
    Status(StatusArgs),
    /// Preflight both clusters: CRDs, snapshot and storage classes, the peer's access, the
    /// webhook certificate. Each check is a line, OK or FAIL with what to do; exit 1 on a FAIL.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// The namespace volsync-dr runs in on both clusters (its webhook Secret is there).
    #[arg(long, default_value = "volsync-dr", env = "VOLSYNC_DR_OWN_NAMESPACE")]
    pub namespace: String,
    /// VolumeSnapshotClass volsync-dr is configured with on this cluster.
    #[arg(long, env = "VOLSYNC_DR_VOLUME_SNAPSHOT_CLASS")]
    pub volume_snapshot_class: Option<String>,
    /// VolumeSnapshotClass volsync-dr is configured with on the peer.
    #[arg(long, env = "VOLSYNC_DR_DESTINATION_VOLUME_SNAPSHOT_CLASS")]
    pub destination_volume_snapshot_class: Option<String>,
}

/// The two clusters, as `status` and `doctor` reach them.
#[derive(Debug, Args)]
pub struct PairArgs {
    /// Kubeconfig file for the peer cluster, as volsync-dr uses it (this cluster: KUBECONFIG or
    /// ~/.kube/config).
    #[arg(long, env = "VOLSYNC_DR_PEER_KUBECONFIG", value_name = "FILE")]
    pub peer_kubeconfig: PathBuf,
    /// This cluster's name, for the report.
    #[arg(long, default_value = "local", env = "VOLSYNC_DR_CLUSTER_NAME")]
    pub cluster_name: String,
    /// The peer cluster's name, for the report.
    #[arg(long, default_value = "peer", env = "VOLSYNC_DR_PEER_NAME")]
    pub peer_name: String,
    /// Longest each request may take, in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout_seconds: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Only this namespace [default: all].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, tls.crt and tls.key.
    #[arg(long, default_value = "certs")]
    pub out_dir: PathBuf,
    /// The webhook Service's name.
    #[arg(long, default_value = "volsync-dr-webhook")]
    pub service: String,
    /// The webhook Service's namespace.
    #[arg(long, default_value = "volsync-dr")]
    pub namespace: String,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Further DNS names or IP addresses for the certificate (repeatable).
    #[arg(long = "extra-name")]
    pub extra_names: Vec<String>,
}

/// `volsync-dr run`. This cluster is reached the usual way (in-cluster service account, else
/// KUBECONFIG or ~/.kube/config); the peer through its own kubeconfig.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// This cluster's name.
    #[arg(long, env = "VOLSYNC_DR_CLUSTER_NAME")]
    pub cluster_name: String,
    /// The peer cluster's name.
    #[arg(long, env = "VOLSYNC_DR_PEER_NAME")]
    pub peer_name: String,
    /// Kubeconfig file for the peer cluster (mounted from a Secret).
    #[arg(long, env = "VOLSYNC_DR_PEER_KUBECONFIG", value_name = "FILE")]
    pub peer_kubeconfig: PathBuf,
    /// Address of a peer node, for NodePort [default: a Ready peer node's ExternalIP, else InternalIP].
    #[arg(long, env = "VOLSYNC_DR_PEER_NODE_ADDRESS")]
    pub peer_node_address: Option<String>,
    /// Service type when neither annotation nor policy says.
    #[arg(long, value_enum, default_value_t = ServiceTypeArg::ClusterIP, env = "VOLSYNC_DR_DEFAULT_SERVICE_TYPE")]
    pub default_service_type: ServiceTypeArg,
    /// VolumeSnapshotClass on this cluster when the PVC names none.
    #[arg(long, env = "VOLSYNC_DR_VOLUME_SNAPSHOT_CLASS")]
    pub volume_snapshot_class: Option<String>,
    /// VolumeSnapshotClass on the peer when the PVC names none.
    #[arg(long, env = "VOLSYNC_DR_DESTINATION_VOLUME_SNAPSHOT_CLASS")]
    pub destination_volume_snapshot_class: Option<String>,
    /// Comma-separated namespaces to watch [default: all].
    #[arg(long, env = "VOLSYNC_DR_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// The namespace volsync-dr runs in; no DRPolicy reaches its PVCs (set it from the
    /// downward API in a Deployment).
    #[arg(long, default_value = "volsync-dr", env = "VOLSYNC_DR_OWN_NAMESPACE")]
    pub own_namespace: String,
    /// HTTPS listen address of the admission webhook.
    #[arg(long, default_value = "0.0.0.0:8443", env = "VOLSYNC_DR_WEBHOOK_ADDR")]
    pub webhook_addr: std::net::SocketAddr,
    /// Webhook certificate (PEM), reloaded when it changes.
    #[arg(long, default_value = "certs/tls.crt", env = "VOLSYNC_DR_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    /// Webhook private key (PEM), reloaded when it changes.
    #[arg(long, default_value = "certs/tls.key", env = "VOLSYNC_DR_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,
    /// How often the certificate files are checked for changes, in seconds.
    #[arg(long, default_value_t = 10, env = "VOLSYNC_DR_TLS_RELOAD_SECONDS")]
    pub tls_reload_seconds: u64,
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080", env = "VOLSYNC_DR_ADMIN_ADDR")]
    pub admin_addr: std::net::SocketAddr,
    /// Longest any one call to the peer cluster may take, in seconds.
    #[arg(long, default_value_t = 10, env = "VOLSYNC_DR_PEER_TIMEOUT_SECONDS")]
    pub peer_timeout_seconds: u64,
    /// How often a protected PVC is checked again with nothing changed, in seconds.
    #[arg(long, default_value_t = 300, env = "VOLSYNC_DR_RESYNC_SECONDS")]
    pub resync_seconds: u64,
    /// Longest an action waits for one sync before it fails, in seconds.
    #[arg(long, default_value_t = 3600, env = "VOLSYNC_DR_ACTION_SYNC_TIMEOUT_SECONDS")]
    pub action_sync_timeout_seconds: u64,
    /// Longest any other action step may take (scaling, creating, deleting), in seconds.
    #[arg(long, default_value_t = 600, env = "VOLSYNC_DR_ACTION_STEP_TIMEOUT_SECONDS")]
    pub action_step_timeout_seconds: u64,
    /// Fence a primary that comes back after its peer took over in a failover: scale its
    /// application to 0 and remove its sync. Off: only report it (a Warning Event on every
    /// look), for those who fence with their own tooling.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "VOLSYNC_DR_FENCE_ON_RETURN")]
    pub fence_on_return: bool,
    /// Rotate each protected PVC's key once it is older than this (a duration such as `30d` or
    /// `720h`, from 1h to 365d): the primary's instance requests `rotate-key:auto-TIME` on a PVC
    /// whose `action` annotation is absent or one it wrote itself. Off when absent.
    #[arg(long, env = "VOLSYNC_DR_ROTATE_KEYS_EVERY")]
    pub rotate_keys_every: Option<String>,
    /// Fault injection for the crash tests: `VERB/STEP` makes the action engine stop (and wait
    /// to be killed) right after it records that step as started, before the step acts. Only
    /// in builds with the `test-hooks` feature (the tests'), never in a release build.
    #[cfg(feature = "test-hooks")]
    #[arg(long, env = "VOLSYNC_DR_TEST_HOLD_AT_STEP", hide = true)]
    pub test_hold_at_step: Option<String>,
    /// Elect a leader among the replicas on a coordination.k8s.io Lease in --own-namespace:
    /// only the leader runs the watcher; every replica serves the webhook.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "VOLSYNC_DR_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "volsync-dr", env = "VOLSYNC_DR_LEASE_NAME")]
    pub lease_name: String,
    /// How long a leader's Lease is valid without renewal, in seconds: the longest a crashed
    /// leader leaves the watcher unattended. It renews 5 s before (at least 1 s) the end.
    #[arg(long, default_value_t = 15, env = "VOLSYNC_DR_LEASE_DURATION_SECONDS")]
    pub lease_duration_seconds: u64,
    /// This replica's identity in the Lease [default: $POD_NAME, else $HOSTNAME, else a random one].
    #[arg(long, env = "VOLSYNC_DR_POD_NAME")]
    pub pod_name: Option<String>,
    /// How many PVCs are reconciled at once.
    #[arg(long, default_value_t = 16, env = "VOLSYNC_DR_CONCURRENCY")]
    pub concurrency: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "VOLSYNC_DR_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// PVC manifest (YAML or JSON, one or more documents); `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Namespace for a PVC whose manifest names none.
    #[arg(short = 'n', long, default_value = "default", env = "VOLSYNC_DR_NAMESPACE")]
    pub namespace: String,
    /// This cluster's name (recorded on the counterpart PVC as its peer).
    #[arg(long, env = "VOLSYNC_DR_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// The peer cluster's name [default: the PVC's volsync-dr.io/peer, else "peer"].
    #[arg(long, env = "VOLSYNC_DR_PEER_NAME")]
    pub peer_name: Option<String>,
    /// Service type when the PVC has no volsync-dr.io/service-type.
    #[arg(long = "service-type", value_enum, default_value_t = ServiceTypeArg::ClusterIP, env = "VOLSYNC_DR_DEFAULT_SERVICE_TYPE")]
    pub service_type: ServiceTypeArg,
    /// Address the ReplicationSource connects to: the RD's published address, or a peer node's
    /// address for NodePort. Without it `rs-P` is left out, as at run time until VolSync
    /// publishes the address.
    #[arg(long)]
    pub peer_address: Option<String>,
    /// Port for the ReplicationSource: the Service's node port for NodePort [default: 8000 otherwise].
    #[arg(long)]
    pub peer_port: Option<u16>,
    /// VolumeSnapshotClass on this cluster when the PVC names none.
    #[arg(long, env = "VOLSYNC_DR_VOLUME_SNAPSHOT_CLASS")]
    pub volume_snapshot_class: Option<String>,
    /// VolumeSnapshotClass on the peer when the PVC names none.
    #[arg(long, env = "VOLSYNC_DR_DESTINATION_VOLUME_SNAPSHOT_CLASS")]
    pub destination_volume_snapshot_class: Option<String>,
}

/// The service types an instance may default to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServiceTypeArg {
    #[value(name = "ClusterIP")]
    ClusterIP,
    #[value(name = "LoadBalancer")]
    LoadBalancer,
    #[value(name = "NodePort")]
    NodePort,
}

impl From<ServiceTypeArg> for ServiceType {
    fn from(arg: ServiceTypeArg) -> Self {
        match arg {
            ServiceTypeArg::ClusterIP => ServiceType::ClusterIP,
            ServiceTypeArg::LoadBalancer => ServiceType::LoadBalancer,
            ServiceTypeArg::NodePort => ServiceType::NodePort,
        }
    }
}
