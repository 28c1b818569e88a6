//! Whether a shutdown may go: the policy's `then`, its `limits`, and its `guards`, as one pure
//! function of what is known. One guard is on unless the policy turns it off: a primary with
//! replicas and no persistence is not shut down (`guards.allow_empty_restart`), since it would
//! come back empty and empty its replicas. A guard whose input is unknown withholds and names the input: a
//! kill is harmless, a shutdown is not, so busyguard never shuts a server down on facts it does
//! not have (no healthy snapshot, a snapshot that could not read INFO, one restored from the
//! trail of an earlier run, a role that may have changed).

use crate::model::kinds::Resort;
use crate::model::snapshot::Snapshot;

use super::{Millis, Rules};

/// The healthy snapshot a decision can lean on, and where it came from.
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    pub snapshot: Option<&'a Snapshot>,
    /// Taken by this run of busyguard (not restored from the trail of an earlier run).
    pub fresh: bool,
    /// Sentinel has failed this server over during the incident: it is no longer a primary
    /// (with replicas, or whose restart would empty them), and its data lives on in the new one.
    pub demoted: bool,
    /// The server's last count of unsaved changes, as fresh as the decision needs.
    pub counted: Counted,
}

/// The last count of changes not saved yet (INFO persistence, read with each probe under
/// `guards.max_unsaved_changes`, and with each snapshot), against the incident's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Read within the bound before the script started.
    Fresh { changes: u64, aof: bool },
    /// Read longer before the script's first BUSY than the bound: writes may have come since.
    Stale { age_ms: Millis, bound_ms: Millis },
    /// Never read (INFO refused or silent on it).
    Unknown,
}

/// Why a shutdown is withheld.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withheld {
    pub reason: String,
    /// The decision input that was unknown, when that is the reason.
    pub missing: Option<String>,
}

impl Withheld {
    fn because(reason: String) -> Withheld {
        Withheld {
            reason,
            missing: None,
        }
    }

    fn missing(guard: &str, input: &str, why: &str) -> Withheld {
        Withheld {
            reason: format!(
                "{guard}: {input} is unknown ({why}); a shutdown never goes on a guess"
            ),
            missing: Some(input.to_string()),
        }
    }
}

/// Whose word an escalation at the end of the budget follows, and what it says: the one input
/// that tells a shutdown from a notification, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `then: shutdown`.
    Shutdown,
    /// `then: notify`.
    Notify,
    /// An operator's `busyguard approve`.
    Approved,
    /// `ask.default`, at the end of `ask.timeout` with no approval.
    AskDefault(Resort),
    /// `failover.fallback`: no failover was made.
    FailoverFallback(Resort),
    /// The server was failed over: its zombie is ended.
    Demoted,
}

impl Order {
    /// Why no shutdown goes, when the order is a notification.
    fn notifies(self) -> Option<&'static str> {
        match self {
            Order::Shutdown
            | Order::Approved
            | Order::Demoted
            | Order::AskDefault(Resort::Shutdown)
            | Order::FailoverFallback(Resort::Shutdown) => None,
            Order::Notify => Some("policy: `on_unkillable.then` is `notify`"),
            Order::AskDefault(Resort::Notify) => {
                Some("no approval within `ask.timeout`, and `ask.default` is `notify`")
            }
            Order::FailoverFallback(Resort::Notify) => Some(
                "no failover was made (see `failover_failed`), and `failover.fallback` is `notify`",
            ),
        }
    }
}

/// Why a shutdown must not be sent at `now`, if it must not. `order` is what the escalation
/// follows; `shutdowns` are the instants at which shutdowns were decided (this run's and the
/// trail's).
pub fn withheld(
    rules: &Rules,
    order: Order,
    shutdowns: &[Millis],
    known: Known,
    now: Millis,
) -> Option<Withheld> {
    if let Some(why) = order.notifies() {
        return Some(Withheld::because(why.into()));
    }
    let recent = shutdowns
        .iter()
        .filter(|t| now.saturating_sub(**t) < rules.per)
        .count();
    // An operator's approval is their decision: it lifts `limits` (never the guards below).
    if order != Order::Approved && recent >= rules.max_shutdowns as usize {
        return Some(Withheld::because(format!(
            "limits: {recent} shutdown(s) already within {} (max_shutdowns {})",
            humantime::format_duration(std::time::Duration::from_millis(rules.per)),
            rules.max_shutdowns
        )));
    }
    // Failed over: its data lives on in the new primary, so the guards that protect a primary
    // no longer hold it back; what tells one script from the next still must be known.
    if known.demoted {
        return continuity(known);
    }

    let guards = &rules.guards;
    // The opt-in guards want this run's own snapshot. The empty-restart guard also takes one
    // restored from the trail: neither the role nor the replicas nor the persistence can change
    // while a script holds the server.
    let needs_fresh = guards.max_unsaved_changes.is_some() || guards.keep_primary_with_replicas;
    if !needs_fresh && guards.allow_empty_restart {
        return continuity(known);
    }
    let snapshot = match (known.snapshot, known.fresh) {
        (None, _) => {
            return Some(Withheld::missing(
                first_guard(rules),
                "snapshot",
                "no healthy snapshot yet: the server has been busy or unreachable since busyguard started",
            ));
        }
        (Some(_), false) if needs_fresh => {
            return Some(Withheld::missing(
                first_guard(rules),
                "snapshot",
                "the only snapshot is restored from the trail of an earlier run of busyguard and may be stale",
            ));
        }
        (Some(s), _) => s,
    };
    let unread = || {
        if snapshot.errors.is_empty() {
            "INFO did not say".to_string()
        } else {
            snapshot.errors.join("; ")
        }
    };
    if let Some(max) = guards.max_unsaved_changes {
        const GUARD: &str = "guards.max_unsaved_changes";
        match known.counted {
            Counted::Unknown => {
                let input = match snapshot.aof_enabled {
                    None => "aof_enabled",
                    Some(_) => "rdb_changes_since_last_save",
                };
                return Some(Withheld::missing(GUARD, input, &unread()));
            }
            Counted::Stale { age_ms, bound_ms } => {
                return Some(Withheld::missing(
                    GUARD,
                    "rdb_changes_since_last_save",
                    &format!(
                        "the last count was read {age_ms} ms before the script's first BUSY \
                         reply, more than the {bound_ms} ms it may be: writes may have come since"
                    ),
                ));
            }
            Counted::Fresh { aof: true, .. } => {}
            Counted::Fresh { changes, .. } if changes > max => {
                return Some(Withheld::because(format!(
                    "{GUARD}: RDB-only instance with {changes} unsaved changes (max {max})"
                )));
            }
            Counted::Fresh { .. } => {}
        }
    }
    if guards.keep_primary_with_replicas {
        match (snapshot.role.as_deref(), snapshot.connected_replicas) {
            (None, _) => {
                return Some(Withheld::missing(
                    "guards.keep_primary_with_replicas",
                    "role",
                    &unread(),
                ));
            }
            (Some("master"), None) => {
                return Some(Withheld::missing(
                    "guards.keep_primary_with_replicas",
                    "connected_replicas",
                    &unread(),
                ));
            }
            (Some("master"), Some(n)) if n > 0 => {
                return Some(Withheld::because(format!(
                    "guards.keep_primary_with_replicas: primary with {n} replica(s) attached"
                )));
            }
            _ => {}
        }
    }
    if !guards.allow_empty_restart
        && let Some(w) = empty_restart(snapshot, &unread)
    {
        return Some(w);
    }
    continuity(known)
}

/// A script boundary is told from the BUSY stream by the threshold (see `continuity`): without
/// it, whether one script or several gave the BUSY replies cannot be told.
fn continuity(known: Known) -> Option<Withheld> {
    match known.snapshot.map(|s| s.busy_threshold_ms) {
        Some(Some(t)) if t > 0 => None,
        None => Some(Withheld::missing(
            "continuity",
            "snapshot",
            "no healthy snapshot yet, so no threshold: whether one script or several gave the \
             BUSY replies cannot be told",
        )),
        Some(_) => Some(Withheld::missing(
            "continuity",
            "busy_threshold_ms",
            "CONFIG GET did not say it: whether one script or several gave the BUSY replies \
             cannot be told without it",
        )),
    }
}

/// A primary with replicas and no persistence comes back empty from a restart (Debian's
/// `redis-server.service` restarts it within a second), and its replicas resync to the empty
/// dataset: a shutdown would lose the data the replicas still hold.
fn empty_restart(snapshot: &Snapshot, unread: &dyn Fn() -> String) -> Option<Withheld> {
    const GUARD: &str = "guards.allow_empty_restart";
    let replicas = match (snapshot.role.as_deref(), snapshot.connected_replicas) {
        (None, _) => return Some(Withheld::missing(GUARD, "role", &unread())),
        (Some("master"), None) => {
            return Some(Withheld::missing(GUARD, "connected_replicas", &unread()));
        }
        (Some("master"), Some(n)) if n > 0 => n,
        _ => return None,
    };
    let persistent = match (snapshot.aof_enabled, snapshot.save.as_deref()) {
        (Some(true), _) => true,
        (Some(false), Some(save)) => !save.trim().is_empty(),
        (None, _) => return Some(Withheld::missing(GUARD, "aof_enabled", &unread())),
        (Some(false), None) => return Some(Withheld::missing(GUARD, "save", &unread())),
    };
    (!persistent).then(|| {
        Withheld::because(format!(
            "{GUARD}: a primary with {replicas} replica(s) and no persistence (appendonly no, save \"\") restarts empty and its replicas resync to the empty dataset; fail the role over first, or set `{GUARD}: true` to accept that"
        ))
    })
}

/// The guard named when the whole snapshot is missing.
fn first_guard(rules: &Rules) -> &'static str {
    if rules.guards.max_unsaved_changes.is_some() {
        "guards.max_unsaved_changes"
    } else if rules.guards.keep_primary_with_replicas {
        "guards.keep_primary_with_replicas"
    } else {
        "guards.allow_empty_restart"
    }
}
