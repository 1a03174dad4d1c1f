//! Restore points (pure): which synced images the secondary keeps as VolumeSnapshots beyond
//! VolSync's one `latestImage`, which it prunes, how the PVC lists them, and which one a
//! failover restores.
//!
//! VolSync deletes the previous image when a sync completes unless it carries
//! `volsync.backube/do-not-delete`; so each new image is labelled (ours, do-not-delete, with its
//! sync time) while it is the latest, and the oldest beyond `restore-points` are deleted.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::keys;
use crate::model::names::Names;

/// A kept (or about to be kept) image: its VolumeSnapshot and when its sync completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub name: String,
    /// RFC 3339, as VolSync reports `lastSyncTime`.
    pub synced_at: String,
}

/// What to do with the snapshots of one PVC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keeping {
    /// The latest image, to label as a kept point.
    pub label: Option<Point>,
    /// Kept points beyond the number wanted, oldest first.
    pub prune: Vec<String>,
    /// The latest image kept by us when no more than one point is wanted: given back to VolSync
    /// (our labels removed), so its next sync deletes it as usual.
    pub release: Option<String>,
    /// What the PVC lists: the points kept after this, newest first.
    pub listed: Vec<Point>,
}

/// Sort by sync time, newest first.
pub fn newest_first(points: &mut [Point]) {
    points.sort_by(|a, b| {
        let at = |p: &Point| p.synced_at.parse::<jiff::Timestamp>().ok();
        at(b).cmp(&at(a)).then_with(|| b.name.cmp(&a.name))
    });
}

/// `wanted` points (1 = VolSync's own behaviour: nothing kept); `latest` is the RD's current
/// image when it is a VolumeSnapshot, with the RD's last sync time; `kept` are the snapshots
/// labelled as points. The current image is never deleted: VolSync still uses it.
pub fn decide(wanted: u32, latest: Option<&Point>, kept: &[Point]) -> Keeping {
    let latest_kept = latest.is_some_and(|l| kept.iter().any(|k| k.name == l.name));
    if wanted <= 1 {
        return Keeping {
            label: None,
            prune: kept
                .iter()
                .filter(|k| latest.is_none_or(|l| l.name != k.name))
                .map(|k| k.name.clone())
                .collect(),
            release: latest.filter(|_| latest_kept).map(|l| l.name.clone()),
            listed: Vec::new(),
        };
    }
    let mut all: Vec<Point> = kept.to_vec();
    if let Some(l) = latest.filter(|_| !latest_kept) {
        all.push(l.clone());
    }
    newest_first(&mut all);
    let (listed, beyond) = all.split_at(all.len().min(wanted as usize));
    let mut prune: Vec<String> = beyond
        .iter()
        .filter(|p| latest.is_none_or(|l| l.name != p.name))
        .map(|p| p.name.clone())
        .collect();
    prune.reverse();
    Keeping {
        label: latest.filter(|_| !latest_kept).cloned(),
        prune,
        release: None,
        listed: listed.to_vec(),
    }
}

/// The PVC's `restore-points-kept`: `TIME=SNAPSHOT`, newest first, comma-separated.
pub fn listed_annotation(points: &[Point]) -> String {
    points
        .iter()
        .map(|p| format!("{}={}", p.synced_at, p.name))
        .collect::<Vec<_>>()
        .join(",")
}

/// The points a PVC lists (the inverse of [`listed_annotation`]; malformed entries skipped).
pub fn parse_listed(text: &str) -> Vec<Point> {
    text.split(',')
        .filter_map(|entry| entry.split_once('='))
        .map(|(at, name)| Point {
            name: name.trim().to_string(),
            synced_at: at.trim().to_string(),
        })
        .filter(|p| !p.name.is_empty())
        .collect()
}

/// The listed point `wanted` names (its snapshot name, or its sync time in any RFC 3339
/// spelling), or a message listing those that exist.
pub fn choose<'a>(points: &'a [Point], wanted: &str) -> Result<&'a Point, String> {
    let wanted_time = wanted.parse::<jiff::Timestamp>().ok();
    points
        .iter()
        .find(|p| p.name == wanted || (wanted_time.is_some() && p.synced_at.parse::<jiff::Timestamp>().ok() == wanted_time))
        .ok_or_else(|| {
            if points.is_empty() {
                format!("restore point {wanted:?} does not exist: this PVC keeps none (set volsync-dr.io/restore-points above 1 on the primary to keep some)")
            } else {
                format!(
                    "restore point {wanted:?} does not exist; kept: {}",
                    points
                        .iter()
                        .map(|p| format!("{} ({})", p.name, p.synced_at))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        })
}

/// The labels and annotation that make the latest image a kept point.
pub fn label_patch(names: &Names, point: &Point) -> Value {
    let mut labels: BTreeMap<String, String> = names.labels();
    labels.insert(keys::VOLSYNC_DO_NOT_DELETE.to_string(), "true".to_string());
    labels.insert(keys::RESTORE_POINT_LABEL.to_string(), "true".to_string());
    json!({"metadata": {"labels": labels, "annotations": {keys::SYNCED_AT: point.synced_at}}})
}

/// Our marks off a snapshot given back to VolSync.
pub fn release_patch(names: &Names) -> Value {
    let mut labels: BTreeMap<String, Value> = names.labels().into_keys().map(|k| (k, Value::Null)).collect();
    labels.insert(keys::VOLSYNC_DO_NOT_DELETE.to_string(), Value::Null);
    labels.insert(keys::RESTORE_POINT_LABEL.to_string(), Value::Null);
    json!({"metadata": {"labels": labels, "annotations": {keys::SYNCED_AT: null}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, minute: u32) -> Point {
        Point {
            name: name.to_string(),
            synced_at: format!("2026-12-03T09:{minute:02}:00Z"),
        }
    }

    fn names(points: &[Point]) -> Vec<&str> {
        points.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn keeps_the_newest_and_prunes_the_oldest() {
        struct Case {
            what: &'static str,
            wanted: u32,
            latest: Option<Point>,
            kept: Vec<Point>,
            label: Option<&'static str>,
            prune: Vec<&'static str>,
            release: Option<&'static str>,
            listed: Vec<&'static str>,
        }
        let cases = [
            Case {
                what: "first image, three wanted",
                wanted: 3,
                latest: Some(p("s1", 1)),
                kept: vec![],
                label: Some("s1"),
                prune: vec![],
                release: None,
                listed: vec!["s1"],
            },
            Case {
                what: "a fourth image: the oldest goes",
                wanted: 3,
                latest: Some(p("s4", 4)),
                kept: vec![p("s1", 1), p("s2", 2), p("s3", 3)],
                label: Some("s4"),
                prune: vec!["s1"],
                release: None,
                listed: vec!["s4", "s3", "s2"],
            },
            Case {
                what: "already kept: nothing to do",
                wanted: 3,
                latest: Some(p("s3", 3)),
                kept: vec![p("s1", 1), p("s2", 2), p("s3", 3)],
                label: None,
                prune: vec![],
                release: None,
                listed: vec!["s3", "s2", "s1"],
            },
            Case {
                what: "lowered from 5 to 2",
                wanted: 2,
                latest: Some(p("s5", 5)),
                kept: vec![p("s1", 1), p("s2", 2), p("s3", 3), p("s4", 4), p("s5", 5)],
                label: None,
                prune: vec!["s1", "s2", "s3"],
                release: None,
                listed: vec!["s5", "s4"],
            },
            Case {
                what: "back to 1: the others go, the current image returns to VolSync",
                wanted: 1,
                latest: Some(p("s3", 3)),
                kept: vec![p("s2", 2), p("s3", 3)],
                label: None,
                prune: vec!["s2"],
                release: Some("s3"),
                listed: vec![],
            },
            Case {
                what: "1, nothing kept: VolSync's own behaviour",
                wanted: 1,
                latest: Some(p("s3", 3)),
                kept: vec![],
                label: None,
                prune: vec![],
                release: None,
                listed: vec![],
            },
            Case {
                what: "no image yet",
                wanted: 3,
                latest: None,
                kept: vec![],
                label: None,
                prune: vec![],
                release: None,
                listed: vec![],
            },
        ];
        for c in cases {
            let k = decide(c.wanted, c.latest.as_ref(), &c.kept);
            assert_eq!(k.label.as_ref().map(|l| l.name.as_str()), c.label, "{}: label", c.what);
            assert_eq!(k.prune, c.prune, "{}: prune", c.what);
            assert_eq!(k.release.as_deref(), c.release, "{}: release", c.what);
            assert_eq!(names(&k.listed), c.listed, "{}: listed", c.what);
        }
    }

    #[test]
    fn lists_and_chooses_by_name_or_time() {
        let points = vec![p("s3", 3), p("s2", 2)];
        let text = listed_annotation(&points);
        assert_eq!(text, "2026-12-03T09:03:00Z=s3,2026-12-03T09:02:00Z=s2");
        assert_eq!(parse_listed(&text), points);
        assert_eq!(choose(&points, "s2").map(|p| &p.name), Ok(&"s2".to_string()));
        assert_eq!(
            choose(&points, "2026-12-03T09:03:00+00:00").map(|p| &p.name),
            Ok(&"s3".to_string())
        );
        let refused = choose(&points, "s9").expect_err("no such point");
        assert!(
            refused.contains("\"s9\"") && refused.contains("s3 (2026-12-03T09:03:00Z), s2"),
            "{refused}"
        );
        assert!(choose(&[], "s1").expect_err("none").contains("keeps none"));
    }
}
