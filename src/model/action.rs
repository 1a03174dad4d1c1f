//! Action requests: `volsync-dr.io/action: VERB[:ID]`.

use std::fmt;
use std::str::FromStr;

/// The verbs a user may request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    SyncNow,
    Migrate,
    Failover,
    Failback,
    /// A new pre-shared key for the pair, on both clusters, between two syncs.
    RotateKey,
}

impl Verb {
    pub const ALL: [Verb; 5] = [
        Verb::SyncNow,
        Verb::Migrate,
        Verb::Failover,
        Verb::Failback,
        Verb::RotateKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::SyncNow => "sync-now",
            Verb::Migrate => "migrate",
            Verb::Failover => "failover",
            Verb::Failback => "failback",
            Verb::RotateKey => "rotate-key",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest ID accepted: it ends up in `trigger.manual` and in Event messages.
pub const MAX_ID: usize = 63;

pub const ACCEPTED: &str = "VERB or VERB:ID, VERB one of sync-now, migrate, failover, failback, rotate-key, \
     ID up to 63 letters, digits, '.', '_' or '-' starting with a letter or digit";

/// One request. Two requests are the same request when their text is the same, so a user
/// repeats an action by changing its ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRequest {
    pub verb: Verb,
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(String);

impl FromStr for ActionRequest {
    type Err = ActionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (verb_text, id) = match text.split_once(':') {
            Some((verb, id)) => (verb, Some(id)),
            None => (text, None),
        };
        let verb = Verb::ALL
            .into_iter()
            .find(|v| v.as_str() == verb_text)
            .ok_or_else(|| ActionError(format!("unknown verb {verb_text:?}")))?;
        if let Some(id) = id {
            let valid_chars = id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            let starts_well = id.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric);
            if id.is_empty() || id.len() > MAX_ID || !valid_chars || !starts_well {
                return Err(ActionError(format!("invalid ID {id:?}")));
            }
        }
        Ok(ActionRequest {
            verb,
            id: id.map(str::to_string),
        })
    }
}

impl fmt::Display for ActionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{}:{id}", self.verb),
            None => write!(f, "{}", self.verb),
        }
    }
}

/// Why `verb` cannot run on a PVC of this role, if it cannot. The webhook and the controller
/// both ask this, so they refuse the same requests with the same words.
pub fn refusal_for_role(verb: Verb, role: super::role::Role) -> Option<String> {
    use super::role::Role;
    match (verb, role) {
        (Verb::Failover, Role::Primary) => {
            Some("failover runs on the secondary (volsync-dr.io/role=secondary); this PVC is the primary".into())
        }
        (Verb::Failback, Role::Secondary) => Some(
            "failback runs on the cluster that took over after a failover (volsync-dr.io/role=primary); this PVC is the secondary".into(),
        ),
        (Verb::Migrate | Verb::SyncNow | Verb::RotateKey, Role::Secondary) => {
            Some(format!("{verb} runs on the primary; this PVC is the secondary"))
        }
        (_, Role::Fenced) => Some(format!(
            "this PVC is fenced (its peer took over in a failover while it was away; see volsync-dr.io/fenced): \
             {verb} cannot run here; request failback on the peer to return the application here"
        )),
        _ => None,
    }
}

/// An action is pending when the request differs from the last one finished.
pub fn is_pending(action: Option<&str>, last_action: Option<&str>) -> bool {
    matches!(action, Some(a) if Some(a) != last_action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_verb_with_and_without_id() {
        for verb in Verb::ALL {
            let plain: ActionRequest = verb.as_str().parse().expect("plain verb");
            assert_eq!(plain, ActionRequest { verb, id: None });
            assert_eq!(plain.to_string(), verb.as_str());
            let text = format!("{verb}:2026-11-24.a_1");
            let with_id: ActionRequest = text.parse().expect("verb with id");
            assert_eq!(with_id.id.as_deref(), Some("2026-11-24.a_1"));
            assert_eq!(with_id.to_string(), text);
        }
    }

    #[test]
    fn refuses_bad_requests() {
        let long = format!("migrate:{}", "a".repeat(64));
        let cases: &[(&str, &str)] = &[
            ("", "unknown verb \"\""),
            ("fail-over", "unknown verb \"fail-over\""),
            ("Migrate", "unknown verb \"Migrate\""),
            ("migrate:", "invalid ID \"\""),
            ("migrate:-x", "invalid ID"),
            ("migrate:a b", "invalid ID"),
            ("migrate:a:b", "invalid ID"),
            (&long, "invalid ID"),
        ];
        for (text, why) in cases {
            let err = text.parse::<ActionRequest>().expect_err(text).to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn which_role_runs_which_verb() {
        use crate::model::role::Role;
        let cases = [
            (Verb::SyncNow, Role::Primary, None),
            (Verb::Migrate, Role::Primary, None),
            (Verb::Failback, Role::Primary, None),
            (Verb::Failover, Role::Secondary, None),
            (Verb::Failover, Role::Primary, Some("failover runs on the secondary")),
            (
                Verb::Failback,
                Role::Secondary,
                Some("failback runs on the cluster that took over"),
            ),
            (Verb::SyncNow, Role::Secondary, Some("sync-now runs on the primary")),
            (Verb::Migrate, Role::Secondary, Some("migrate runs on the primary")),
            (Verb::RotateKey, Role::Primary, None),
            (Verb::RotateKey, Role::Secondary, Some("rotate-key runs on the primary")),
        ];
        for (verb, role, want) in cases {
            let got = refusal_for_role(verb, role);
            match want {
                None => assert_eq!(got, None, "{verb} on {role:?}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{verb} on {role:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn pending_iff_differs_from_last() {
        assert!(is_pending(Some("migrate:1"), None));
        assert!(is_pending(Some("migrate:2"), Some("migrate:1")));
        assert!(!is_pending(Some("migrate:1"), Some("migrate:1")));
        assert!(!is_pending(None, Some("migrate:1")));
        assert!(!is_pending(None, None));
    }
}
