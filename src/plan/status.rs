//! The status a PVC shows in its annotations, computed from what was observed, and the patch
//! that brings the PVC there (none when it already shows it, so an unchanged PVC is not written).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use serde_json::{Map, Value, json};

use crate::model::keys;
use crate::model::role::{Role, State};
use crate::model::schedule::Schedule;
use crate::model::volsync::{ReplicationDestination, ReplicationSource, SyncStatus};

/// Sync times mirrored from VolSync's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncTimes {
    pub last_sync_time: Option<String>,
    pub last_sync_duration: Option<String>,
    pub next_sync_time: Option<String>,
}

impl SyncTimes {
    pub fn from_source(rs: &ReplicationSource) -> Self {
        rs.status.as_ref().map(|s| Self::from_sync(&s.sync)).unwrap_or_default()
    }

    pub fn from_destination(rd: &ReplicationDestination) -> Self {
        rd.status.as_ref().map(|s| Self::from_sync(&s.sync)).unwrap_or_default()
    }

    fn from_sync(s: &SyncStatus) -> Self {
        SyncTimes {
            last_sync_time: s.last_sync_time.as_ref().map(|t| t.0.to_string()),
            last_sync_duration: s.last_sync_duration.clone(),
            next_sync_time: s.next_sync_time.as_ref().map(|t| t.0.to_string()),
        }
    }
}

/// Everything the status annotations say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusView {
    pub role: Role,
    pub state: State,
    pub sync: SyncTimes,
}

/// A JSON merge patch setting the status annotations to `view`, or `None` if they already are.
/// Sync times VolSync has not reported yet are removed rather than left stale.
pub fn status_patch(current: &BTreeMap<String, String>, view: &StatusView) -> Option<Value> {
    let wanted: [(&str, Option<&str>); 5] = [
        (keys::ROLE, Some(view.role.as_str())),
        (keys::STATE, Some(view.state.as_str())),
        (keys::LAST_SYNC_TIME, view.sync.last_sync_time.as_deref()),
        (keys::LAST_SYNC_DURATION, view.sync.last_sync_duration.as_deref()),
        (keys::NEXT_SYNC_TIME, view.sync.next_sync_time.as_deref()),
    ];
    annotations_patch(current, &wanted)
}

/// A merge patch that removes volsync-dr's status (for a PVC no longer protected), if any is there.
pub fn clear_status_patch(current: &BTreeMap<String, String>) -> Option<Value> {
    let wanted: Vec<(&str, Option<&str>)> = keys::SHOWN_STATUS.iter().map(|k| (*k, None)).collect();
    annotations_patch(current, &wanted)
}

fn annotations_patch(current: &BTreeMap<String, String>, wanted: &[(&str, Option<&str>)]) -> Option<Value> {
    let mut changes = Map::new();
    for (key, value) in wanted {
        if current.get(*key).map(String::as_str) != *value {
            changes.insert(key.to_string(), value.map_or(Value::Null, |v| json!(v)));
        }
    }
    (!changes.is_empty()).then(|| json!({"metadata": {"annotations": changes}}))
}

/// The recovery point age a PVC should stay under: its `volsync-dr.io/rpo-target`, else twice
/// its schedule's longest interval. A value the webhook would refuse counts as unset here: the
/// alert still has a threshold.
pub fn rpo_target(annotations: &BTreeMap<String, String>) -> Option<std::time::Duration> {
    if let Some(target) = annotations
        .get(keys::RPO_TARGET)
        .and_then(|v| crate::model::protection::rpo_target(v).ok())
    {
        return Some(target);
    }
    let schedule = annotations
        .get(keys::SCHEDULE)
        .and_then(|s| s.parse::<Schedule>().ok())
        .unwrap_or_default();
    schedule.longest_interval().map(|gap| gap * 2)
}

/// The address of a peer node for NodePort: a Ready node's ExternalIP, else its InternalIP;
/// nodes are taken in name order so the choice is stable.
pub fn pick_node_address(nodes: &[Node]) -> Option<String> {
    let mut ready: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let address_of = |kind: &str| {
        ready.iter().find_map(|n| {
            n.status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == kind)
                .map(|a| a.address.clone())
        })
    };
    address_of("ExternalIP").or_else(|| address_of("InternalIP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn view(state: State, last: Option<&str>) -> StatusView {
        StatusView {
            role: Role::Primary,
            state,
            sync: SyncTimes {
                last_sync_time: last.map(str::to_string),
                last_sync_duration: last.map(|_| "1.5s".to_string()),
                next_sync_time: None,
            },
        }
    }

    #[test]
    fn patch_only_what_differs() {
        let cases: Vec<(BTreeMap<String, String>, StatusView, Option<Value>)> = vec![
            (
                current(&[]),
                view(State::Pending, None),
                Some(json!({"metadata": {"annotations": {keys::ROLE: "primary", keys::STATE: "Pending"}}})),
            ),
            (
                current(&[(keys::ROLE, "primary"), (keys::STATE, "Pending")]),
                view(State::Pending, None),
                None,
            ),
            (
                current(&[(keys::ROLE, "primary"), (keys::STATE, "Pending")]),
                view(State::Protected, Some("2026-11-24T10:00:00Z")),
                Some(json!({"metadata": {"annotations": {keys::STATE: "Protected",
                    keys::LAST_SYNC_TIME: "2026-11-24T10:00:00Z", keys::LAST_SYNC_DURATION: "1.5s"}}})),
            ),
            (
                current(&[
                    (keys::ROLE, "primary"),
                    (keys::STATE, "Protected"),
                    (keys::NEXT_SYNC_TIME, "stale"),
                    ("other", "x"),
                ]),
                view(State::Protected, None),
                Some(json!({"metadata": {"annotations": {keys::NEXT_SYNC_TIME: null}}})),
            ),
        ];
        for (cur, v, want) in cases {
            assert_eq!(status_patch(&cur, &v), want, "{cur:?} {v:?}");
        }
    }

    #[test]
    fn the_rpo_target_is_the_annotation_else_twice_the_longest_interval() {
        let minutes = |m: u64| Some(std::time::Duration::from_secs(m * 60));
        let cases = [
            ("default schedule (every 10 minutes)", vec![], minutes(20)),
            ("hourly", vec![(keys::SCHEDULE, "0 * * * *")], minutes(120)),
            (
                "uneven: 9:00 and 17:00, the 16 h night counts",
                vec![(keys::SCHEDULE, "0 9,17 * * *")],
                minutes(32 * 60),
            ),
            (
                "set",
                vec![(keys::SCHEDULE, "0 * * * *"), (keys::RPO_TARGET, "45m")],
                minutes(45),
            ),
            ("compound", vec![(keys::RPO_TARGET, "1h30m")], minutes(90)),
            ("days", vec![(keys::RPO_TARGET, "1d")], minutes(24 * 60)),
            (
                "refused value: the schedule's",
                vec![(keys::RPO_TARGET, "soon")],
                minutes(20),
            ),
            (
                "too short: the schedule's",
                vec![(keys::RPO_TARGET, "10s")],
                minutes(20),
            ),
        ];
        for (case, pairs, want) in cases {
            assert_eq!(rpo_target(&current(&pairs)), want, "{case}");
        }
    }

    #[test]
    fn clearing_status() {
        assert_eq!(clear_status_patch(&current(&[("other", "x")])), None);
        assert_eq!(
            clear_status_patch(&current(&[(keys::ROLE, "secondary"), (keys::STATE, "Protected")])),
            Some(json!({"metadata": {"annotations": {keys::ROLE: null, keys::STATE: null}}}))
        );
    }

    #[test]
    fn node_address_prefers_ready_external() {
        let node = |name: &str, ready: bool, addrs: &[(&str, &str)]| -> Node {
            serde_json::from_value(json!({"metadata": {"name": name}, "status": {
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                "addresses": addrs.iter().map(|(t, a)| json!({"type": t, "address": a})).collect::<Vec<_>>()}}))
            .expect("node")
        };
        let cases = vec![
            (vec![], None),
            (vec![node("a", false, &[("ExternalIP", "1.1.1.1")])], None),
            (vec![node("a", true, &[("InternalIP", "10.0.0.1")])], Some("10.0.0.1")),
            (
                vec![
                    node("b", true, &[("InternalIP", "10.0.0.2")]),
                    node("a", true, &[("InternalIP", "10.0.0.1")]),
                ],
                Some("10.0.0.1"),
            ),
            (
                vec![
                    node("a", true, &[("InternalIP", "10.0.0.1")]),
                    node("b", true, &[("ExternalIP", "203.0.113.2"), ("InternalIP", "10.0.0.2")]),
                ],
                Some("203.0.113.2"),
            ),
        ];
        for (nodes, want) in cases {
            assert_eq!(pick_node_address(&nodes).as_deref(), want);
        }
    }
}
