//! Whether `volsync-dr run` can start, decided purely from what it read of its own cluster:
//! the first problem found, as one line that names it and says what to do.

use std::collections::BTreeSet;

/// What the start-up checks read from this cluster.
#[derive(Clone, Debug, Default)]
pub struct StartFacts {
    /// This cluster's name (`--cluster-name`).
    pub cluster: String,
    /// The CRDs served, as `plural.group`.
    pub crds: BTreeSet<String>,
    /// Access reviews answered "not allowed": `verb group/resource` (`in NS` for the Lease).
    pub denied: Vec<String>,
    /// With leader election: the Lease's namespace and lease name, and whether it exists.
    pub lease: Option<LeaseFacts>,
}

#[derive(Clone, Debug)]
pub struct LeaseFacts {
    pub namespace: String,
    pub name: String,
    pub namespace_exists: bool,
}

/// VolSync's CRDs: without them nothing can be protected.
pub const VOLSYNC_CRDS: [&str; 2] = [
    "replicationsources.volsync.backube",
    "replicationdestinations.volsync.backube",
];

/// `Err` with the first problem: VolSync missing, then the Lease's namespace, then access.
pub fn verdict(facts: &StartFacts) -> Result<(), String> {
    let cluster = &facts.cluster;
    let missing: Vec<&str> = VOLSYNC_CRDS
        .iter()
        .copied()
        .filter(|c| !facts.crds.contains(*c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "VolSync is not installed on cluster {cluster} ({} not served): install VolSync \
             (helm install volsync backube/volsync -n volsync-system), then start volsync-dr again",
            missing.join(", ")
        ));
    }
    if let Some(lease) = facts.lease.as_ref().filter(|l| !l.namespace_exists) {
        return Err(format!(
            "the namespace {} does not exist on cluster {cluster} (--own-namespace: the leader-election Lease {} \
             is kept there): create it, or set --own-namespace (VOLSYNC_DR_OWN_NAMESPACE) to the namespace \
             volsync-dr runs in",
            lease.namespace, lease.name
        ));
    }
    if let Some(first) = facts.denied.first() {
        // The core group is the empty one: "list /pods" reads as "list pods".
        let first = first.replace(" /", " ");
        let more = match facts.denied.len() {
            1 => String::new(),
            n => format!(" (and {} more; `volsync-dr doctor` lists them)", n - 1),
        };
        return Err(format!(
            "volsync-dr may not {first} on cluster {cluster}{more}: apply deploy/base/rbac.yaml, which binds the \
             ClusterRole volsync-dr and the Role volsync-dr-leader-election to its ServiceAccount"
        ));
    }
    Ok(())
}

/// The webhook certificate's end (Unix seconds) against now: `Err` once it has passed.
pub fn certificate_current(path: &str, not_after_unix: i64, now_unix: i64) -> Result<(), String> {
    if not_after_unix > now_unix {
        return Ok(());
    }
    let ended = jiff::Timestamp::from_second(not_after_unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| not_after_unix.to_string());
    Err(format!(
        "the webhook certificate {path} expired at {ended}: renew it (volsync-dr certs --out-dir DIR, or \
         cert-manager) and update the Secret volsync-dr-webhook-tls"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> StartFacts {
        StartFacts {
            cluster: "east".into(),
            crds: VOLSYNC_CRDS.iter().map(|c| c.to_string()).collect(),
            denied: vec![],
            lease: Some(LeaseFacts {
                namespace: "volsync-dr".into(),
                name: "volsync-dr".into(),
                namespace_exists: true,
            }),
        }
    }

    #[test]
    fn each_problem_is_one_line_naming_it_and_what_to_do() {
        let no_volsync = StartFacts {
            crds: BTreeSet::new(),
            ..healthy()
        };
        let no_rd = StartFacts {
            crds: [VOLSYNC_CRDS[0].to_string()].into(),
            ..healthy()
        };
        let no_namespace = StartFacts {
            lease: Some(LeaseFacts {
                namespace: "dr".into(),
                name: "volsync-dr".into(),
                namespace_exists: false,
            }),
            ..healthy()
        };
        let one_denied = StartFacts {
            denied: vec!["list /persistentvolumeclaims".into()],
            ..healthy()
        };
        let three_denied = StartFacts {
            denied: vec![
                "list /persistentvolumeclaims".into(),
                "watch /persistentvolumeclaims".into(),
                "create coordination.k8s.io/leases in volsync-dr".into(),
            ],
            ..healthy()
        };
        let no_election = StartFacts {
            lease: None,
            ..healthy()
        };
        let cases: [(&str, StartFacts, Option<&[&str]>); 7] = [
            ("healthy", healthy(), None),
            ("no election, no Lease to check", no_election, None),
            (
                "VolSync missing",
                no_volsync,
                Some(&[
                    "VolSync is not installed on cluster east",
                    "replicationsources.volsync.backube, replicationdestinations.volsync.backube",
                    "helm install volsync",
                ]),
            ),
            (
                "one CRD missing",
                no_rd,
                Some(&["(replicationdestinations.volsync.backube not served)"]),
            ),
            (
                "Lease namespace missing",
                no_namespace,
                Some(&["the namespace dr does not exist on cluster east", "set --own-namespace"]),
            ),
            (
                "one permission",
                one_denied,
                Some(&["may not list persistentvolumeclaims on cluster east: apply deploy/base/rbac.yaml"]),
            ),
            (
                "several permissions",
                three_denied,
                Some(&["(and 2 more; `volsync-dr doctor` lists them)"]),
            ),
        ];
        for (case, facts, says) in cases {
            match (verdict(&facts), says) {
                (Ok(()), None) => {}
                (Err(line), Some(says)) => {
                    assert!(!line.contains('\n'), "{case}: one line: {line}");
                    for part in says {
                        assert!(line.contains(part), "{case}: {line:?} lacks {part:?}");
                    }
                }
                (got, want) => panic!("{case}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn an_expired_certificate_is_named_with_when_it_ended() {
        let now = 1_800_000_000;
        assert_eq!(certificate_current("certs/tls.crt", now + 1, now), Ok(()));
        let said = certificate_current("certs/tls.crt", now - 86_400, now).expect_err("expired");
        assert!(
            said.starts_with("the webhook certificate certs/tls.crt expired at 2027-01-14T08:00:00Z: renew it"),
            "{said}"
        );
        assert!(
            certificate_current("c", now, now).is_err(),
            "its last second has passed"
        );
    }
}
