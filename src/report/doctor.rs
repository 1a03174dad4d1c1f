//! `volsync-dr doctor`'s judgements, pure: what was read from the clusters in, one check per
//! line out, each OK or FAIL with what to do.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Access volsync-dr needs on every cluster of a pair (its ClusterRole; `deploy/base/rbac.yaml`
/// grants exactly this, which a test checks): (API group, resource, verbs).
pub const REQUIRED_ACCESS: &[(&str, &str, &[&str])] = &[
    (
        "",
        "persistentvolumeclaims",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", "secrets", &["get", "create", "patch", "delete"]),
    ("", "services", &["get"]),
    ("", "nodes", &["list"]),
    ("", "pods", &["list"]),
    ("", "namespaces", &["list", "watch", "patch"]),
    ("apps", "deployments", &["list", "patch"]),
    ("apps", "statefulsets", &["list", "patch"]),
    (
        "volsync.backube",
        "replicationsources",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "volsync.backube",
        "replicationdestinations",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "snapshot.storage.k8s.io",
        "volumesnapshots",
        &["get", "list", "create", "patch", "delete"],
    ),
    ("storage.k8s.io", "storageclasses", &["list"]),
    ("snapshot.storage.k8s.io", "volumesnapshotclasses", &["list"]),
    ("volsync-dr.io", "drpolicies", &["get", "list", "watch"]),
    ("volsync-dr.io", "drpolicies/status", &["patch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// CRDs a cluster needs, with what to do when one is missing.
pub const REQUIRED_CRDS: &[(&str, &str)] = &[
    (
        "replicationsources.volsync.backube",
        "install VolSync (helm install volsync backube/volsync -n volsync-system)",
    ),
    (
        "replicationdestinations.volsync.backube",
        "install VolSync (helm install volsync backube/volsync -n volsync-system)",
    ),
    (
        "volumesnapshots.snapshot.storage.k8s.io",
        "install the CSI snapshot CRDs and controller (kubernetes-csi/external-snapshotter)",
    ),
    (
        "volumesnapshotclasses.snapshot.storage.k8s.io",
        "install the CSI snapshot CRDs and controller (kubernetes-csi/external-snapshotter)",
    ),
    (
        "drpolicies.volsync-dr.io",
        "kubectl apply -f deploy/crds/drpolicy.yaml (or volsync-dr crd | kubectl apply -f -)",
    ),
];

/// A certificate closer to its end than this fails.
pub const CERT_MIN_DAYS: i64 = 30;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub cluster: String,
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to do, for a failed check.
    pub fix: Option<String>,
}

fn check(cluster: &str, name: &'static str, problems: Vec<String>, ok_detail: String, fix: String) -> Check {
    Check {
        cluster: cluster.to_string(),
        name,
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            ok_detail
        } else {
            problems.join("; ")
        },
        fix: (!problems.is_empty()).then_some(fix),
    }
}

/// The cluster could not be read at all.
pub fn unreachable(cluster: &str, error: &str, fix: &str) -> Check {
    check(
        cluster,
        "reachable",
        vec![error.to_string()],
        String::new(),
        fix.to_string(),
    )
}

pub fn crds(cluster: &str, present: &BTreeSet<String>) -> Check {
    let missing: Vec<&(&str, &str)> = REQUIRED_CRDS.iter().filter(|(n, _)| !present.contains(*n)).collect();
    let fixes: BTreeSet<&str> = missing.iter().map(|(_, f)| *f).collect();
    check(
        cluster,
        "CRDs",
        missing.iter().map(|(n, _)| format!("{n} missing")).collect(),
        format!("{} CRDs installed (VolSync, snapshots, DRPolicy)", REQUIRED_CRDS.len()),
        fixes.into_iter().collect::<Vec<_>>().join("; "),
    )
}

/// Classes named in settings or on PVCs that the cluster lacks. `wanted`: class → who names it.
pub fn classes(
    cluster: &str,
    name: &'static str,
    kind: &str,
    wanted: &BTreeMap<String, BTreeSet<String>>,
    present: &BTreeSet<String>,
) -> Check {
    let problems: Vec<String> = wanted
        .iter()
        .filter(|(c, _)| !present.contains(*c))
        .map(|(c, users)| {
            format!(
                "{kind} {c} not found (needed by {})",
                users.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    let have = if present.is_empty() {
        "none".to_string()
    } else {
        present.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    check(
        cluster,
        name,
        problems,
        if wanted.is_empty() {
            format!("none needed ({kind}es here: {have})")
        } else {
            format!("{} needed, all present", wanted.len())
        },
        format!(
            "create the missing {kind}es on {cluster} (here: {have}), or map them with destination annotations or a DRPolicy mapping"
        ),
    )
}

/// Access reviews that came back "not allowed": `verb group/resource`.
pub fn access(cluster: &str, denied: &[String]) -> Check {
    let needed: usize = REQUIRED_ACCESS.iter().map(|(_, _, v)| v.len()).sum();
    check(
        cluster,
        "access",
        denied.iter().map(|d| format!("not allowed: {d}")).collect(),
        format!("the peer kubeconfig may do all {needed} things volsync-dr needs"),
        format!(
            "bind the ClusterRole volsync-dr (deploy/base/rbac.yaml) to the identity of the peer kubeconfig on {cluster}"
        ),
    )
}

/// A PEM certificate's end (Unix seconds) and DNS names.
pub fn read_certificate(pem: &[u8]) -> Result<(i64, Vec<String>), String> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| e.to_string())?;
    let cert = parsed.parse_x509().map_err(|e| e.to_string())?;
    Ok((cert.validity().not_after.timestamp(), names(&cert)))
}

/// The webhook's serving certificate: readable, for the Service's name, not ending soon.
pub fn certificate(cluster: &str, pem: &str, service_dns: &str, now_unix: i64) -> Check {
    let fix = format!(
        "renew it: volsync-dr certs --out-dir certs, then update the Secret volsync-dr-webhook-tls and the caBundle on {cluster} (or let cert-manager manage it)"
    );
    let (not_after, dns) = match read_certificate(pem.as_bytes()) {
        Ok(x) => x,
        Err(e) => {
            return check(
                cluster,
                "webhook certificate",
                vec![format!("not a certificate: {e}")],
                String::new(),
                fix,
            );
        }
    };
    let days = (not_after - now_unix).div_euclid(86_400);
    let mut problems = Vec::new();
    if days < CERT_MIN_DAYS {
        problems.push(if not_after <= now_unix {
            "expired".to_string()
        } else {
            format!("expires in {days} days (less than {CERT_MIN_DAYS})")
        });
    }
    if !dns.iter().any(|n| n == service_dns) {
        problems.push(format!("not valid for {service_dns} (names: {})", dns.join(", ")));
    }
    check(
        cluster,
        "webhook certificate",
        problems,
        format!("valid for {service_dns}, {days} more days"),
        fix,
    )
}

fn names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One line per check (`OK` / `FAIL`, cluster, check, detail), a `fix:` line under a failure.
pub fn render(checks: &[Check]) -> String {
    let cluster_w = checks.iter().map(|c| c.cluster.len()).max().unwrap_or(0);
    let name_w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let verdict = if c.ok { "OK" } else { "FAIL" };
        let _ = writeln!(
            out,
            "{verdict:<4}  {:<cluster_w$}  {:<name_w$}  {}",
            c.cluster, c.name, c.detail
        );
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "      fix: {fix}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn crds_name_what_is_missing_and_how_to_install_it() {
        let all: BTreeSet<String> = REQUIRED_CRDS.iter().map(|(n, _)| n.to_string()).collect();
        assert!(crds("a", &all).ok);
        let c = crds("b", &set(&["replicationsources.volsync.backube"]));
        assert!(!c.ok);
        assert!(
            c.detail.contains("replicationdestinations.volsync.backube missing"),
            "{}",
            c.detail
        );
        let fix = c.fix.expect("fix");
        assert!(
            fix.contains("install VolSync") && fix.contains("external-snapshotter") && fix.contains("drpolicy.yaml")
        );
    }

    #[test]
    fn classes_name_the_missing_class_and_who_needs_it() {
        let wanted = BTreeMap::from([
            ("fast".to_string(), set(&["app/db"])),
            ("standard".to_string(), set(&["app/web", "app/logs"])),
        ]);
        let c = classes(
            "cluster-b",
            "storage classes",
            "StorageClass",
            &wanted,
            &set(&["standard"]),
        );
        assert!(!c.ok);
        assert_eq!(c.detail, "StorageClass fast not found (needed by app/db)");
        assert!(c.fix.expect("fix").contains("here: standard"));
        assert!(
            classes(
                "cluster-b",
                "storage classes",
                "StorageClass",
                &wanted,
                &set(&["fast", "standard"])
            )
            .ok
        );
    }

    #[test]
    fn certificates_expiring_or_for_another_name_fail() {
        let names = crate::cmd::certs::service_names("volsync-dr-webhook", "volsync-dr");
        let dns = "volsync-dr-webhook.volsync-dr.svc";
        let now = jiff::Timestamp::now().as_second();
        // Whole days, so a certificate made a moment ago for N days shows N or N - 1.
        for (days, ok, says) in [
            (365, true, "more days"),
            (10, false, "days (less than 30)"),
            (40, true, "more days"),
        ] {
            let g = crate::cmd::certs::generate(names.clone(), days).expect("certs");
            let c = certificate("a", &g.cert_pem, dns, now);
            assert_eq!(c.ok, ok, "{days}: {c:?}");
            assert!(c.detail.contains(says), "{days}: {}", c.detail);
        }
        let other = crate::cmd::certs::generate(vec!["elsewhere.svc".into()], 365).expect("certs");
        let c = certificate("a", &other.cert_pem, dns, now);
        assert!(
            !c.ok && c.detail.contains("not valid for volsync-dr-webhook.volsync-dr.svc"),
            "{c:?}"
        );
        let c = certificate("a", "garbage", dns, now);
        assert!(!c.ok && c.detail.starts_with("not a certificate"), "{c:?}");
    }

    #[test]
    fn render_lines_up_and_says_what_to_do() {
        let text = render(&[
            access("cluster-b", &[]),
            access("cluster-b", &["patch apps/deployments".to_string()]),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("OK    cluster-b  access  the peer kubeconfig may do all"),
            "{text}"
        );
        assert_eq!(lines[1], "FAIL  cluster-b  access  not allowed: patch apps/deployments");
        assert!(
            lines[2].starts_with("      fix: bind the ClusterRole volsync-dr"),
            "{text}"
        );
    }
}
