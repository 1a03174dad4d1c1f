//! What `volsync-dr status` shows, decided purely: protected PVCs (as read from both clusters)
//! in, rows and their table, JSON or YAML out.

pub mod doctor;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde::Serialize;

use crate::model::keys;
use crate::model::progress::Progress;

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
            })
        })
        .collect()
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

/// A table as kubectl prints one: upper-case headers, columns padded to their widest cell.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "CLUSTER",
        "NAMESPACE",
        "PVC",
        "ROLE",
        "PEER",
        "STATE",
        "LAST SYNC",
        "RPO",
        "ACTION",
        "STEP",
    ];
    let dash = || "-".to_string();
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.cluster.clone(),
                r.namespace.clone(),
                r.pvc.clone(),
                r.role.clone(),
                r.peer.clone(),
                r.state.clone(),
                r.last_sync.clone().unwrap_or_else(dash),
                r.rpo_seconds.map(age).unwrap_or_else(dash),
                r.action.clone().unwrap_or_else(dash),
                r.step.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cols.iter().zip(&widths).enumerate() {
            if i + 1 == cols.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
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
        assert!(lines[0].starts_with("CLUSTER     NAMESPACE   PVC   ROLE"), "{text}");
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
    fn ages() {
        for (s, want) in [(7, "7s"), (306, "5m6s"), (11_040, "3h4m"), (93_600, "1d2h")] {
            assert_eq!(age(s), want);
        }
    }
}
