//! Namespace-level requests: `volsync-dr.io/action=VERB:ID` on a Namespace acts on every
//! application group in it, which is what "fail over this app" means to an on-call engineer.
//! Each group's action runs as a group action from its first PVC (the leader); the Namespace
//! shows them together. Pure: the controller reads the groups and writes what is decided here.

use crate::model::action::{Verb, refusal_for_role};
use crate::model::progress::Phase;
use crate::model::view::PvcView;

/// One group of the namespace, as its leader (its first member by name) shows it.
#[derive(Clone, Debug)]
pub struct Group {
    pub leader: PvcView,
    /// Every member, the leader included, sorted.
    pub members: Vec<String>,
}

/// What a pending Namespace request does when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Ask each of these leaders for the request; the others are skipped (said with why).
    Run { leaders: Vec<String>, skipped: Vec<String> },
    /// Nothing is asked of any PVC: why.
    Refuse(String),
}

fn busy(view: &PvcView, request: &str) -> Option<String> {
    if let Some(running) = &view.in_flight {
        return Some(format!("PVC {} runs {}", view.name, running.text));
    }
    if let Some(hold) = &view.held {
        return Some(format!(
            "PVC {} is held by {} from PVC {}",
            view.name, hold.request, hold.leader
        ));
    }
    view.pending
        .as_ref()
        .filter(|p| p.text != request)
        .map(|p| format!("PVC {} has its own request {} pending", view.name, p.text))
}

/// Which groups `request` (verb `verb`) runs on. A group whose role cannot run the verb here is
/// skipped (a namespace may hold applications protected in both directions); a group busy with
/// another action refuses the whole request, so a namespace never half-runs it.
pub fn start(verb: Verb, request: &str, groups: &[Group]) -> Start {
    let mut leaders = Vec::new();
    let mut skipped = Vec::new();
    let mut problems = Vec::new();
    for group in groups {
        let leader = &group.leader;
        if let Some(why) = busy(leader, request) {
            problems.push(why);
            continue;
        }
        match refusal_for_role(verb, leader.role) {
            Some(why) => skipped.push(format!("{} ({why})", describe(group))),
            None => leaders.push(leader.name.clone()),
        }
    }
    if !problems.is_empty() {
        return Start::Refuse(format!(
            "{}; request it again with a new ID once they have finished",
            problems.join("; ")
        ));
    }
    if leaders.is_empty() {
        let why = if skipped.is_empty() {
            "there is no protected PVC in this namespace".to_string()
        } else {
            format!("no application here can run {verb}: {}", skipped.join("; "))
        };
        return Start::Refuse(why);
    }
    Start::Run { leaders, skipped }
}

fn describe(group: &Group) -> String {
    match group.members.len() {
        1 => format!("PVC {}", group.leader.name),
        n => format!("the group of PVC {} ({n} volumes)", group.leader.name),
    }
}

/// Where one leader's run of the namespace's request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderState {
    pub name: String,
    /// `None`: still running (or not started yet); else how it ended, and its message.
    pub outcome: Option<(Phase, String)>,
    /// Its recorded step while running.
    pub step: Option<String>,
}

impl LeaderState {
    /// The state of `request` on the leader `view`.
    pub fn of(view: &PvcView, request: &str, last_action: Option<&str>, message: Option<&str>) -> LeaderState {
        let running = view.in_flight.as_ref().is_some_and(|r| r.text == request);
        let finished = !running && last_action == Some(request);
        LeaderState {
            name: view.name.clone(),
            outcome: finished.then(|| {
                (
                    view.progress.phase.unwrap_or(Phase::Failed),
                    message.unwrap_or_default().to_string(),
                )
            }),
            step: view.progress.step.clone().filter(|_| running),
        }
    }
}

/// The Namespace's view of its request: still running (the message), or finished (phase and
/// message: succeeded only when every group did).
pub fn progress(request: &str, leaders: &[LeaderState], skipped: &str) -> (Phase, String) {
    let parts: Vec<String> = leaders
        .iter()
        .map(|l| match (&l.outcome, &l.step) {
            (Some((phase, message)), _) => format!("PVC {}: {} ({message})", l.name, phase.as_str()),
            (None, Some(step)) => format!("PVC {}: at step {step}", l.name),
            (None, None) => format!("PVC {}: starting", l.name),
        })
        .collect();
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!("; skipped: {skipped}")
    };
    let running = leaders.iter().any(|l| l.outcome.is_none());
    let failed = leaders.iter().any(|l| matches!(l.outcome, Some((Phase::Failed, _))));
    let phase = match (running, failed) {
        (true, _) => Phase::Running,
        (false, true) => Phase::Failed,
        (false, false) => Phase::Succeeded,
    };
    let head = match phase {
        Phase::Running => format!("{request} runs for {} application(s)", leaders.len()),
        Phase::Succeeded => format!("{request} finished for {} application(s)", leaders.len()),
        Phase::Failed => format!("{request} failed for some application(s)"),
    };
    (phase, format!("{head}: {}{skipped}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::keys;
    use crate::model::view::annotated_pvc;

    fn view(name: &str, annotations: &[(&str, &str)]) -> PvcView {
        let mut pvc = annotated_pvc(annotations);
        pvc.metadata.name = Some(name.into());
        PvcView::read(&pvc)
    }

    fn group(leader: PvcView, members: &[&str]) -> Group {
        Group {
            leader,
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    const PROTECT: (&str, &str) = (keys::PROTECT, "true");
    const SECONDARY: (&str, &str) = (keys::ROLE, "secondary");

    #[test]
    fn a_namespace_request_runs_on_every_group_that_can_run_it() {
        let web = || group(view("data-web-0", &[PROTECT, SECONDARY]), &["data-web-0", "data-web-1"]);
        let db = || group(view("db", &[PROTECT, SECONDARY]), &["db"]);
        let reverse = || group(view("reports", &[PROTECT]), &["reports"]);
        type Case = (&'static str, Vec<Group>, Start);
        let cases: Vec<Case> = vec![
            (
                "two groups, one protected the other way",
                vec![web(), db(), reverse()],
                Start::Run {
                    leaders: vec!["data-web-0".into(), "db".into()],
                    skipped: vec![
                        "PVC reports (failover runs on the secondary (volsync-dr.io/role=secondary); this PVC is the primary)"
                            .into(),
                    ],
                },
            ),
            (
                "nothing can run it",
                vec![reverse()],
                Start::Refuse(
                    "no application here can run failover: PVC reports (failover runs on the secondary \
                     (volsync-dr.io/role=secondary); this PVC is the primary)"
                        .into(),
                ),
            ),
            ("no protected PVC", vec![], Start::Refuse("there is no protected PVC in this namespace".into())),
            (
                "a group busy with its own request: the whole request is refused",
                vec![
                    web(),
                    group(
                        view("db", &[PROTECT, SECONDARY, (keys::ACTION, "failover:0")]),
                        &["db"],
                    ),
                ],
                Start::Refuse(
                    "PVC db has its own request failover:0 pending; request it again with a new ID once they have finished"
                        .into(),
                ),
            ),
            (
                "the same request already on a leader (a resumed start) is not a conflict",
                vec![group(view("db", &[PROTECT, SECONDARY, (keys::ACTION, "failover:1")]), &["db"])],
                Start::Run {
                    leaders: vec!["db".into()],
                    skipped: vec![],
                },
            ),
        ];
        for (what, groups, want) in cases {
            assert_eq!(start(Verb::Failover, "failover:1", &groups), want, "{what}");
        }
    }

    #[test]
    fn the_namespace_shows_every_group_and_succeeds_only_when_all_did() {
        let state = |name: &str, outcome: Option<(Phase, &str)>, step: Option<&str>| LeaderState {
            name: name.into(),
            outcome: outcome.map(|(p, m)| (p, m.to_string())),
            step: step.map(str::to_string),
        };
        let cases = [
            (
                vec![
                    state("data-web-0", None, Some("take-over")),
                    state("db", Some((Phase::Succeeded, "done")), None),
                ],
                Phase::Running,
                "failover:1 runs for 2 application(s): PVC data-web-0: at step take-over; PVC db: Succeeded (done)",
            ),
            (
                vec![
                    state("data-web-0", Some((Phase::Succeeded, "done")), None),
                    state("db", Some((Phase::Succeeded, "done")), None),
                ],
                Phase::Succeeded,
                "failover:1 finished for 2 application(s): PVC data-web-0: Succeeded (done); PVC db: Succeeded (done)",
            ),
            (
                vec![
                    state("data-web-0", Some((Phase::Failed, "no copy")), None),
                    state("db", Some((Phase::Succeeded, "done")), None),
                ],
                Phase::Failed,
                "failover:1 failed for some application(s): PVC data-web-0: Failed (no copy); PVC db: Succeeded (done)",
            ),
        ];
        for (leaders, phase, message) in cases {
            assert_eq!(progress("failover:1", &leaders, ""), (phase, message.to_string()));
        }
        let (_, with_skipped) = progress("failover:1", &[state("db", None, None)], "PVC reports (primary)");
        assert_eq!(
            with_skipped,
            "failover:1 runs for 1 application(s): PVC db: starting; skipped: PVC reports (primary)"
        );
    }

    #[test]
    fn a_leader_state_reads_its_run_of_the_request() {
        let running = view(
            "db",
            &[
                (keys::ACTION_PHASE, "Running"),
                (keys::ACTION_RUNNING, "failover:1"),
                (keys::ACTION_STEP, "take-over"),
            ],
        );
        assert_eq!(
            LeaderState::of(&running, "failover:1", None, None),
            LeaderState {
                name: "db".into(),
                outcome: None,
                step: Some("take-over".into())
            }
        );
        let done = view("db", &[(keys::ACTION_PHASE, "Succeeded")]);
        assert_eq!(
            LeaderState::of(&done, "failover:1", Some("failover:1"), Some("finished")).outcome,
            Some((Phase::Succeeded, "finished".into()))
        );
        assert_eq!(
            LeaderState::of(&done, "failover:1", Some("failover:0"), None).outcome,
            None,
            "an older request's end is not this one's"
        );
    }
}
