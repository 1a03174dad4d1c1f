//! Every annotation, label, finalizer and field-manager string volsync-dr uses, in one place.

/// Prefix of every annotation and label volsync-dr reads or writes.
pub const PREFIX: &str = "volsync-dr.io/";

// --- Set by the user (or by a policy through the webhook) ---
pub const PROTECT: &str = "volsync-dr.io/protect";
pub const SCHEDULE: &str = "volsync-dr.io/schedule";
pub const PEER: &str = "volsync-dr.io/peer";
pub const DESTINATION_STORAGE_CLASS: &str = "volsync-dr.io/destination-storage-class";
pub const VOLUME_SNAPSHOT_CLASS: &str = "volsync-dr.io/volume-snapshot-class";
pub const DESTINATION_VOLUME_SNAPSHOT_CLASS: &str = "volsync-dr.io/destination-volume-snapshot-class";
pub const COPY_METHOD: &str = "volsync-dr.io/copy-method";
pub const SERVICE_TYPE: &str = "volsync-dr.io/service-type";
pub const ACTION: &str = "volsync-dr.io/action";
/// The application group a PVC belongs to besides the workloads it shares (an app and its
/// database): PVCs of one namespace with the same value move together.
pub const GROUP: &str = "volsync-dr.io/group";
/// The recovery point age not to pass (the RPO alert's threshold): a duration such as `30m`.
pub const RPO_TARGET: &str = "volsync-dr.io/rpo-target";
/// How many synced images the secondary keeps as VolumeSnapshots (restore points).
pub const RESTORE_POINTS: &str = "volsync-dr.io/restore-points";
/// The kept point a `failover` restores: a snapshot name or a sync time.
pub const RESTORE_POINT: &str = "volsync-dr.io/restore-point";

// --- Written by volsync-dr ---
pub const ROLE: &str = "volsync-dr.io/role";
pub const STATE: &str = "volsync-dr.io/state";
pub const LAST_SYNC_TIME: &str = "volsync-dr.io/last-sync-time";
pub const LAST_SYNC_DURATION: &str = "volsync-dr.io/last-sync-duration";
pub const NEXT_SYNC_TIME: &str = "volsync-dr.io/next-sync-time";
pub const LAST_ACTION: &str = "volsync-dr.io/last-action";
pub const ACTION_PHASE: &str = "volsync-dr.io/action-phase";
pub const ACTION_STEP: &str = "volsync-dr.io/action-step";
pub const ACTION_MESSAGE: &str = "volsync-dr.io/action-message";
/// When the current step started (RFC 3339): its timeout survives a restart.
pub const ACTION_STEP_STARTED: &str = "volsync-dr.io/action-step-started";
/// The request an action engine is running (the `action` annotation may change meanwhile).
pub const ACTION_RUNNING: &str = "volsync-dr.io/action-running";
/// When the running action started (RFC 3339), for its duration.
pub const ACTION_STARTED: &str = "volsync-dr.io/action-started";
/// When the running action scaled the application down (RFC 3339), for the outage it caused.
pub const APP_DOWN_SINCE: &str = "volsync-dr.io/app-down-since";
/// On the PVC that carries a group's request: the other members of the group it acts on
/// (comma-separated), recorded when it starts so a restart acts on the same volumes.
pub const ACTION_MEMBERS: &str = "volsync-dr.io/action-members";
/// On every other member while a group's action runs: the request, and the PVC that runs it
/// (`GROUP_LEADER`). The member's own passes leave it to that action until it ends.
pub const GROUP_ACTION: &str = "volsync-dr.io/group-action";
pub const GROUP_LEADER: &str = "volsync-dr.io/group-leader";
/// On a Namespace running a request: the PVCs that run it, one per application group
/// (comma-separated), and the groups it skipped, with why.
/// The pair's takeover generation: a failover records one more than the pair had; migrate and
/// failback give both sides the same. Of two primaries, the lower generation is stale.
pub const TAKEOVER_GENERATION: &str = "volsync-dr.io/takeover-generation";
/// On a fenced PVC: what happened and what to do.
pub const FENCED: &str = "volsync-dr.io/fenced";
/// On a PVC whose data a failback replaced: the VolumeSnapshots that keep what it held before
/// (comma-separated), never deleted by volsync-dr. On those snapshots: `KEPT_COPY=true`.
pub const KEPT_COPIES: &str = "volsync-dr.io/kept-copies";
pub const KEPT_COPY: &str = "volsync-dr.io/kept-copy";
pub const ACTION_GROUPS: &str = "volsync-dr.io/action-groups";
pub const ACTION_SKIPPED: &str = "volsync-dr.io/action-skipped";
/// How long the running action kept the application down, once it is back (seconds).
pub const APP_DOWN_SECONDS: &str = "volsync-dr.io/app-down-seconds";
/// On a Deployment or StatefulSet: the replica count volsync-dr restores when it scales the
/// workload up (recorded when it scaled it down; a user may set it on a standby workload to
/// say how many replicas a failover starts).
pub const REPLICAS: &str = "volsync-dr.io/replicas";
/// The DRPolicy that protects this PVC (set by the webhook or the sweep, not by users).
pub const POLICY: &str = "volsync-dr.io/policy";
/// What that policy wrote, as a JSON object of annotation names (without the prefix) to values.
/// An annotation whose value still equals this record belongs to the policy; any other value
/// was set by someone else and wins over the policy.
pub const POLICY_APPLIED: &str = "volsync-dr.io/policy-applied";
/// Full name of the application PVC on every object created for it (the label may be hashed).
pub const PVC_NAME: &str = "volsync-dr.io/pvc-name";
/// On the secondary PVC: its kept restore points, newest first, `TIME=SNAPSHOT` comma-separated.
pub const RESTORE_POINTS_KEPT: &str = "volsync-dr.io/restore-points-kept";
/// On a kept restore point: when the sync that made it completed.
pub const SYNCED_AT: &str = "volsync-dr.io/synced-at";
/// On a PSK Secret: when its key was made by a rotation (else its creation time says).
pub const KEY_CREATED: &str = "volsync-dr.io/key-created";

/// Annotations a user (or a policy) may set; everything else under the prefix is ours.
pub const USER_ANNOTATIONS: &[&str] = &[
    PROTECT,
    SCHEDULE,
    PEER,
    DESTINATION_STORAGE_CLASS,
    VOLUME_SNAPSHOT_CLASS,
    DESTINATION_VOLUME_SNAPSHOT_CLASS,
    COPY_METHOD,
    SERVICE_TYPE,
    ACTION,
    GROUP,
    RPO_TARGET,
    RESTORE_POINTS,
    RESTORE_POINT,
];

/// The status a protected PVC shows, and that is removed when it is no longer protected.
pub const SHOWN_STATUS: &[&str] = &[ROLE, STATE, LAST_SYNC_TIME, LAST_SYNC_DURATION, NEXT_SYNC_TIME];

/// Annotations volsync-dr writes as status.
pub const STATUS_ANNOTATIONS: &[&str] = &[
    ROLE,
    STATE,
    LAST_SYNC_TIME,
    LAST_SYNC_DURATION,
    NEXT_SYNC_TIME,
    LAST_ACTION,
    ACTION_PHASE,
    ACTION_STEP,
    ACTION_MESSAGE,
    ACTION_STEP_STARTED,
    ACTION_RUNNING,
    ACTION_STARTED,
    APP_DOWN_SINCE,
    APP_DOWN_SECONDS,
    ACTION_MEMBERS,
    GROUP_ACTION,
    GROUP_LEADER,
    TAKEOVER_GENERATION,
    FENCED,
    KEPT_COPIES,
    PVC_NAME,
    POLICY,
    POLICY_APPLIED,
    RESTORE_POINTS_KEPT,
];

/// Bookkeeping of a running action, removed when it finishes.
pub const ACTION_BOOKKEEPING: &[&str] = &[
    ACTION_STEP,
    ACTION_STEP_STARTED,
    ACTION_RUNNING,
    ACTION_STARTED,
    APP_DOWN_SINCE,
    APP_DOWN_SECONDS,
    ACTION_MEMBERS,
];

// --- Labels ---
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "volsync-dr";
/// Label on every object created for a PVC; value is the PVC name, shortened to 63 characters.
pub const PVC_LABEL: &str = "volsync-dr.io/pvc";
pub const PROTECTED_LABEL: &str = "volsync-dr.io/protected";
/// VolSync's mark on PVCs and snapshots it created itself.
pub const CREATED_BY: &str = "app.kubernetes.io/created-by";
pub const CREATED_BY_VOLSYNC: &str = "volsync";
/// VolSync keeps a snapshot carrying this label when its RD is deleted.
pub const VOLSYNC_DO_NOT_DELETE: &str = "volsync.backube/do-not-delete";
/// Label on the VolumeSnapshots kept as restore points (so no other cleanup selects them).
pub const RESTORE_POINT_LABEL: &str = "volsync-dr.io/restore-point";

// --- Other ---
pub const FINALIZER: &str = "volsync-dr.io/protection";
pub const FIELD_MANAGER: &str = "volsync-dr";
/// Key of the pre-shared key in the Secret, as VolSync's rsync-tls mover expects it.
pub const PSK_KEY: &str = "psk.txt";
/// Identity part of the `<id>:<hex>` pre-shared key.
pub const PSK_IDENTITY: &str = "volsync-dr";
