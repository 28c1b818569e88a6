//! What the engine knows of one incident: its cause, where the kill and the escalation stand,
//! and the healthy snapshot the decisions rest on.

use crate::model::snapshot::Snapshot;
use crate::model::told::RunningFunction;

use super::{KillCommand, Millis};
use crate::model::kinds::{BusyKind, FailoverVia, Then};

/// Where the kill stands within an incident.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kill {
    NotYet,
    /// A module command is busy: no kill exists for it; the budget applies.
    NoneExists,
    /// Sent (or, in dry-run, decided); waiting for its reply.
    Sent {
        command: KillCommand,
        at: Millis,
    },
    /// `+OK`: waiting for a PONG to confirm.
    Accepted {
        command: KillCommand,
        reply_at: Millis,
    },
    /// `-NOTBUSY`, to a kill of a script whose BUSY named it: the script was gone before the
    /// kill arrived (another client's kill, Sentinel's, or its own end); a PONG confirms it.
    Gone {
        at: Millis,
        reply: String,
    },
    /// Answered without effect (unkillable, failed, or decided in dry-run): the budget applies.
    /// `replicated` when the script came from the master (it cannot be killed, and on the
    /// master it has already ended).
    Answered {
        replicated: bool,
    },
}

/// Where the escalation stands within an incident.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Escalation {
    NotYet,
    Withheld,
    /// Dry-run: the shutdown was decided and recorded, not sent.
    ShutdownDecided,
    ShutdownSent,
    ShutdownConfirmed,
    ShutdownFailed,
    /// `then: ask`: awaiting an operator's approval since this instant.
    Asked {
        since: Millis,
    },
    /// `then: failover`: requested at this instant; its outcome is awaited.
    FailoverRequested {
        via: FailoverVia,
        at: Millis,
    },
    /// Dry-run: the failover was decided and recorded, not requested.
    FailoverDecided,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    Busy(BusyKind),
    Hang,
    Unreachable,
}

/// The ladder an incident climbs: the instance's, or a script rule's once the server named the
/// running function and a rule names it (`on_busy.scripts`).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Ladder {
    pub(super) kill_after: Millis,
    pub(super) never_kill: bool,
    pub(super) wait: Millis,
    pub(super) then: Then,
    /// The rule that applies (its `function` as written), `None` for the instance's ladder.
    pub(super) rule: Option<String>,
}

impl Ladder {
    /// The instance's ladder.
    pub(super) fn of(rules: &super::Rules) -> Ladder {
        Ladder {
            kill_after: rules.kill_after,
            never_kill: false,
            wait: rules.wait,
            then: rules.then,
            rule: None,
        }
    }

    /// The ladder for the running script: the first rule naming it, over the instance's.
    pub(super) fn for_script(
        rules: &super::Rules,
        running: crate::policy::scripts::Running,
    ) -> Ladder {
        let base = Ladder::of(rules);
        let Some((_, rule)) = crate::policy::scripts::rule_for(&rules.scripts, running) else {
            return base;
        };
        let ms = |d: std::time::Duration| d.as_millis() as Millis;
        Ladder {
            kill_after: rule.kill_after.map_or(base.kill_after, ms),
            never_kill: rule.never_kill,
            wait: rule.wait.map_or(base.wait, ms),
            then: rule.then.unwrap_or(base.then),
            rule: Some(rule.names.label()),
        }
    }
}

/// One BUSY, hang or unreachable episode.
#[derive(Clone, Debug)]
pub(super) struct Incident {
    /// The ladder it climbs (a script rule's once the function is known).
    pub(super) ladder: Ladder,
    /// The kill waits for the running script's name (FUNCTION STATS or the server's log, a
    /// few ms at most): the BUSY reply it will answer.
    pub(super) identifying: Option<String>,
    /// The running script as it was named, and by what (`function nightly_compact (FUNCTION
    /// STATS)`), or why it could not be (`unknown: ...`), when script rules asked.
    pub(super) identity: Option<String>,
    pub(super) id: String,
    pub(super) opened: Millis,
    pub(super) cause: Cause,
    pub(super) first_busy: Option<Millis>,
    pub(super) kill: Kill,
    /// The kill was sent again with the other command, after the first named it (a BUSY of
    /// unknown form answered SCRIPT KILL with a BUSY naming FUNCTION KILL).
    pub(super) kill_retried: bool,
    pub(super) escalation: Escalation,
    pub(super) hang_reported: bool,
    pub(super) unreachable_reported: bool,
    pub(super) signal_sent: bool,
    /// The server's run id before the incident, to tell a restart in `recovered`.
    pub(super) run_id_before: Option<String>,
    /// An operator approved the escalation (`busyguard approve`): it goes at the next BUSY.
    pub(super) approved: bool,
    /// Why the escalation was withheld, when it was (said by `ps`).
    pub(super) withheld: Option<String>,
    /// The pause or hold last reported as withholding an action here (reported once each).
    pub(super) steer_reported: Option<String>,
    /// This server was failed over during the incident, on this connection, to a successor
    /// busyguard verified (the engine's `successor`): the role-based guards no longer hold back
    /// its zombie's shutdown, and continuity holds whatever script it runs.
    pub(super) failed_over: bool,
    /// `then: failover`: none could be made, or the one requested was not seen: the fallback
    /// applies at the next BUSY reply.
    pub(super) failover_failed: bool,
    /// What FUNCTION STATS said of the running function (FCALL only).
    pub(super) function: Option<RunningFunction>,
    /// The EVAL's SHA1, as the server's log named it (script rules with `sha`).
    pub(super) eval_sha: Option<String>,
    /// Kills this incident sent: more counted by the server means another client's kill.
    pub(super) kills_sent: u64,
    /// The probe connection its evidence came on (see `continuity`).
    pub(super) conn: u64,
    /// The kind its BUSY replies' text named (a script's text never changes; the kill's answer
    /// may tell more of an unknown one, in `cause`).
    pub(super) seen_kind: Option<BusyKind>,
    /// When its last BUSY reply came (or another answer that a script runs: UNKILLABLE, a
    /// running function).
    pub(super) last_busy: Millis,
    /// Why continuity is in doubt since an answer that came late (a kill's queued behind a
    /// silent phase): the next BUSY reply supersedes the incident.
    pub(super) doubt: Option<String>,
    /// When its shutdown was decided, and whether it was lost (it may or may not have landed).
    pub(super) shutdown_at: Option<Millis>,
    pub(super) shutdown_lost: bool,
    /// The incident whose lost shutdown this one may send again (once: a retry is not retried).
    pub(super) retries: Option<String>,
    /// Why a BUSY reply was too slow to rest a shutdown on, as last recorded (once per reason).
    pub(super) slow_reported: bool,
    /// A fence was sent (once per incident): a split brain after its failover.
    pub(super) fenced: bool,
    /// The server answered healthy while the incident stayed open (a fence's or a failover's
    /// outcome awaited): its script is over, and a BUSY reply now is another script's.
    pub(super) answered_healthy: bool,
    /// The failover candidates' replication offsets, asked just before the request (beside the
    /// probe), and whether they were asked.
    pub(super) offsets: Option<Vec<(String, Option<u64>)>>,
    pub(super) offsets_asked: bool,
    /// How far behind each replica was when the failover was requested (bytes, a lower bound).
    pub(super) requested_behind: Vec<(String, u64)>,
}

impl Incident {
    /// The running script, as the server named it during this incident.
    pub(super) fn running(&self) -> Option<crate::policy::scripts::Running<'_>> {
        use crate::policy::scripts::Running;
        match (
            &self.eval_sha,
            self.function.as_ref().and_then(|f| f.name()),
        ) {
            (Some(sha), _) => Some(Running::Eval(sha)),
            (None, Some(name)) => Some(Running::Function(name)),
            (None, None) => None,
        }
    }
}

/// The healthy snapshot held, when it was taken, and whether this run took it.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub(super) snapshot: Snapshot,
    pub(super) taken: Millis,
    /// Taken by this run (false: restored from the trail of an earlier run).
    pub(super) fresh: bool,
}
