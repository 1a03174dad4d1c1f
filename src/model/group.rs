//! Application groups: the PVCs that move together. An action on one member acts on all of
//! them, because a workload that mounts two volumes cannot start on a cluster where only one of
//! them has arrived. Pure: the controller lists the namespace's PVCs and workloads.

use std::collections::BTreeSet;

use super::workload::Claims;

/// A PVC of the namespace as group membership sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// `volsync-dr.io/group`, the explicit group.
    pub group: Option<String>,
}

/// Every PVC that moves with `seed`: the seed, the PVCs used by any workload that uses a member,
/// and the PVCs sharing a member's explicit group, repeated until nothing is added. Only PVCs
/// that exist (`pvcs`) are members. Sorted by name, the seed included.
pub fn members_with(seed: &str, pvcs: &[Member], workloads: &[Claims]) -> Vec<String> {
    let mut members: BTreeSet<&str> = BTreeSet::from([seed]);
    loop {
        let mut added = false;
        for candidate in pvcs {
            if members.contains(candidate.name.as_str()) {
                continue;
            }
            let shares_workload = workloads
                .iter()
                .any(|w| w.uses(&candidate.name) && members.iter().any(|m| w.uses(m)));
            let shares_group = candidate.group.as_ref().is_some_and(|g| {
                pvcs.iter()
                    .any(|p| p.group.as_ref() == Some(g) && members.contains(p.name.as_str()))
            });
            if shares_workload || shares_group {
                members.insert(&candidate.name);
                added = true;
            }
        }
        if !added {
            return members.into_iter().map(str::to_string).collect();
        }
    }
}

/// A namespace's PVCs and workloads, as the webhook reads them to check a new request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupFacts {
    pub pvcs: Vec<Member>,
    /// Names of the PVCs without `volsync-dr.io/protect=true`.
    pub unprotected: BTreeSet<String>,
    pub workloads: Vec<Claims>,
}

impl GroupFacts {
    /// The other members of `seed`'s group that are not protected (sorted).
    pub fn unprotected_members(&self, seed: &str) -> Vec<String> {
        members_with(seed, &self.pvcs, &self.workloads)
            .into_iter()
            .filter(|m| m != seed && self.unprotected.contains(m))
            .collect()
    }
}

/// What a PVC looks like on one cluster, for the scale-up invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimState {
    pub name: String,
    /// `volsync-dr.io/protect=true`.
    pub protected: bool,
    /// `volsync-dr.io/role` as written (`None`: no role).
    pub role: Option<String>,
}

/// The claims that make scaling `workload` up to `replicas` on the target unsafe, each with
/// why: missing there (a StatefulSet would create it empty), a replication destination there
/// (its data is the peer's, and the next sync overwrites what the pods write), or protected on
/// the cluster the application leaves while not primary on the target (its data has not
/// arrived). `source` is `None` when the other cluster cannot be read (failover).
pub fn unsafe_claims(
    workload: &Claims,
    replicas: i32,
    target: &[ClaimState],
    source: Option<&[ClaimState]>,
) -> Vec<String> {
    workload
        .needed_at(replicas)
        .into_iter()
        .filter_map(|claim| {
            let here = target.iter().find(|c| c.name == claim);
            let there = source.and_then(|s| s.iter().find(|c| c.name == claim));
            let why = match (here, there) {
                (None, _) => "missing",
                (Some(c), _) if c.role.as_deref() == Some("secondary") => "a replication destination",
                (Some(c), Some(s)) if s.protected && c.role.as_deref() != Some("primary") => {
                    "protected on the other cluster but not primary here"
                }
                _ => return None,
            };
            Some(format!("{claim} ({why})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use serde_json::json;

    use super::*;

    fn deployment(name: &str, claims: &[&str]) -> Claims {
        let volumes: Vec<_> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {}, "template": {"spec": {"containers": [], "volumes": volumes}}}
        }))
        .expect("deployment");
        Claims::of_deployment(&d)
    }

    fn stateful_set(name: &str, replicas: i32, templates: &[&str], claims: &[&str]) -> Claims {
        let volumes: Vec<_> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        let templates: Vec<_> = templates.iter().map(|t| json!({"metadata": {"name": t}})).collect();
        let s: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {}, "serviceName": name,
                     "template": {"spec": {"containers": [], "volumes": volumes}},
                     "volumeClaimTemplates": templates}
        }))
        .expect("statefulset");
        Claims::of_stateful_set(&s)
    }

    fn pvcs(list: &[(&str, Option<&str>)]) -> Vec<Member> {
        list.iter()
            .map(|(name, group)| Member {
                name: name.to_string(),
                group: group.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn groups_follow_workloads_and_explicit_names_transitively() {
        let web = stateful_set("web", 3, &["data"], &[]);
        let app = deployment("app", &["db", "uploads"]);
        let worker = deployment("worker", &["uploads", "queue"]);
        let lone = deployment("lone", &["cache"]);
        let all = pvcs(&[
            ("data-web-0", None),
            ("data-web-1", None),
            ("data-web-2", None),
            ("db", Some("shop")),
            ("uploads", None),
            ("queue", None),
            ("cache", None),
            ("reports", Some("shop")),
            ("billing", Some("finance")),
            ("data-webx-0", None),
        ]);
        let workloads = [web, app, worker, lone];
        let cases: [(&str, &[&str]); 6] = [
            ("data-web-1", &["data-web-0", "data-web-1", "data-web-2"]),
            // app shares uploads with worker (queue), and db's explicit group adds reports.
            ("queue", &["db", "queue", "reports", "uploads"]),
            ("reports", &["db", "queue", "reports", "uploads"]),
            ("cache", &["cache"]),
            ("billing", &["billing"]),
            // Not a claim of the set `web` (`data-web-` prefix, not a number after it).
            ("data-webx-0", &["data-webx-0"]),
        ];
        for (seed, want) in cases {
            assert_eq!(members_with(seed, &all, &workloads), want, "{seed}");
        }
    }

    #[test]
    fn a_seed_alone_is_a_group_of_one() {
        assert_eq!(members_with("db", &[], &[]), ["db"]);
    }

    #[test]
    fn which_claims_a_workload_needs() {
        let set = stateful_set("web", 3, &["data", "logs"], &["config"]);
        assert_eq!(
            set.needed_at(2),
            ["config", "data-web-0", "data-web-1", "logs-web-0", "logs-web-1"]
        );
        assert_eq!(set.needed_at(0), ["config"]);
        assert!(set.uses("logs-web-7"));
        assert!(!set.uses("logs-web-"));
        assert!(!set.uses("logs-web-1a"));
        assert_eq!(deployment("app", &["db"]).needed_at(5), ["db"]);
    }

    fn state(name: &str, protected: bool, role: Option<&str>) -> ClaimState {
        ClaimState {
            name: name.into(),
            protected,
            role: role.map(str::to_string),
        }
    }

    #[test]
    fn scaling_up_is_unsafe_while_a_needed_volume_has_not_arrived() {
        let set = stateful_set("web", 3, &["data"], &[]);
        let primary = |n: &str| state(n, true, Some("primary"));
        let secondary = |n: &str| state(n, true, Some("secondary"));
        type Case<'a> = (&'a str, Vec<ClaimState>, Option<Vec<ClaimState>>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "every ordinal primary here",
                vec![primary("data-web-0"), primary("data-web-1"), primary("data-web-2")],
                Some(vec![
                    secondary("data-web-0"),
                    secondary("data-web-1"),
                    secondary("data-web-2"),
                ]),
                vec![],
            ),
            (
                "only ordinal 0 moved (the issue's silent loss)",
                vec![primary("data-web-0"), secondary("data-web-1"), secondary("data-web-2")],
                Some(vec![
                    secondary("data-web-0"),
                    primary("data-web-1"),
                    primary("data-web-2"),
                ]),
                vec![
                    "data-web-1 (a replication destination)",
                    "data-web-2 (a replication destination)",
                ],
            ),
            (
                "ordinal 2 missing: the StatefulSet would create it empty",
                vec![primary("data-web-0"), primary("data-web-1")],
                None,
                vec!["data-web-2 (missing)"],
            ),
            (
                "unprotected here, protected on the other side",
                vec![
                    primary("data-web-0"),
                    primary("data-web-1"),
                    state("data-web-2", false, None),
                ],
                Some(vec![
                    secondary("data-web-0"),
                    secondary("data-web-1"),
                    primary("data-web-2"),
                ]),
                vec!["data-web-2 (protected on the other cluster but not primary here)"],
            ),
            (
                "unprotected on both sides: not ours to guard",
                vec![
                    primary("data-web-0"),
                    primary("data-web-1"),
                    state("data-web-2", false, None),
                ],
                Some(vec![
                    secondary("data-web-0"),
                    secondary("data-web-1"),
                    state("data-web-2", false, None),
                ]),
                vec![],
            ),
        ];
        for (what, target, source, want) in cases {
            assert_eq!(unsafe_claims(&set, 3, &target, source.as_deref()), want, "{what}");
        }
    }
}
