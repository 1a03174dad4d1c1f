//! What `volsync-dr status` shows, decided purely: protected PVCs (as read from both clusters)
//! in, rows and their table, JSON or YAML out.

pub mod doctor;
pub mod startup;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde::Serialize;

use crate::model::group::{Member, members_with};
use crate::model::keys;
use crate::model::progress::Progress;
use crate::model::workload::Claims;

/// One protected PVC on one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub cluster: String,
    pub namespace: String,
    pub pvc: String,
    pub role: String,
    pub peer: String,
    pub state: String,
    pub last_sync: Option<String>,
    /// Seconds since the last sync (the recovery point's age), when there was one.
    pub rpo_seconds: Option<i64>,
    pub action: Option<String>,
    pub step: Option<String>,
    pub policy: Option<String>,
    /// The application group it moves with, when it has other members.
    pub group: Option<String>,
    /// The group's recovery point's age: its oldest member's last sync.
    pub group_rpo_seconds: Option<i64>,
    /// VolumeSnapshots of this copy taken before a failback overwrote it (what it held after
    /// the split); volsync-dr never deletes them.
    pub kept_copies: Vec<String>,
    /// The restore points this (secondary) copy keeps, newest first: sync time and snapshot.
    pub restore_points: Vec<RestorePointRow>,
    /// Seconds since the pair's key was made (a rotation, or protection), on the cluster whose
    /// Secret was read.
    pub key_age_seconds: Option<i64>,
}

/// One kept restore point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestorePointRow {
    pub synced_at: String,
    pub snapshot: String,
}

/// An application group of more than one PVC on one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRow {
    pub cluster: String,
    pub namespace: String,
    /// Its explicit `volsync-dr.io/group`, else the workloads it is used by.
    pub group: String,
    /// Sorted; an unprotected member is marked, since an action on the group is refused then.
    pub members: Vec<String>,
    /// Seconds since the oldest member's last sync; `None` while a member has none.
    pub rpo_seconds: Option<i64>,
}

fn last_sync_age(pvc: &PersistentVolumeClaim, now: jiff::Timestamp) -> Option<i64> {
    pvc.metadata
        .annotations
        .as_ref()?
        .get(keys::LAST_SYNC_TIME)?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| now.duration_since(t).as_secs().max(0))
}

fn is_protected(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(keys::PROTECT))
        .is_some_and(|v| v == "true")
}

/// The groups of more than one PVC that a protected PVC of this cluster belongs to (see
/// `model::group::members_with`), from the cluster's PVCs and workloads.
pub fn groups(
    cluster: &str,
    pvcs: &[PersistentVolumeClaim],
    workloads: &BTreeMap<String, Vec<Claims>>,
    now: jiff::Timestamp,
) -> Vec<GroupRow> {
    let mut by_namespace: BTreeMap<&str, Vec<&PersistentVolumeClaim>> = BTreeMap::new();
    for pvc in pvcs {
        by_namespace
            .entry(pvc.metadata.namespace.as_deref().unwrap_or_default())
            .or_default()
            .push(pvc);
    }
    let none = Vec::new();
    let mut out: Vec<GroupRow> = Vec::new();
    for (namespace, in_namespace) in by_namespace {
        let claims = workloads.get(namespace).unwrap_or(&none);
        let members: Vec<Member> = in_namespace
            .iter()
            .map(|p| Member {
                name: p.metadata.name.clone().unwrap_or_default(),
                group: p
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(keys::GROUP).cloned()),
            })
            .collect();
        for seed in in_namespace.iter().filter(|p| is_protected(p)) {
            let seed_name = seed.metadata.name.as_deref().unwrap_or_default();
            let names = members_with(seed_name, &members, claims);
            if names.len() < 2
                || out
                    .iter()
                    .any(|g| g.namespace == namespace && g.members.iter().any(|m| m == seed_name))
            {
                continue;
            }
            let of = |name: &String| in_namespace.iter().find(|p| p.metadata.name.as_ref() == Some(name));
            let explicit = names
                .iter()
                .filter_map(|n| members.iter().find(|m| &m.name == n)?.group.clone())
                .next();
            let group = explicit.unwrap_or_else(|| {
                let users: Vec<String> = claims
                    .iter()
                    .filter(|c| names.iter().any(|n| c.uses(n)))
                    .map(|c| c.workload.to_string())
                    .collect();
                users.join("+")
            });
            let protected: Vec<&PersistentVolumeClaim> = names
                .iter()
                .filter_map(of)
                .copied()
                .filter(|p| is_protected(p))
                .collect();
            let ages: Option<Vec<i64>> = protected.iter().map(|p| last_sync_age(p, now)).collect();
            out.push(GroupRow {
                cluster: cluster.to_string(),
                namespace: namespace.to_string(),
                group,
                members: names
                    .iter()
                    .map(|n| match of(n) {
                        Some(p) if is_protected(p) => n.clone(),
                        _ => format!("{n} (not protected)"),
                    })
                    .collect(),
                rpo_seconds: ages.and_then(|a| a.into_iter().max()),
            });
        }
    }
    out
}

/// Each row's group and the group's recovery point's age, from `groups` of the same clusters.
pub fn with_groups(mut rows: Vec<Row>, groups: &[GroupRow]) -> Vec<Row> {
    for row in &mut rows {
        if let Some(g) = groups
            .iter()
            .find(|g| g.cluster == row.cluster && g.namespace == row.namespace && g.members.contains(&row.pvc))
        {
            row.group = Some(g.group.clone());
            row.group_rpo_seconds = g.rpo_seconds;
        }
    }
    rows
}

/// The rows of one cluster's PVCs: those with `protect: "true"` (both sides of a pair carry it).
pub fn rows(cluster: &str, peer: &str, pvcs: &[PersistentVolumeClaim], now: jiff::Timestamp) -> Vec<Row> {
    let empty = BTreeMap::new();
    pvcs.iter()
        .filter_map(|pvc| {
            let a = pvc.metadata.annotations.as_ref().unwrap_or(&empty);
            if a.get(keys::PROTECT).map(String::as_str) != Some("true") {
                return None;
            }
            let get = |k: &str| a.get(k).cloned();
            let last_sync = get(keys::LAST_SYNC_TIME);
            let rpo_seconds = last_sync
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| now.duration_since(t).as_secs().max(0));
            let progress = Progress::read(a);
            let running = progress.in_flight().map(str::to_string);
            Some(Row {
                cluster: cluster.to_string(),
                namespace: pvc.metadata.namespace.clone().unwrap_or_default(),
                pvc: pvc.metadata.name.clone().unwrap_or_default(),
                role: get(keys::ROLE).unwrap_or_else(|| "primary".into()),
                peer: get(keys::PEER).unwrap_or_else(|| peer.to_string()),
                state: get(keys::STATE).unwrap_or_else(|| "Pending".into()),
                last_sync,
                rpo_seconds,
                step: running.as_ref().and(progress.step.clone()),
                action: running,
                policy: get(keys::POLICY),
                group: None,
                group_rpo_seconds: None,
                kept_copies: a
                    .get(keys::KEPT_COPIES)
                    .map(|v| v.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect())
                    .unwrap_or_default(),
                restore_points: a
                    .get(keys::RESTORE_POINTS_KEPT)
                    .map(|v| crate::plan::restore_points::parse_listed(v))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| RestorePointRow {
                        synced_at: p.synced_at,
                        snapshot: p.name,
                    })
                    .collect(),
                key_age_seconds: None,
            })
        })
        .collect()
}

/// Each row's key age, from when its cluster's key Secrets were made (by namespace and PVC).
pub fn with_key_ages(
    mut rows: Vec<Row>,
    cluster: &str,
    made: &BTreeMap<(String, String), jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Vec<Row> {
    for row in rows.iter_mut().filter(|r| r.cluster == cluster) {
        if let Some(t) = made.get(&(row.namespace.clone(), row.pvc.clone())) {
            row.key_age_seconds = Some(now.duration_since(*t).as_secs().max(0));
        }
    }
    rows
}

/// Both clusters' rows, a PVC's two sides next to each other.
pub fn merge(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| (&a.namespace, &a.pvc, &a.cluster).cmp(&(&b.namespace, &b.pvc, &b.cluster)));
    rows
}

/// `1d2h`, `3h4m`, `5m6s`, `7s`: short enough for a column.
pub fn age(seconds: i64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// The groups as a second table (empty when there is none).
pub fn group_table(groups: &[GroupRow]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let header = ["CLUSTER", "NAMESPACE", "GROUP", "RPO", "MEMBERS"].map(str::to_string);
    let cells: Vec<[String; 5]> = groups
        .iter()
        .map(|g| {
            [
                g.cluster.clone(),
                g.namespace.clone(),
                g.group.clone(),
                g.rpo_seconds.map(age).unwrap_or_else(|| "-".to_string()),
                g.members.join(", "),
            ]
        })
        .collect();
    aligned(&header, &cells)
}

/// The kept copies as a third table, with how to read one (empty when there is none).
pub fn kept_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .flat_map(|r| {
            r.kept_copies
                .iter()
                .map(|snapshot| [r.cluster.clone(), r.namespace.clone(), r.pvc.clone(), snapshot.clone()])
        })
        .collect();
    if cells.is_empty() {
        return String::new();
    }
    let header = ["CLUSTER", "NAMESPACE", "PVC", "KEPT COPY (VolumeSnapshot)"].map(str::to_string);
    aligned(&header, &cells)
        + "To read a kept copy, create a PVC on that cluster with spec.dataSource \
           {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: <KEPT COPY>}.\n"
}

/// The restore points as a fourth table, with how to fail over to one (empty when none is kept).
pub fn restore_point_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .flat_map(|r| {
            r.restore_points.iter().map(|p| {
                [
                    r.cluster.clone(),
                    r.namespace.clone(),
                    r.pvc.clone(),
                    p.synced_at.clone(),
                    p.snapshot.clone(),
                ]
            })
        })
        .collect();
    if cells.is_empty() {
        return String::new();
    }
    let header = [
        "CLUSTER",
        "NAMESPACE",
        "PVC",
        "SYNCED",
        "RESTORE POINT (VolumeSnapshot)",
    ]
    .map(str::to_string);
    aligned(&header, &cells)
        + "To fail over to one, annotate that PVC with volsync-dr.io/restore-point=<RESTORE POINT or SYNCED> \
           and volsync-dr.io/action=failover:<ID>.\n"
}

/// Columns padded to their widest cell, the last one unpadded.
fn aligned<const N: usize>(header: &[String; N], cells: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String; N]| {
        let mut out = String::new();
        for (i, (c, w)) in cols.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

/// A table as kubectl prints one: upper-case headers, columns padded to their widest cell.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "CLUSTER",
        "NAMESPACE",
        "PVC",
        "GROUP",
        "ROLE",
        "PEER",
        "STATE",
        "LAST SYNC",
        "RPO",
        "KEY AGE",
        "ACTION",
        "STEP",
    ];
    let dash = || "-".to_string();
    let cells: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                r.cluster.clone(),
                r.namespace.clone(),
                r.pvc.clone(),
                r.group.clone().unwrap_or_else(dash),
                r.role.clone(),
                r.peer.clone(),
                r.state.clone(),
                r.last_sync.clone().unwrap_or_else(dash),
                r.rpo_seconds.map(age).unwrap_or_else(dash),
                r.key_age_seconds.map(age).unwrap_or_else(dash),
                r.action.clone().unwrap_or_else(dash),
                r.step.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    aligned(&header.map(str::to_string), &cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(name: &str, annotations: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "app", "annotations": annotations}}))
            .expect("pvc")
    }

    #[test]
    fn rows_show_protected_pvcs_with_rpo_and_running_action() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        let pvcs = [
            pvc(
                "db",
                json!({keys::PROTECT: "true", keys::ROLE: "primary", keys::STATE: "Protected",
                       keys::LAST_SYNC_TIME: "2026-11-25T09:55:30Z", keys::POLICY: "gold"}),
            ),
            pvc(
                "web",
                json!({keys::PROTECT: "true", keys::ACTION_PHASE: "Running", keys::ACTION_RUNNING: "migrate:1",
                       keys::ACTION_STEP: "scale-down-here"}),
            ),
            pvc("plain", json!({})),
            pvc("off", json!({keys::PROTECT: "false"})),
        ];
        let rows = rows("cluster-a", "cluster-b", &pvcs, now);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].rpo_seconds, Some(270));
        assert_eq!(rows[0].policy.as_deref(), Some("gold"));
        assert_eq!(rows[1].state, "Pending");
        assert_eq!(rows[1].action.as_deref(), Some("migrate:1"));
        assert_eq!(rows[1].step.as_deref(), Some("scale-down-here"));
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("CLUSTER     NAMESPACE   PVC   GROUP   ROLE"),
            "{text}"
        );
        assert!(lines[1].contains("Protected") && lines[1].contains("4m30s"), "{text}");
        assert!(
            lines[2].contains("migrate:1") && lines[2].ends_with("scale-down-here"),
            "{text}"
        );
        // Columns line up: every row's STATE starts where the header's does.
        let at = lines[0].find("STATE").expect("STATE");
        assert!(
            lines[1][at..].starts_with("Protected") && lines[2][at..].starts_with("Pending"),
            "{text}"
        );
    }

    #[test]
    fn groups_show_their_members_and_their_oldest_sync() {
        use k8s_openapi::api::apps::v1::StatefulSet;
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        let synced = |name: &str, at: &str| {
            pvc(
                name,
                json!({keys::PROTECT: "true", keys::STATE: "Protected", keys::LAST_SYNC_TIME: at}),
            )
        };
        let pvcs = [
            synced("data-web-0", "2026-11-25T09:59:00Z"),
            synced("data-web-1", "2026-11-25T09:50:00Z"),
            pvc("data-web-2", json!({})),
            pvc("db", json!({keys::PROTECT: "true", keys::GROUP: "shop"})),
            synced("uploads", "2026-11-25T09:58:00Z"),
            synced("alone", "2026-11-25T09:58:00Z"),
        ];
        let mut uploads = pvcs[4].clone();
        uploads
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(keys::GROUP.into(), "shop".into());
        let pvcs = [&pvcs[..4], &[uploads, pvcs[5].clone()]].concat();
        let web: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "app"},
            "spec": {"selector": {}, "serviceName": "web", "template": {"spec": {"containers": []}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}
        }))
        .expect("statefulset");
        let workloads = BTreeMap::from([("app".to_string(), vec![Claims::of_stateful_set(&web)])]);
        let groups = groups("cluster-a", &pvcs, &workloads, now);
        assert_eq!(
            groups,
            [
                GroupRow {
                    cluster: "cluster-a".into(),
                    namespace: "app".into(),
                    group: "StatefulSet/web".into(),
                    members: vec![
                        "data-web-0".into(),
                        "data-web-1".into(),
                        "data-web-2 (not protected)".into()
                    ],
                    rpo_seconds: Some(600),
                },
                GroupRow {
                    cluster: "cluster-a".into(),
                    namespace: "app".into(),
                    group: "shop".into(),
                    members: vec!["db".into(), "uploads".into()],
                    // db has not synced yet: the group has no recovery point.
                    rpo_seconds: None,
                },
            ]
        );
        let rows = with_groups(rows("cluster-a", "cluster-b", &pvcs, now), &groups);
        let of = |name: &str| rows.iter().find(|r| r.pvc == name).expect("row");
        assert_eq!(of("data-web-0").group.as_deref(), Some("StatefulSet/web"));
        assert_eq!(of("data-web-0").group_rpo_seconds, Some(600));
        assert_eq!(of("uploads").group.as_deref(), Some("shop"));
        assert_eq!(of("alone").group, None, "a group of one is not shown as a group");
        let text = group_table(&groups);
        assert!(
            text.starts_with("CLUSTER     NAMESPACE   GROUP             RPO     MEMBERS\n"),
            "{text}"
        );
        assert!(
            text.contains("StatefulSet/web   10m0s   data-web-0, data-web-1, data-web-2 (not protected)"),
            "{text}"
        );
        assert_eq!(group_table(&[]), "");
    }

    #[test]
    fn kept_copies_are_listed_with_how_to_read_them() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        let pvcs = [
            pvc(
                "db",
                json!({keys::PROTECT: "true", keys::KEPT_COPIES: "db-before-failback-1,db-before-failback-2"}),
            ),
            pvc("web", json!({keys::PROTECT: "true"})),
        ];
        let rows = rows("cluster-a", "cluster-b", &pvcs, now);
        assert_eq!(rows[0].kept_copies, ["db-before-failback-1", "db-before-failback-2"]);
        assert!(rows[1].kept_copies.is_empty());
        let text = kept_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("CLUSTER") && lines[0].ends_with("KEPT COPY (VolumeSnapshot)"),
            "{text}"
        );
        assert!(lines[2].ends_with("db    db-before-failback-2"), "{text}");
        assert!(lines[3].contains("kind: VolumeSnapshot"), "{text}");
        assert_eq!(kept_table(&rows[1..]), "", "no kept copy, no table");
        let json = serde_json::to_value(&rows[0]).expect("json");
        assert_eq!(
            json["keptCopies"],
            json!(["db-before-failback-1", "db-before-failback-2"])
        );
    }

    #[test]
    fn restore_points_are_listed_with_how_to_fail_over_to_one() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        let pvcs = [
            pvc(
                "db",
                json!({keys::PROTECT: "true", keys::ROLE: "secondary",
                       keys::RESTORE_POINTS_KEPT: "2026-11-25T09:50:00Z=snap-3,2026-11-25T09:40:00Z=snap-2"}),
            ),
            pvc("web", json!({keys::PROTECT: "true"})),
        ];
        let rows = rows("cluster-b", "cluster-a", &pvcs, now);
        let text = restore_point_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].ends_with("2026-11-25T09:50:00Z   snap-3"), "{text}");
        assert!(lines[3].contains("volsync-dr.io/restore-point="), "{text}");
        assert_eq!(restore_point_table(&rows[1..]), "", "none kept, no table");
        let json = serde_json::to_value(&rows[0]).expect("json");
        assert_eq!(
            json["restorePoints"][1],
            json!({"syncedAt": "2026-11-25T09:40:00Z", "snapshot": "snap-2"})
        );
    }

    #[test]
    fn key_ages_join_by_cluster_namespace_and_pvc() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        let pvcs = [
            pvc("db", json!({keys::PROTECT: "true"})),
            pvc("web", json!({keys::PROTECT: "true"})),
        ];
        let made = BTreeMap::from([(
            ("app".to_string(), "db".to_string()),
            "2026-11-24T10:00:00Z".parse::<jiff::Timestamp>().expect("time"),
        )]);
        let rows = with_key_ages(rows("cluster-a", "cluster-b", &pvcs, now), "cluster-a", &made, now);
        assert_eq!(rows[0].key_age_seconds, Some(86_400));
        assert_eq!(rows[1].key_age_seconds, None, "no Secret read for web");
        let other = with_key_ages(rows.clone(), "cluster-b", &BTreeMap::new(), now);
        assert_eq!(
            other[0].key_age_seconds,
            Some(86_400),
            "another cluster's rows are left alone"
        );
        let text = table(&rows);
        assert!(text.lines().next().is_some_and(|h| h.contains("KEY AGE")), "{text}");
        assert!(text.lines().nth(1).is_some_and(|l| l.contains(" 1d0h ")), "{text}");
        assert_eq!(serde_json::to_value(&rows[0]).expect("json")["keyAgeSeconds"], 86_400);
    }

    #[test]
    fn ages() {
        for (s, want) in [(7, "7s"), (306, "5m6s"), (11_040, "3h4m"), (93_600, "1d2h")] {
            assert_eq!(age(s), want);
        }
    }
}
