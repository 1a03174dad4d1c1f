//! The user contract: `volsync-dr.io/*` annotations parsed into typed settings.
//!
//! The webhook and the controller both call [`ProtectionSpec::parse`], so admission and
//! reconciliation can never disagree on what an annotation means. It is pure and allocation-light:
//! it runs on the admission fast path.

use std::collections::BTreeMap;
use std::fmt;

use super::action::{self, ActionRequest};
use super::keys;
use super::role::Role;
use super::schedule::{self, Schedule};
use super::volsync::{CopyMethod, ServiceType};

/// What the annotations on one PVC say. `None` means the annotation is absent, so defaults
/// (a policy, then the instance) decide.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProtectionSpec {
    pub protect: Option<bool>,
    pub schedule: Option<Schedule>,
    pub peer: Option<String>,
    pub destination_storage_class: Option<String>,
    pub volume_snapshot_class: Option<String>,
    pub destination_volume_snapshot_class: Option<String>,
    pub copy_method: Option<CopyMethod>,
    pub service_type: Option<ServiceType>,
    pub action: Option<ActionRequest>,
    /// The explicit application group (`volsync-dr.io/group`).
    pub group: Option<String>,
    /// The recovery point age not to pass (`volsync-dr.io/rpo-target`).
    pub rpo_target: Option<std::time::Duration>,
    /// How many synced images the secondary keeps (`volsync-dr.io/restore-points`).
    pub restore_points: Option<u32>,
    /// The kept point a failover restores: a snapshot name or a sync time.
    pub restore_point: Option<String>,
    /// Written by volsync-dr, but read back to decide who is primary.
    pub role: Option<Role>,
}

/// One refused annotation: which one, its value, and what it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationError {
    pub key: String,
    pub value: String,
    pub problem: String,
    pub accepted: String,
}

impl fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "annotation {}={:?} is invalid: {}; accepted: {}",
            self.key, self.value, self.problem, self.accepted
        )
    }
}

/// Every refused annotation on an object, in key order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct AnnotationErrors(pub Vec<AnnotationError>);

impl fmt::Display for AnnotationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_joined(f, &self.0)
    }
}

/// Every problem of a list on one line, separated by "; ".
pub(crate) fn write_joined<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

const BOOL_ACCEPTED: &str = "\"true\" or \"false\"";
const COPY_METHODS: &[CopyMethod] = &[CopyMethod::Snapshot, CopyMethod::Clone, CopyMethod::Direct];
const COPY_METHOD_ACCEPTED: &str = "Snapshot, Clone or Direct";
const SERVICE_TYPES: &[ServiceType] = &[ServiceType::ClusterIP, ServiceType::LoadBalancer, ServiceType::NodePort];
const SERVICE_TYPE_ACCEPTED: &str = "ClusterIP, LoadBalancer or NodePort";
const ROLE_ACCEPTED: &str = "primary, secondary or fenced";
const CLASS_ACCEPTED: &str = "a Kubernetes object name: up to 253 lowercase letters, digits, '-' or '.', \
     starting and ending with a letter or digit";
const PEER_ACCEPTED: &str = "a cluster name: up to 63 lowercase letters, digits or '-', \
     starting and ending with a letter or digit";
const RPO_TARGET_ACCEPTED: &str = "a duration from 1m to 90d, such as 30m, 2h, 1h30m or 1d";
/// The most restore points a PVC keeps: each is a VolumeSnapshot of the whole volume.
pub const MAX_RESTORE_POINTS: u32 = 30;
const RESTORE_POINTS_ACCEPTED: &str = "a whole number from 1 to 30";
const RESTORE_POINT_ACCEPTED: &str = "the name of a kept restore point (a VolumeSnapshot) or its sync time \
     (RFC 3339, e.g. 2026-12-03T09:00:00Z), as `volsync-dr status` lists them";
const GROUP_ACCEPTED: &str = "a group name: up to 63 lowercase letters, digits or '-', \
     starting and ending with a letter or digit";

impl ProtectionSpec {
    /// Parse every `volsync-dr.io/*` annotation; other annotations are ignored.
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, AnnotationErrors> {
        let mut spec = ProtectionSpec::default();
        let mut errors = Vec::new();
        for (key, value) in annotations.range(keys::PREFIX.to_string()..) {
            if !key.starts_with(keys::PREFIX) {
                break;
            }
            if let Err((problem, accepted)) = spec.set(key, value) {
                errors.push(AnnotationError {
                    key: key.clone(),
                    value: value.clone(),
                    problem,
                    accepted: accepted.to_string(),
                });
            }
        }
        if errors.is_empty() {
            Ok(spec)
        } else {
            Err(AnnotationErrors(errors))
        }
    }

    /// Whether the PVC asks to be protected.
    pub fn is_protected(&self) -> bool {
        self.protect == Some(true)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), (String, &'static str)> {
        match key {
            keys::PROTECT => self.protect = Some(parse_bool(value)?),
            keys::SCHEDULE => {
                self.schedule = Some(
                    value
                        .parse()
                        .map_err(|e: schedule::ScheduleError| (e.to_string(), schedule::ACCEPTED))?,
                )
            }
            keys::PEER => self.peer = Some(dns_label(value).map_err(|p| (p, PEER_ACCEPTED))?),
            keys::GROUP => self.group = Some(dns_label(value).map_err(|p| (p, GROUP_ACCEPTED))?),
            keys::RPO_TARGET => self.rpo_target = Some(rpo_target(value).map_err(|p| (p, RPO_TARGET_ACCEPTED))?),
            keys::RESTORE_POINTS => {
                self.restore_points = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_RESTORE_POINTS).contains(n))
                        .ok_or_else(|| ("not a whole number from 1 to 30".to_string(), RESTORE_POINTS_ACCEPTED))?,
                )
            }
            keys::RESTORE_POINT => {
                let is_time = value.parse::<jiff::Timestamp>().is_ok();
                let is_name = class_name(value).is_ok();
                if !is_time && !is_name {
                    return Err(("neither a snapshot name nor a time".to_string(), RESTORE_POINT_ACCEPTED));
                }
                self.restore_point = Some(value.to_string())
            }
            keys::DESTINATION_STORAGE_CLASS => self.destination_storage_class = Some(class_name(value)?),
            keys::VOLUME_SNAPSHOT_CLASS => self.volume_snapshot_class = Some(class_name(value)?),
            keys::DESTINATION_VOLUME_SNAPSHOT_CLASS => {
                self.destination_volume_snapshot_class = Some(class_name(value)?)
            }
            keys::COPY_METHOD => {
                self.copy_method = Some(one_of(value, COPY_METHODS, |c| c.as_str(), COPY_METHOD_ACCEPTED)?)
            }
            keys::SERVICE_TYPE => {
                self.service_type = Some(one_of(value, SERVICE_TYPES, |s| s.as_str(), SERVICE_TYPE_ACCEPTED)?)
            }
            keys::ACTION => {
                self.action = Some(
                    value
                        .parse()
                        .map_err(|e: action::ActionError| (e.to_string(), action::ACCEPTED))?,
                )
            }
            keys::ROLE => {
                self.role = Some(one_of(
                    value,
                    &[Role::Primary, Role::Secondary, Role::Fenced],
                    |r| r.as_str(),
                    ROLE_ACCEPTED,
                )?)
            }
            // Status annotations are ours and free text; they carry no settings.
            k if keys::STATUS_ANNOTATIONS.contains(&k) => {}
            _ => return Err(("unknown volsync-dr annotation".to_string(), known_keys())),
        }
        Ok(())
    }
}

fn known_keys() -> &'static str {
    "protect, schedule, peer, destination-storage-class, volume-snapshot-class, \
     destination-volume-snapshot-class, copy-method, service-type, action, group, rpo-target, restore-points, \
     restore-point (prefixed volsync-dr.io/)"
}

/// Why a duration was refused: not one at all, or outside the accepted range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    NotADuration(Option<String>),
    OutOfRange,
}

/// A duration in whole units (`90s`, `30m`, `2h`, `1h30m`, `1d`, days of 24 hours) within
/// `min_seconds..=max_seconds`: the one parser of every duration setting.
pub fn duration_within(value: &str, min_seconds: f64, max_seconds: f64) -> Result<std::time::Duration, DurationError> {
    let span: jiff::Span = value.parse().map_err(|_| DurationError::NotADuration(None))?;
    let seconds = span
        .total((jiff::Unit::Second, jiff::SpanRelativeTo::days_are_24_hours()))
        .map_err(|e| DurationError::NotADuration(Some(e.to_string())))?;
    if !(min_seconds..=max_seconds).contains(&seconds) {
        return Err(DurationError::OutOfRange);
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// A duration from 1 minute to 90 days (`rpo-target`).
pub fn rpo_target(value: &str) -> Result<std::time::Duration, String> {
    duration_within(value, 60.0, 90.0 * 86_400.0).map_err(|e| match e {
        DurationError::NotADuration(None) => "not a duration such as 30m, 2h or 1h30m".to_string(),
        DurationError::NotADuration(Some(why)) => format!("not a duration: {why}"),
        DurationError::OutOfRange => "out of range".to_string(),
    })
}

fn parse_bool(value: &str) -> Result<bool, (String, &'static str)> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(("not a boolean".to_string(), BOOL_ACCEPTED)),
    }
}

fn one_of<T: Copy>(
    value: &str,
    options: &[T],
    name: impl Fn(T) -> &'static str,
    accepted: &'static str,
) -> Result<T, (String, &'static str)> {
    options
        .iter()
        .copied()
        .find(|o| name(*o) == value)
        .ok_or_else(|| ("unknown value".to_string(), accepted))
}

/// A class (StorageClass, VolumeSnapshotClass) name, or what is wrong and what is accepted.
pub(crate) fn class_name(value: &str) -> Result<String, (String, &'static str)> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(value.to_string())
    } else {
        Err(("not a valid name".to_string(), CLASS_ACCEPTED))
    }
}

/// A DNS label (RFC 1123), the shape of a cluster name.
pub fn dns_label(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(value.to_string())
    } else {
        Err("not a valid cluster name".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::action::Verb;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_every_setting() {
        let spec = ProtectionSpec::parse(&annotations(&[
            (keys::PROTECT, "true"),
            (keys::SCHEDULE, "0 * * * *"),
            (keys::PEER, "cluster-b"),
            (keys::DESTINATION_STORAGE_CLASS, "sc-cephfs"),
            (keys::VOLUME_SNAPSHOT_CLASS, "csi-cephfs-snapshotclass"),
            (keys::DESTINATION_VOLUME_SNAPSHOT_CLASS, "csi.snap-b"),
            (keys::COPY_METHOD, "Clone"),
            (keys::SERVICE_TYPE, "NodePort"),
            (keys::ACTION, "migrate:1"),
            (keys::GROUP, "shop"),
            (keys::ROLE, "primary"),
            (keys::STATE, "Protected"),
            ("unrelated.io/x", "anything"),
        ]))
        .expect("valid");
        assert_eq!(spec.group.as_deref(), Some("shop"));
        assert!(spec.is_protected());
        assert_eq!(spec.schedule.as_ref().map(Schedule::as_str), Some("0 * * * *"));
        assert_eq!(spec.peer.as_deref(), Some("cluster-b"));
        assert_eq!(spec.destination_storage_class.as_deref(), Some("sc-cephfs"));
        assert_eq!(spec.volume_snapshot_class.as_deref(), Some("csi-cephfs-snapshotclass"));
        assert_eq!(spec.destination_volume_snapshot_class.as_deref(), Some("csi.snap-b"));
        assert_eq!(spec.copy_method, Some(CopyMethod::Clone));
        assert_eq!(spec.service_type, Some(ServiceType::NodePort));
        assert_eq!(spec.action.as_ref().map(|a| a.verb), Some(Verb::Migrate));
        assert_eq!(spec.role, Some(Role::Primary));
    }

    #[test]
    fn every_enum_value() {
        for (text, method) in [
            ("Snapshot", CopyMethod::Snapshot),
            ("Clone", CopyMethod::Clone),
            ("Direct", CopyMethod::Direct),
        ] {
            let spec = ProtectionSpec::parse(&annotations(&[(keys::COPY_METHOD, text)])).expect(text);
            assert_eq!(spec.copy_method, Some(method));
        }
        for (text, ty) in [
            ("ClusterIP", ServiceType::ClusterIP),
            ("LoadBalancer", ServiceType::LoadBalancer),
            ("NodePort", ServiceType::NodePort),
        ] {
            let spec = ProtectionSpec::parse(&annotations(&[(keys::SERVICE_TYPE, text)])).expect(text);
            assert_eq!(spec.service_type, Some(ty));
        }
        for (text, minutes) in [("30m", 30), ("2h", 120), ("1h30m", 90), ("1d", 1440), ("90s", 1)] {
            let spec = ProtectionSpec::parse(&annotations(&[(keys::RPO_TARGET, text)])).expect(text);
            assert_eq!(spec.rpo_target.map(|d| d.as_secs() / 60), Some(minutes), "{text}");
        }
        for (text, protect) in [("true", true), ("false", false)] {
            let spec = ProtectionSpec::parse(&annotations(&[(keys::PROTECT, text)])).expect(text);
            assert_eq!(spec.protect, Some(protect));
        }
    }

    #[test]
    fn errors_name_annotation_value_and_accepted() {
        let cases: &[(&str, &str, &str)] = &[
            (keys::PROTECT, "yes", "\"true\" or \"false\""),
            (keys::SCHEDULE, "0 */5 * * * *", "five cron fields"),
            (keys::COPY_METHOD, "None", "Snapshot, Clone or Direct"),
            (keys::COPY_METHOD, "snapshot", "Snapshot, Clone or Direct"),
            (
                keys::SERVICE_TYPE,
                "ExternalName",
                "ClusterIP, LoadBalancer or NodePort",
            ),
            (keys::SERVICE_TYPE, "Ingress", "ClusterIP, LoadBalancer or NodePort"),
            (keys::ACTION, "reboot", "sync-now, migrate, failover, failback"),
            (keys::PEER, "Cluster_B", "a cluster name"),
            (keys::GROUP, "Shop App", "a group name"),
            (keys::DESTINATION_STORAGE_CLASS, "SC!", "a Kubernetes object name"),
            (keys::ROLE, "leader", "primary, secondary or fenced"),
            (keys::RPO_TARGET, "soon", "a duration from 1m to 90d"),
            (keys::RPO_TARGET, "30", "a duration from 1m to 90d"),
            (keys::RPO_TARGET, "30s", "a duration from 1m to 90d"),
            (keys::RPO_TARGET, "100d", "a duration from 1m to 90d"),
            (keys::RESTORE_POINTS, "0", "a whole number from 1 to 30"),
            (keys::RESTORE_POINTS, "31", "a whole number from 1 to 30"),
            (keys::RESTORE_POINTS, "three", "a whole number from 1 to 30"),
            (keys::RESTORE_POINT, "Yesterday!", "the name of a kept restore point"),
            ("volsync-dr.io/shedule", "0 * * * *", "protect, schedule"),
        ];
        for (key, value, accepted) in cases {
            let err = ProtectionSpec::parse(&annotations(&[(key, value)])).expect_err(key);
            let text = err.to_string();
            assert!(text.contains(key), "{text}");
            assert!(text.contains(&format!("{value:?}")), "{text}");
            assert!(text.contains(accepted), "{text}");
        }
    }

    #[test]
    fn restore_points_and_a_chosen_point() {
        for (n, want) in [("1", 1), ("3", 3), ("30", 30)] {
            let spec = ProtectionSpec::parse(&annotations(&[(keys::RESTORE_POINTS, n)])).expect(n);
            assert_eq!(spec.restore_points, Some(want));
        }
        for point in ["volsync-rd-db-dst-20261203091724900", "2026-12-03T09:00:00Z"] {
            let spec = ProtectionSpec::parse(&annotations(&[(keys::RESTORE_POINT, point)])).expect(point);
            assert_eq!(spec.restore_point.as_deref(), Some(point));
        }
    }

    #[test]
    fn reports_all_bad_annotations_at_once() {
        let err = ProtectionSpec::parse(&annotations(&[
            (keys::SCHEDULE, "bad"),
            (keys::SERVICE_TYPE, "bad"),
            (keys::PROTECT, "true"),
        ]))
        .expect_err("two bad");
        assert_eq!(err.0.len(), 2);
        assert_eq!(err.0[0].key, keys::SCHEDULE);
        assert_eq!(err.0[1].key, keys::SERVICE_TYPE);
    }

    #[test]
    fn no_annotations_is_unprotected() {
        let spec = ProtectionSpec::parse(&BTreeMap::new()).expect("empty");
        assert_eq!(spec, ProtectionSpec::default());
        assert!(!spec.is_protected());
    }
}
