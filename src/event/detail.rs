//! The detail of each kind of event, as typed values. The field names here are the trail's
//! (and the receivers') contract: this is the only place they are spelled. A detail serializes
//! through `serde_json::Value`, whose map sorts keys, which is how the trail has always been
//! written; `tests/fixtures/trails/` holds trails written before these types existed, and a
//! test reads each line back and writes it again byte for byte.
//!
//! `Option` fields without `skip_serializing_if` are written as `null` when unknown: an
//! operator reading the trail sees that the input was looked for and missing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::kinds::{BusyKind, FailoverVia, Resort, Then};
use crate::model::snapshot::{DataAtRisk, ReplicaLink, Snapshot};

use super::EventKind;

/// What the policy said, as every decision record carries it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyInputs {
    pub kill_after_ms: u64,
    pub wait_ms: u64,
    pub then: Then,
    pub max_shutdowns: u32,
    pub per_ms: u64,
    /// The `on_busy.scripts` rule the incident climbs (its `function`), when one named the
    /// running function; the ladder above is then the rule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_rule: Option<String>,
    /// The running script as script rules saw it named (`function nightly_compact (FUNCTION
    /// STATS)`, `eval <sha1> (the server's log)`), or why it could not be (`unknown: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

/// The inputs every decision record carries: time in the incident, the policy, and the healthy
/// snapshot the decision rests on, with its age.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionInputs {
    pub since_first_busy_ms: Option<u64>,
    pub budget_left_ms: Option<u64>,
    pub policy: PolicyInputs,
    pub threshold_ms: Option<u64>,
    pub snapshot_age_ms: Option<u64>,
    pub snapshot: Option<Snapshot>,
    pub data_at_risk: Option<DataAtRisk>,
    /// The snapshot was not taken by this run of busyguard but restored from the trail (an
    /// incident left open by an earlier run): facts from before a restart, possibly stale.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot_from_trail: bool,
    /// A server busyguard verified took over from this one, when one did: this server is
    /// fenced should it answer as a primary again (as the policy allows). Carried across a
    /// restart of busyguard from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<crate::model::takeover::Successor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusyDetected {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub reply: String,
    pub busy_kind: BusyKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The incident left open by an earlier run that this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillSent {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub command: String,
    pub reply_seen: String,
}

/// The server's answer to a kill (`unkillable`, and `action_failed` for a kill).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillAnswer {
    pub command: String,
    pub reply_ms: u64,
    pub budget_left_ms: Option<u64>,
    pub then: Then,
    pub reply: String,
    /// The script came from the master (replication) or the AOF: it cannot be killed, and
    /// on the master it has already finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replicated: bool,
    /// What a shutdown at the end of the budget would lose, as the healthy snapshot says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_at_risk: Option<DataAtRisk>,
    /// How old the snapshot `data_at_risk` was counted from, when the kill was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_at_risk_age_ms: Option<u64>,
    /// The running function, as FUNCTION STATS named it just ahead of the kill (FCALL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// How long the server had been answering BUSY when the kill was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_first_busy_ms: Option<u64>,
}

pub type Unkillable = KillAnswer;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Killed {
    pub command: String,
    pub confirmed_ms_after_reply: u64,
    pub since_first_busy_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShutdownSent {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub reply_seen: String,
    pub command: String,
    pub abort_first: bool,
    /// The 6.x form that goes instead, when the version is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShutdownConfirmed {
    pub confirm_ms: u64,
    pub since_first_busy_ms: Option<u64>,
    pub how: String,
    /// The form that ended the server (named since the 6.x fallback exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// An action an operator's pause holds back besides the escalation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WithheldAction {
    Kill,
    /// A shutdown whose record was written, held back by the gate (its evidence no longer
    /// held): not sent, and not counted for `limits`.
    Shutdown,
    /// A failover request likewise.
    Failover,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EscalationWithheld {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub reason: String,
    /// The action withheld when it is not the escalation itself (`kill`, while paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld_action: Option<WithheldAction>,
    /// The decision input that was unknown, when that is why it was withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Withheld by an operator's own pause or hold: information, never a page (the person who
    /// paused is not to be woken by their pause).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_operator: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HangDetected {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub silent_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalSent {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub silent_ms: u64,
    pub signal: String,
    pub pid: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unreachable {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub reason: String,
}

/// How an incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoveredHow {
    #[serde(rename = "killed")]
    Killed,
    #[serde(rename = "restarted after shutdown")]
    RestartedAfterShutdown,
    #[serde(rename = "reachable again")]
    ReachableAgain,
    #[serde(rename = "ended by itself")]
    EndedByItself,
    /// The server counted a SCRIPT KILL or FUNCTION KILL busyguard did not send.
    #[serde(rename = "killed by another client")]
    KilledByOther,
    /// The server came back under a new run id, and busyguard shut nothing down (an operator's
    /// SHUTDOWN, a crash, the OOM killer).
    #[serde(rename = "restarted, not by busyguard")]
    RestartedByOther,
    /// An old primary that answered as a primary after its failover, made a replica of the new
    /// one (`split_brain`).
    #[serde(rename = "fenced as a replica")]
    Fenced,
    /// Such an old primary that the policy does not let busyguard fence (`then: notify`, no
    /// `topology.fence`), or whose fence failed: two primaries remain.
    #[serde(rename = "still a primary, not fenced")]
    NotFenced,
}

impl RecoveredHow {
    pub fn text(self) -> &'static str {
        match self {
            RecoveredHow::Killed => "killed",
            RecoveredHow::RestartedAfterShutdown => "restarted after shutdown",
            RecoveredHow::ReachableAgain => "reachable again",
            RecoveredHow::EndedByItself => "ended by itself",
            RecoveredHow::KilledByOther => "killed by another client",
            RecoveredHow::RestartedByOther => "restarted, not by busyguard",
            RecoveredHow::Fenced => "fenced as a replica",
            RecoveredHow::NotFenced => "still a primary, not fenced",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recovered {
    pub how: RecoveredHow,
    /// The kill's answer when it found no script running (`NOTBUSY`): another client's kill,
    /// or the script's own end, came first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_reply: Option<String>,
    pub duration_ms: u64,
    pub since_first_busy_ms: Option<u64>,
    pub restarted: Option<bool>,
    pub run_id: Option<String>,
    /// What the server could tell after the fact (SLOWLOG, counters, the running function):
    /// the server's own words, kept as it gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forensics: Option<Value>,
}

/// Which action failed, for the shutdown and signal forms of `action_failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailedAction {
    Shutdown,
    Signal,
    /// The `REPLICAOF` that fences an old primary.
    Fence,
}

/// `failover_requested`: the budget is spent, the last reply was BUSY, and a replica is to be
/// promoted (written and flushed before the request leaves).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverRequested {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub via: FailoverVia,
    /// The command, as sent (`SENTINEL FAILOVER <master>`, `CLUSTER FAILOVER FORCE`).
    pub request: String,
    /// Where it goes: the replica (Cluster), or the Sentinel master name (each sentinel in turn).
    pub sent_to: String,
    /// The replicas online within the lag bound in the healthy snapshot, least behind first:
    /// the Cluster's request goes to the first; Sentinel chooses by its own rules among them.
    pub replicas: Vec<ReplicaLink>,
    pub timeout_ms: u64,
    /// What applies should the failover not be made.
    pub fallback: Resort,
    pub reply_seen: String,
    /// The primary's last known replication offset (the healthy snapshot's: a lower bound, the
    /// writes acknowledged since are not in it), against which the replicas' `behind_bytes`
    /// were measured, each asked just before the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_offset: Option<u64>,
}

/// `split_brain`: this server answers as a primary after its role moved to `new_primary`; the
/// fence (`REPLICAOF`) goes next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitBrain {
    pub new_primary: String,
    /// The command, as sent; `None` when none is (`not_fenced` says why).
    pub fence: Option<String>,
    /// Why no fence goes (`then: notify`, no `topology.fence`), and what to do by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_fenced: Option<String>,
    /// How it came back as a primary.
    pub why: String,
    /// This server's role as it last said (`master`; unknown without a fresh snapshot).
    pub role: Option<String>,
}

/// `failover_completed`: a replica is the primary now; the busy old primary is shut down at its
/// next BUSY reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverCompleted {
    pub via: FailoverVia,
    pub new_primary: String,
    /// Its run id and `master_replid2` (this server's history it continues), as busyguard
    /// verified them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_primary_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_primary_replid2: Option<String>,
    /// From the request to the promotion seen.
    pub elapsed_ms: u64,
    pub since_first_busy_ms: Option<u64>,
    /// How the promotion was seen (the replica's ROLE, Sentinel's answer).
    pub seen_by: String,
    /// What the promoted replica lacked when the failover was requested: bytes behind the
    /// primary's last known offset (at least that much acknowledged data may be lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_lose_bytes: Option<u64>,
}

/// `failover_failed`: no failover could be made (no replica, no topology) or the one asked for
/// did not happen in time; `fallback` applies at the next BUSY reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverFailed {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    /// Whether a request was sent (false: none could be).
    pub requested: bool,
    pub reason: String,
    pub fallback: Resort,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleChanged {
    /// Who says so (`sentinel`).
    pub by: String,
    /// The server now serving as the primary (`host:port`) and its run id, as busyguard
    /// verified them, with the `master_replid2` that continues this server's history.
    pub primary: String,
    pub primary_run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_replid2: Option<String>,
    /// What follows: the role-based guards no longer apply to this server.
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActionFailed {
    Shutdown {
        action: FailedAction,
        reply: String,
        note: String,
    },
    Signal {
        action: FailedAction,
        error: String,
    },
    Kill(KillAnswer),
}

impl ActionFailed {
    /// The action that failed, as metrics name it.
    pub fn action(&self) -> &'static str {
        match self {
            ActionFailed::Kill(_) => "kill",
            ActionFailed::Shutdown {
                action: FailedAction::Fence,
                ..
            } => "fence",
            ActionFailed::Shutdown { .. } => "shutdown",
            ActionFailed::Signal { .. } => "signal",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProbeFault {
    ThresholdZero {
        warning: String,
        threshold_ms: u64,
    },
    /// busyguard's credential, checked again with a snapshot, was refused (a password rotated
    /// on the server): the connection logged in before still works, the next will not.
    LoginRefused {
        login_refused: String,
        note: String,
    },
    /// The healthy snapshot could not be taken whole: decisions that need what is missing
    /// withhold; detection (PING) goes on.
    SnapshotIncomplete {
        snapshot_errors: Vec<String>,
        note: String,
    },
    Fault {
        reply: String,
        note: String,
    },
    /// Another server answers at the policy's address than the one before, and it did not
    /// just restart (it was up all along): the address leads to more than one server (a VIP,
    /// a DNS name, a proxy), and `redis.url` must address the server itself.
    Elsewhere {
        warning: String,
        run_id_before: String,
        run_id_now: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WatchdogStarted {
    Instance {
        resumed_incident: Option<String>,
        endpoint: String,
        policy_file: String,
        policy_hash: String,
        dry_run: bool,
        probe_interval_ms: u64,
        /// What this start carried over from the trail. A later start reads the trail back no
        /// further than this record for it: the record sums up everything before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        carried: Option<Carried>,
    },
    Daemon {
        version: String,
        pid: u32,
        dry_run_forced: bool,
        resumed_after_seq: u64,
        torn_tail_bytes: usize,
    },
}

/// The state an instance's watchdog carries across a restart of busyguard, as it stood when the
/// watchdog started (`watchdog_started`'s `carried`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    /// The operator's pause still in force.
    pub pause: Option<CarriedPause>,
    /// Where early warnings go on in the SLOWLOG: (run id, SLOWLOG id).
    pub slowlog_cursor: Option<SlowlogCursor>,
    /// The operator's hold still in force (it lasts until released, or until the server is
    /// healthy again).
    #[serde(default)]
    pub hold: Option<CarriedHold>,
}

/// A hold in force: by whom, why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CarriedHold {
    pub by: String,
    pub reason: String,
}

/// A pause in force: until when, by whom, why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CarriedPause {
    pub until_unix_ms: u64,
    pub by: String,
    pub reason: String,
}

/// The newest SLOWLOG entry early warnings have looked at, on the server run it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowlogCursor {
    pub run_id: Option<String>,
    pub slowlog_id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WatchdogStopped {
    Instance {
        state: String,
        incident_in_flight: Option<String>,
    },
    Daemon {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyLoaded {
    pub file: String,
    pub policy_hash: String,
    pub endpoint: String,
    pub update: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyRejected {
    pub file: String,
    pub errors: Vec<String>,
    pub kept_running: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotifyFailed {
    pub receiver: String,
    pub kind: String,
    pub event: EventKind,
    pub seq: u64,
    pub attempts: u32,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentSuperseded {
    /// Why the earlier incident was not resumed.
    pub reason: String,
    /// The incident that follows it.
    pub by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrailFault {
    /// Records that could not be written, now that one can be.
    Gap {
        lost_records: u64,
        lost_events: Vec<EventKind>,
        /// A partial line that could not be cut back: it precedes this record.
        torn_bytes: usize,
        error: String,
    },
    /// The trail's path no longer named the open file; it was reopened and the chain goes on.
    Reopened { path: String, why: String },
    /// Told to receivers directly while the trail cannot be written; never in the trail.
    Failing { path: String, error: String },
}

/// A script the SLOWLOG shows ran long, before it ever went BUSY.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowScript {
    /// The function's name (FCALL), the SHA (EVALSHA), or the body's first line (EVAL), cut.
    pub script: String,
    /// `EVAL`, `EVALSHA`, `FCALL` or their `_RO` forms.
    pub command: String,
    pub duration_ms: u64,
    pub threshold_ms: Option<u64>,
    /// `duration_ms / threshold_ms`, two decimals.
    pub share_of_threshold: Option<f64>,
    pub client_addr: String,
    pub client_name: String,
    /// How often this script crossed the line in the last hour.
    pub count_last_hour: u32,
    /// Crossings not told since the last warning of this script (told at most hourly).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats_since_last: u32,
    /// The SLOWLOG entry's id and the server's run id: where a restarted busyguard goes on.
    pub slowlog_id: u64,
    pub run_id: Option<String>,
    pub logged_at_unix: u64,
    /// Told as a storm: its runs just under the threshold held the server this long within the
    /// window (valkey-io/valkey#2773: a stall that never goes BUSY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<Storm>,
}

/// A storm of one script's runs just under the busy threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Storm {
    pub runs: u32,
    pub held_ms: u64,
    pub window_ms: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A command an operator sent through the control socket (or a pause ending by itself).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorCommand {
    /// `pause`, `resume`, `hold`, `release`, `approve`, `stopping` (the pod is stopping:
    /// `--kill-on-stop`), or `pause_expired`.
    pub command: String,
    /// The caller, from the socket's peer credentials (`busyguard` for an expiry and its own
    /// SIGTERM, `preStop (HTTP from ADDR)` for kubelet's call).
    pub by_user: String,
    pub by_uid: Option<u32>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_unix_ms: Option<u64>,
}

/// `then: ask` at the end of the budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    #[serde(flatten)]
    pub inputs: DecisionInputs,
    pub timeout_ms: u64,
    /// What happens if no one answers: `shutdown` or `notify`.
    pub default: Resort,
    /// RFC 3339 time of the default.
    pub deadline: String,
    pub approve: String,
    pub hold: String,
}

impl crate::event::Detail {
    /// What SHUTDOWN NOSAVE would lose, where the record says it.
    pub fn data_at_risk(&self) -> Option<&DataAtRisk> {
        use crate::event::Detail as D;
        match self {
            D::Unkillable(d) | D::ActionFailed(ActionFailed::Kill(d)) => d.data_at_risk.as_ref(),
            // An outage: no shutdown is ahead, and what is at risk is not busyguard's to say.
            D::Unreachable(_) => None,
            other => other.inputs()?.data_at_risk.as_ref(),
        }
    }

    /// How old the snapshot [`Detail::data_at_risk`] was counted from, when known: a count of
    /// changes is only as true as it is fresh.
    pub fn data_at_risk_age_ms(&self) -> Option<u64> {
        use crate::event::Detail as D;
        match self {
            D::Unkillable(d) | D::ActionFailed(ActionFailed::Kill(d)) => d.data_at_risk_age_ms,
            other => other.inputs()?.snapshot_age_ms,
        }
    }

    /// The decision inputs, for kinds that carry them.
    pub fn inputs(&self) -> Option<&DecisionInputs> {
        use crate::event::Detail as D;
        match self {
            D::BusyDetected(d) => Some(&d.inputs),
            D::KillSent(d) => Some(&d.inputs),
            D::ShutdownSent(d) => Some(&d.inputs),
            D::EscalationWithheld(d) => Some(&d.inputs),
            D::ApprovalRequested(d) => Some(&d.inputs),
            D::HangDetected(d) => Some(&d.inputs),
            D::SignalSent(d) => Some(&d.inputs),
            D::Unreachable(d) => Some(&d.inputs),
            D::FailoverRequested(d) => Some(&d.inputs),
            D::FailoverFailed(d) => Some(&d.inputs),
            _ => None,
        }
    }

    /// Time since the first BUSY, where the record says it.
    pub fn since_first_busy_ms(&self) -> Option<u64> {
        use crate::event::Detail as D;
        match self {
            D::Killed(d) => d.since_first_busy_ms,
            D::Unkillable(d) | D::ActionFailed(ActionFailed::Kill(d)) => d.since_first_busy_ms,
            D::ShutdownConfirmed(d) => d.since_first_busy_ms,
            D::Recovered(d) => d.since_first_busy_ms,
            other => other.inputs().and_then(|i| i.since_first_busy_ms),
        }
    }

    /// Budget left before escalation, where the record says it.
    pub fn budget_left_ms(&self) -> Option<u64> {
        use crate::event::Detail as D;
        match self {
            D::Unkillable(d) => d.budget_left_ms,
            D::ActionFailed(ActionFailed::Kill(d)) => d.budget_left_ms,
            other => other.inputs().and_then(|i| i.budget_left_ms),
        }
    }

    /// The command a record names (kill, shutdown), if any.
    pub fn command(&self) -> Option<&str> {
        use crate::event::Detail as D;
        match self {
            D::KillSent(d) => Some(&d.command),
            D::Killed(d) => Some(&d.command),
            D::Unkillable(d) => Some(&d.command),
            D::ActionFailed(ActionFailed::Kill(d)) => Some(&d.command),
            D::ShutdownSent(d) => Some(&d.command),
            _ => None,
        }
    }

    /// The words that explain the record best: a reason, a reply, how it ended, a warning.
    pub fn explanation(&self) -> Option<String> {
        use crate::event::Detail as D;
        Some(match self {
            D::EscalationWithheld(d) => d.reason.clone(),
            D::Unreachable(d) => d.reason.clone(),
            D::NotifyFailed(d) => d.reason.clone(),
            D::IncidentSuperseded(d) => d.reason.clone(),
            D::TrailFault(TrailFault::Gap {
                lost_records,
                error,
                ..
            }) => format!("{lost_records} record(s) could not be written: {error}"),
            D::TrailFault(TrailFault::Reopened { why, .. }) => why.clone(),
            D::TrailFault(TrailFault::Failing { error, .. }) => {
                format!("the audit trail cannot be written: {error}")
            }
            D::OperatorCommand(d) => format!(
                "{} by {}{}: {}",
                d.command,
                d.by_user,
                d.until
                    .as_deref()
                    .map(|u| format!(" until {u}"))
                    .unwrap_or_default(),
                d.reason
            ),
            D::ApprovalRequested(d) => format!(
                "approve with `{}` or hold with `{}`; at {} without an answer: {}",
                d.approve,
                d.hold,
                d.deadline,
                d.default.name()
            ),
            D::SlowScript(SlowScript {
                storm: Some(storm),
                command,
                script,
                ..
            }) => format!(
                "storm: {command} `{script}` ran {} times just under the busy threshold, holding the server {} of the last {} without ever going BUSY",
                storm.runs,
                crate::model::duration::human_ms(storm.held_ms),
                crate::model::duration::human_ms(storm.window_ms)
            ),
            D::SlowScript(d) => format!(
                "{} `{}` ran {} ms ({} of the threshold), {} time(s) in the last hour",
                d.command,
                d.script,
                d.duration_ms,
                d.share_of_threshold
                    .map_or("?".into(), |s| format!("{:.0}%", s * 100.0)),
                d.count_last_hour
            ),
            D::BusyDetected(d) => d.reply.clone(),
            D::Unkillable(d) => d.reply.clone(),
            D::ActionFailed(ActionFailed::Kill(d)) => d.reply.clone(),
            D::ActionFailed(ActionFailed::Shutdown { reply, .. }) => reply.clone(),
            D::ActionFailed(ActionFailed::Signal { error, .. }) => error.clone(),
            D::ProbeFault(ProbeFault::Fault { reply, .. }) => reply.clone(),
            D::ProbeFault(
                ProbeFault::ThresholdZero { warning, .. } | ProbeFault::Elsewhere { warning, .. },
            ) => warning.clone(),
            D::ProbeFault(ProbeFault::LoginRefused { login_refused, .. }) => login_refused.clone(),
            D::ProbeFault(ProbeFault::SnapshotIncomplete {
                snapshot_errors, ..
            }) => snapshot_errors.join("; "),
            D::Recovered(d) => d.how.text().to_string(),
            D::ShutdownConfirmed(d) => d.how.clone(),
            D::PolicyLoaded(d) => format!(
                "{} {} for {}",
                d.file,
                if d.update { "updated" } else { "loaded" },
                d.endpoint
            ),
            // One line that says what runs meanwhile, then the file and its first error (a log
            // line's message is cut at 200 characters; the record keeps every error).
            D::PolicyRejected(d) => format!(
                "{} ({} error(s)), first: {}",
                match d.kept_running.as_slice() {
                    [] => "nothing of it is supervised".to_string(),
                    kept => format!("its running version stays ({})", kept.join(", ")),
                },
                d.errors.len(),
                d.errors.first().map_or(d.file.as_str(), String::as_str),
            ),
            D::WatchdogStarted(WatchdogStarted::Instance {
                endpoint,
                policy_file,
                dry_run,
                probe_interval_ms,
                resumed_incident,
                ..
            }) => format!(
                "{endpoint} by {policy_file}: {}, a PING every {}{}",
                if *dry_run {
                    "dry-run (sends nothing)"
                } else {
                    "enforce"
                },
                crate::model::duration::human_ms(*probe_interval_ms),
                resumed_incident
                    .as_deref()
                    .map(|i| format!(", incident {i} resumed"))
                    .unwrap_or_default()
            ),
            D::WatchdogStarted(WatchdogStarted::Daemon {
                version,
                pid,
                dry_run_forced,
                ..
            }) => format!(
                "busyguard {version}, pid {pid}{}",
                if *dry_run_forced {
                    ", --dry-run: sends nothing"
                } else {
                    ""
                }
            ),
            D::WatchdogStopped(WatchdogStopped::Instance {
                state,
                incident_in_flight,
            }) => match incident_in_flight {
                Some(i) => format!("{state}, incident {i} in flight (resumed at the next start)"),
                None => state.clone(),
            },
            D::WatchdogStopped(WatchdogStopped::Daemon { reason }) => reason.clone(),
            _ => return None,
        })
    }
}
