//! Split brain: two copies of a pair that both say primary. A failover records a takeover
//! generation one higher than the pair's (`volsync-dr.io/takeover-generation`); migrate and
//! failback give both sides the same one. So when both say primary, the higher generation took
//! over from the lower, whatever the clocks or the other annotations say, and the lower one is
//! fenced: its application stopped and its sync removed, so it never runs beside the copy that
//! took over and never pushes its old data over it. Pure: both PVCs' annotations in.

use std::collections::BTreeMap;

use crate::model::action::{ActionRequest, Verb};
use crate::model::keys;
use crate::model::progress::{Phase, Progress};
use crate::model::role::Role;

/// The takeover generation a PVC records (0 when absent or unreadable).
pub fn generation(annotations: &BTreeMap<String, String>) -> u64 {
    annotations
        .get(keys::TAKEOVER_GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// How the pair stands when this side (a primary) looks at the peer's copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pair {
    /// Nothing in the way: protect toward the peer.
    Ours,
    /// Leave the pair alone and say why (a failover runs there, or both say primary and the
    /// generations cannot tell which took over, or the peer is fenced).
    HandedOff(String),
    /// The peer took over in a failover after this side was primary: fence this side.
    FenceHere { generation: u64, message: String },
    /// This side took over in a failover and the peer came back still primary: fence it.
    FencePeer { generation: u64, message: String },
}

fn role(annotations: &BTreeMap<String, String>) -> Option<&str> {
    annotations.get(keys::ROLE).map(String::as_str)
}

/// Judge the pair from this side (`here`, a primary) and the peer's copy (`peer`, on the
/// cluster `peer_name`; `here_name` is this cluster's name).
pub fn judge(
    here: &BTreeMap<String, String>,
    peer: &BTreeMap<String, String>,
    here_name: &str,
    peer_name: &str,
) -> Pair {
    let peer_progress = Progress::read(peer);
    if peer_progress.verb_in_flight() == Some(Verb::Failover) {
        let request = peer_progress.in_flight().unwrap_or_default();
        // Never fence while a failover runs: it may still fail and leave this side primary.
        return Pair::HandedOff(format!(
            "a failover ({request}) runs on cluster {peer_name}; this side is not replicated meanwhile"
        ));
    }
    if role(peer) == Some(Role::Fenced.as_str()) {
        return Pair::HandedOff(format!(
            "the PVC on cluster {peer_name} is fenced (it was primary when this cluster took over in a failover); \
             request failback here (volsync-dr.io/action=failback:ID) to return the application to {peer_name}, \
             nothing is replicated until then"
        ));
    }
    if role(peer) != Some(Role::Primary.as_str()) {
        return Pair::Ours;
    }
    let (mine, theirs) = (generation(here), generation(peer));
    if theirs > mine {
        return Pair::FenceHere {
            generation: theirs,
            message: format!(
                "fenced: cluster {peer_name} took over in a failover (takeover generation {theirs}, this copy {mine}); \
                 the application here was scaled to 0 (its count is in volsync-dr.io/replicas) and this side's sync \
                 removed, so it never runs beside the copy that took over. Request failback on {peer_name} \
                 (volsync-dr.io/action=failback:ID) to return the application here; what was written here since \
                 is kept in a VolumeSnapshot before failback overwrites it"
            ),
        };
    }
    if mine > theirs {
        return Pair::FencePeer {
            generation: mine,
            message: format!(
                "fenced: cluster {here_name} took over in a failover (takeover generation {mine}, this copy {theirs}); \
                 the application here was scaled to 0 (its count is in volsync-dr.io/replicas) and this side's sync \
                 removed, so it never runs beside the copy that took over. Request failback on {here_name} \
                 (volsync-dr.io/action=failback:ID) to return the application here; what was written here since \
                 is kept in a VolumeSnapshot before failback overwrites it"
            ),
        };
    }
    // Same generation (written before generations existed, or edited by hand): say which
    // took over from the last action, and leave the pair alone.
    let took_over_here = here
        .get(keys::LAST_ACTION)
        .and_then(|a| a.parse::<ActionRequest>().ok())
        .is_some_and(|r| r.verb == Verb::Failover)
        && Progress::read(here).phase == Some(Phase::Succeeded);
    Pair::HandedOff(if took_over_here {
        format!(
            "this cluster took over in a failover and the PVC on cluster {peer_name} still says primary; \
             request failback here (volsync-dr.io/action=failback:ID) to return the application to \
             {peer_name}, nothing is replicated until then"
        )
    } else {
        format!(
            "the PVC on cluster {peer_name} is primary (it took over in a failover); this copy is stale and \
             not replicated: request failback on {peer_name} to return the application here"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_higher_takeover_generation_wins_and_the_lower_is_fenced() {
        let primary = |generation: &str| map(&[(keys::ROLE, "primary"), (keys::TAKEOVER_GENERATION, generation)]);
        let plain_primary = map(&[(keys::ROLE, "primary")]);
        let secondary = map(&[(keys::ROLE, "secondary")]);
        let fenced = map(&[(keys::ROLE, "fenced")]);
        let failing_over = map(&[
            (keys::ROLE, "secondary"),
            (keys::ACTION_PHASE, "Running"),
            (keys::ACTION_RUNNING, "failover:x"),
        ]);
        let took_over = map(&[
            (keys::ROLE, "primary"),
            (keys::LAST_ACTION, "failover:1"),
            (keys::ACTION_PHASE, "Succeeded"),
        ]);
        type Case = (
            &'static str,
            BTreeMap<String, String>,
            BTreeMap<String, String>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("the peer is the secondary", plain_primary.clone(), secondary, "ours"),
            ("the peer has no role yet", plain_primary.clone(), map(&[]), "ours"),
            (
                "the peer took over (generation 1 > 0)",
                plain_primary.clone(),
                primary("1"),
                "fence here",
            ),
            (
                "the peer took over again (3 > 2)",
                primary("2"),
                primary("3"),
                "fence here",
            ),
            (
                "this side took over (1 > 0)",
                primary("1"),
                plain_primary.clone(),
                "fence peer",
            ),
            (
                "a failover runs on the peer: never fence meanwhile",
                plain_primary.clone(),
                failing_over,
                "alone",
            ),
            ("the peer is fenced already", primary("1"), fenced, "alone"),
            (
                "same generation, by the last action",
                took_over,
                plain_primary.clone(),
                "alone",
            ),
            (
                "same generation, unreadable ones count as 0",
                primary("x"),
                plain_primary,
                "alone",
            ),
        ];
        for (what, here, peer, want) in cases {
            let got = match judge(&here, &peer, "a", "b") {
                Pair::Ours => "ours",
                Pair::HandedOff(_) => "alone",
                Pair::FenceHere { .. } => "fence here",
                Pair::FencePeer { .. } => "fence peer",
            };
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn the_messages_say_what_happened_and_what_to_do() {
        let primary = |generation: &str| map(&[(keys::ROLE, "primary"), (keys::TAKEOVER_GENERATION, generation)]);
        let Pair::FenceHere { generation, message } = judge(&primary("0"), &primary("1"), "a", "b") else {
            panic!("fence here");
        };
        assert_eq!(generation, 1);
        assert!(
            message.starts_with("fenced: cluster b took over in a failover (takeover generation 1, this copy 0)")
                && message.contains("Request failback on b"),
            "{message}"
        );
        let Pair::FencePeer { message, .. } = judge(&primary("1"), &primary("0"), "a", "b") else {
            panic!("fence peer");
        };
        assert!(
            message.starts_with("fenced: cluster a took over") && message.contains("failback on a"),
            "{message}"
        );
        let Pair::HandedOff(running) = judge(
            &primary("0"),
            &map(&[(keys::ACTION_PHASE, "Running"), (keys::ACTION_RUNNING, "failover:x")]),
            "a",
            "b",
        ) else {
            panic!("handed off");
        };
        assert!(running.contains("failover (failover:x) runs on cluster b"), "{running}");
    }
}
