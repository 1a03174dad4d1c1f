//! Which side of a pair a PVC is, and how its protection stands: read by the parser, the
//! planner, the webhook and the controller alike.

/// Which side of a pair a PVC is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Secondary,
    /// A primary that came back after its peer took over in a failover: its application was
    /// stopped and its sync removed (`plan::fence`). Failback from the peer ends it.
    Fenced,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Fenced => "fenced",
        }
    }
}

/// How protection of a PVC stands (`volsync-dr.io/state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Objects or the destination's address are not there yet.
    Pending,
    /// Every object is in place and syncs run.
    Protected,
    /// The peer is unreachable or syncs fail; the reason is in an Event.
    Degraded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Protected => "Protected",
            State::Degraded => "Degraded",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        [State::Pending, State::Protected, State::Degraded]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}
