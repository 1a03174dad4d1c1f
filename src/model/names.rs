//! Deterministic names of everything created for a PVC, and the labels that find them again.
//!
//! Kubernetes caps object names at 253 characters and label values at 63. A PVC name may be
//! 253 characters long, so a derived name that would exceed its cap keeps a prefix and ends in
//! `-` plus the CRC-32 of the full derived name: stable across restarts, distinct for
//! distinct inputs in practice, and still a valid DNS subdomain.

use std::collections::BTreeMap;

use super::keys;

/// Maximum length of an object name (DNS subdomain).
pub const MAX_NAME: usize = 253;
/// Maximum length of a label value.
pub const MAX_LABEL_VALUE: usize = 63;
/// Port VolSync's rsync-tls destination Service listens on.
pub const RSYNC_TLS_PORT: i32 = 8000;

/// The names of every object volsync-dr creates for one PVC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub pvc: String,
    pub secret: String,
    pub replication_destination: String,
    pub replication_source: String,
    pub replication_source_latest: String,
    pub restored_pvc: String,
    pub replication_source_local: String,
    pub pvc_label_value: String,
}

impl Names {
    pub fn for_pvc(pvc: &str) -> Self {
        Names {
            pvc: pvc.to_string(),
            secret: shorten(&format!("volsync-dr-{pvc}"), MAX_NAME),
            replication_destination: shorten(&format!("rd-{pvc}"), MAX_NAME),
            replication_source: shorten(&format!("rs-{pvc}"), MAX_NAME),
            replication_source_latest: shorten(&format!("rs-{pvc}-latest"), MAX_NAME),
            restored_pvc: shorten(&format!("restored-{pvc}"), MAX_NAME),
            replication_source_local: shorten(&format!("rs-{pvc}-local"), MAX_NAME),
            pvc_label_value: shorten(pvc, MAX_LABEL_VALUE),
        }
    }

    /// The VolumeSnapshot that keeps a copy's data before the request `request` overwrites it
    /// (failback: what the returning side wrote after the failover).
    pub fn kept_copy(&self, request: &str) -> String {
        let request: String = request
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        shorten(&format!("{}-before-{request}", self.pvc), MAX_NAME)
    }

    /// Labels on every object created for this PVC.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (keys::MANAGED_BY.to_string(), keys::MANAGED_BY_VALUE.to_string()),
            (keys::PVC_LABEL.to_string(), self.pvc_label_value.clone()),
        ])
    }

    /// Annotations on every object created for this PVC (the full name, which the label may hash).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(keys::PVC_NAME.to_string(), self.pvc.clone())])
    }

    /// Label selector that finds every object created for this PVC.
    pub fn selector(&self) -> String {
        format!("{},{}={}", managed_selector(), keys::PVC_LABEL, self.pvc_label_value)
    }
}

/// Label selector that finds every object volsync-dr created, for any PVC.
pub fn managed_selector() -> String {
    format!("{}={}", keys::MANAGED_BY, keys::MANAGED_BY_VALUE)
}

/// `name` if it fits in `max` characters, else a prefix, `-`, and 8 hex digits of its CRC-32.
pub fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = format!("{:08x}", crc32fast::hash(name.as_bytes()));
    // Names are ASCII (DNS subdomains), so byte slicing is on character boundaries.
    let prefix = name[..max - hash.len() - 1].trim_end_matches(['-', '.', '_']);
    format!("{prefix}-{hash}")
}

/// The Service VolSync creates for an rsync-tls ReplicationDestination.
///
/// VolSync's rule: `volsync-rsync-tls-dst-<RD name>`, or, when that is over 63 characters,
/// the prefix followed by the CRC-32 (IEEE) of the RD name as 8 lowercase hex digits.
pub fn volsync_rsync_tls_service(replication_destination: &str) -> String {
    const PREFIX: &str = "volsync-rsync-tls-dst-";
    let full = format!("{PREFIX}{replication_destination}");
    if full.len() <= MAX_LABEL_VALUE {
        full
    } else {
        format!("{PREFIX}{:08x}", crc32fast::hash(replication_destination.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_subdomain(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_NAME
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
    }

    fn is_label_value(s: &str) -> bool {
        s.len() <= MAX_LABEL_VALUE
            && (s.is_empty()
                || (s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && s.as_bytes()[0].is_ascii_alphanumeric()
                    && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()))
    }

    #[test]
    fn short_names_are_the_design_names() {
        let n = Names::for_pvc("pvc-01");
        assert_eq!(n.secret, "volsync-dr-pvc-01");
        assert_eq!(n.replication_destination, "rd-pvc-01");
        assert_eq!(n.replication_source, "rs-pvc-01");
        assert_eq!(n.replication_source_latest, "rs-pvc-01-latest");
        assert_eq!(n.restored_pvc, "restored-pvc-01");
        assert_eq!(n.replication_source_local, "rs-pvc-01-local");
        assert_eq!(n.pvc_label_value, "pvc-01");
        assert_eq!(
            n.selector(),
            "app.kubernetes.io/managed-by=volsync-dr,volsync-dr.io/pvc=pvc-01"
        );
    }

    #[test]
    fn every_name_is_valid_and_distinct_for_any_length() {
        // Lengths around every boundary: label value (63), name caps minus each prefix/suffix, 253.
        for len in [1, 50, 62, 63, 64, 100, 235, 240, 242, 243, 244, 245, 246, 250, 252, 253] {
            for filler in ["a", "a.b-", "x-"] {
                let mut pvc: String = filler.repeat(len).chars().take(len).collect();
                // PVC names themselves end in an alphanumeric.
                pvc.pop();
                pvc.push('z');
                let n = Names::for_pvc(&pvc);
                let all = [
                    &n.secret,
                    &n.replication_destination,
                    &n.replication_source,
                    &n.replication_source_latest,
                    &n.restored_pvc,
                    &n.replication_source_local,
                ];
                for name in all {
                    assert!(is_dns_subdomain(name), "len {len}: {name:?} ({})", name.len());
                }
                let distinct: std::collections::BTreeSet<_> = all.iter().collect();
                assert_eq!(distinct.len(), all.len(), "len {len}: names collide");
                assert!(is_label_value(&n.pvc_label_value), "{:?}", n.pvc_label_value);
                assert_eq!(Names::for_pvc(&pvc), n, "names are deterministic");
            }
        }
    }

    #[test]
    fn shortening_keeps_distinct_names_apart() {
        let a = "p".repeat(300);
        let b = format!("{}q", "p".repeat(299));
        assert_ne!(shorten(&a, 63), shorten(&b, 63));
        assert_eq!(shorten(&a, 63).len(), 63);
        assert_eq!(shorten("short", 63), "short");
    }

    #[test]
    fn volsync_service_name_rule() {
        assert_eq!(
            volsync_rsync_tls_service("rd-pvc-01"),
            "volsync-rsync-tls-dst-rd-pvc-01"
        );
        // 22-character prefix + 41 = 63: still the plain form.
        let at_limit = "r".repeat(41);
        assert_eq!(
            volsync_rsync_tls_service(&at_limit),
            format!("volsync-rsync-tls-dst-{at_limit}")
        );
        let over = "r".repeat(42);
        let expected = format!("volsync-rsync-tls-dst-{:08x}", crc32fast::hash(over.as_bytes()));
        assert_eq!(volsync_rsync_tls_service(&over), expected);
        // CRC-32 (IEEE) of "123456789" is the standard check value cbf43926.
        assert_eq!(format!("{:08x}", crc32fast::hash(b"123456789")), "cbf43926");
    }
}
