//! The decision engine: a pure state machine per instance that turns observations into
//! decisions. It never talks to Redis, the disk or the network, and never reads a clock: time
//! comes in with each observation, so the same observations at the same instants always give
//! the same decisions (the unit and property tests rely on it).
//!
//! The ladder: healthy -> busy (an incident opens at the first BUSY reply) -> kill (after
//! `kill_after`) -> killed (confirmed by a PONG), or unkillable -> wait (until `wait` after the
//! first BUSY) -> recovered, or escalate per `then` -> shutdown -> confirmed down -> recovered when
//! the server answers again. A busy module cannot be killed and goes straight to the wait.
//!
//! Safety rests on one rule: a kill or a shutdown is only ever decided in answer to a BUSY reply
//! that just arrived on the probe's connection. Deadlines (the end of `kill_after`, of `wait`)
//! only tell the watchdog when to send the next PING; the action follows that PING's BUSY reply.
//! Whether a shutdown may go is [`guards::withheld`]'s to say; an incident left open by an
//! earlier run is handled as [`resume`] explains.
//!
//! Files: [`vocab`] (the words shared with probe, remedy and watchdog), this file (the state
//! and the dispatch of observations), `incident` (what is known of one incident), `ladder` (the
//! busy transitions), `failover` (`then: failover`), `silence` (hang and unreachable),
//! [`guards`], [`resume`].

mod continuity;
pub mod early;
pub mod failover;
mod fence;
pub mod guards;
mod incident;
mod ladder;
mod limits;
mod plan;
pub mod resume;
mod silence;
pub mod steer;
mod vocab;

pub use limits::LimitsUsed;
pub use resume::{History, OpenIncident, ResumedShutdown};
pub use steer::{Live, Steer};
pub use vocab::*;

use crate::event::detail::{self as d, DecisionInputs, PolicyInputs};
use crate::event::{Detail, Event};
use crate::model::kinds::State;
use crate::model::snapshot::Snapshot;
use crate::model::takeover::{Lineage, Successor};
use crate::policy::HangSignal;
use incident::{Cause, Escalation, Held, Incident, Kill};
use ladder::Recovering;

/// The state machine of one instance.
#[derive(Debug)]
pub struct Engine {
    rules: Rules,
    snapshot: Option<Held>,
    incident: Option<Incident>,
    /// An incident left open by an earlier run, until the first observation says what became
    /// of it (see [`resume`]).
    resumed: Option<Incident>,
    /// When shutdowns were decided, for `limits`: enforced ones and dry-run decisions apart.
    shutdowns: limits::Ledger,
    /// The last configuration fault reported, so it is reported once, not on every probe.
    fault: Option<String>,
    /// What the last snapshot could not read, reported once per change.
    snapshot_errors: Vec<String>,
    /// The refusal of busyguard's credential at the last snapshot's check, told once.
    login_refused: Option<String>,
    loading: bool,
    /// The last word about the server is that nothing answers (refused, reset, timed out): an
    /// incident in flight is then shown as unreachable, not busy (an operator's own SHUTDOWN).
    unreachable_now: bool,
    /// `busy-reply-threshold 0` was reported for the current snapshot (once, not every probe).
    threshold_zero_reported: bool,
    /// Incidents opened so far, to keep ids unique even within one millisecond.
    opened: u64,
    /// An operator's pause, in force until it expires or is resumed.
    pause: Option<steer::Pause>,
    /// An operator's hold on the incident in flight.
    hold: Option<steer::Hold>,
    /// The instant of the observation being decided: wall-clock times in records (a deadline
    /// an operator reads) come from it, never from a clock.
    last_at: At,
    /// The last snapshot taken while no incident was open: what an incident's counters are
    /// measured from.
    baseline: Option<Snapshot>,
    /// An incident's `recovered` record, waiting for what the server tells after it
    /// ([`Inquiry::AfterRecovery`]).
    recovering: Option<Recovering>,
    /// The probe connection in use (its generation), and its round trips (see `continuity`).
    conn: u64,
    path: continuity::Path,
    /// How the reply being decided came (see `continuity`).
    reply: continuity::Reply,
    /// The server's last count of unsaved changes, whether the AOF is on, and when it was read.
    unsaved: Option<(u64, bool, Millis)>,
    /// Why what the Sentinel group says is not believed, since it was seen to name a server
    /// busyguard cannot verify took over from this one.
    sentinel_elsewhere: Option<String>,
    /// Who this server has been in this run (and in the snapshot restored from the trail): what
    /// a successor must continue.
    lineage: Lineage,
    /// The newest server busyguard verified took over from this one (this run's word, or the
    /// trail's after a restart), until its split brain is handled (fenced, or said not to be)
    /// or this server is seen a replica: the fence's target should this server answer as a
    /// primary.
    successor: Option<Successor>,
    /// The pod is stopping (`busyguard run --kill-on-stop`): a killable script is killed at the
    /// next BUSY reply whatever the ladder's grace, so Redis can act on kubelet's SIGTERM.
    stopping: bool,
}

impl Engine {
    pub fn new(rules: Rules) -> Engine {
        Engine {
            rules,
            snapshot: None,
            incident: None,
            resumed: None,
            shutdowns: limits::Ledger::default(),
            fault: None,
            snapshot_errors: Vec::new(),
            login_refused: None,
            loading: false,
            unreachable_now: false,
            threshold_zero_reported: false,
            opened: 0,
            pause: None,
            hold: None,
            last_at: At {
                mono: 0,
                unix_ms: 0,
            },
            baseline: None,
            recovering: None,
            conn: 0,
            path: continuity::Path::default(),
            reply: continuity::Reply::default(),
            unsaved: None,
            sentinel_elsewhere: None,
            lineage: Lineage::default(),
            successor: None,
            stopping: false,
        }
    }

    /// Who this server has been: the run ids and replication IDs of its healthy snapshots in
    /// this run, and of the one restored from the trail (a successor must continue one of them).
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// Take what the trail says of this instance (after a restart of the daemon, even a
    /// SIGKILL): past shutdowns count for `limits`; an incident left open is held until the
    /// first observation (see [`resume`]), its snapshot restored. Wall-clock times in the
    /// records are placed on the monotonic clock by their age at `now`. Returns the id of the
    /// incident left open.
    pub fn resume(&mut self, history: &History, now: At) -> Option<String> {
        let to_mono = |unix_ms: u64| now.mono.saturating_sub(now.unix_ms.saturating_sub(unix_ms));
        let mono = |list: &[u64]| list.iter().map(|t| to_mono(*t)).collect();
        self.shutdowns =
            limits::Ledger::resumed(mono(&history.shutdowns), mono(&history.rehearsals));
        // A hold lasts until released: across a restart, and onto the incident that supersedes
        // the one it was given in.
        self.hold = history
            .hold
            .as_ref()
            .filter(|_| history.open_incident.is_some())
            .map(|h| steer::Hold {
                by: h.by.clone(),
                reason: h.reason.clone(),
            });
        let open = history.open_incident.as_ref()?;
        if let Some((snapshot, taken)) = &open.snapshot {
            self.lineage.saw_snapshot(snapshot);
            self.snapshot = Some(Held {
                snapshot: snapshot.clone(),
                taken: to_mono(*taken),
                fresh: false,
            });
        }
        let cause = match (open.busy, open.hang_reported) {
            (Some((kind, _)), _) => Cause::Busy(kind),
            (None, true) => Cause::Hang,
            (None, false) => Cause::Unreachable,
        };
        // A verified successor carries over: this server is fenced should it answer as a
        // primary. Its zombie's shutdown waits for this run's own word (the feed, a watch).
        self.successor = open.successor.clone();
        let escalation = match (open.shutdown, open.failover_in_flight) {
            (Some(ResumedShutdown::Confirmed), _) => Escalation::ShutdownConfirmed,
            (Some(ResumedShutdown::Sent), _) => Escalation::ShutdownSent,
            (Some(ResumedShutdown::Decided), _) => Escalation::ShutdownDecided,
            (None, Some((via, at))) => Escalation::FailoverRequested {
                via,
                at: to_mono(at),
            },
            (None, None) => Escalation::NotYet,
        };
        self.opened += 1;
        self.resumed = Some(Incident {
            ladder: incident::Ladder::of(&self.rules),
            identifying: None,
            identity: None,
            id: open.id.clone(),
            opened: to_mono(open.opened_unix_ms),
            cause,
            first_busy: open.busy.map(|(_, t)| to_mono(t)),
            kill: Kill::Answered { replicated: false },
            kill_retried: false,
            escalation,
            hang_reported: open.hang_reported,
            unreachable_reported: open.unreachable_reported,
            signal_sent: false,
            run_id_before: open.snapshot.as_ref().and_then(|(s, _)| s.run_id.clone()),
            approved: false,
            withheld: None,
            steer_reported: None,
            failed_over: false,
            failover_failed: false,
            function: None,
            eval_sha: None,
            kills_sent: 0,
            conn: 0,
            seen_kind: None,
            last_busy: 0,
            doubt: None,
            shutdown_at: None,
            shutdown_lost: false,
            retries: None,
            slow_reported: false,
            fenced: false,
            answered_healthy: false,
            offsets: None,
            offsets_asked: false,
            requested_behind: Vec::new(),
        });
        Some(open.id.clone())
    }

    /// Take new rules (a reload) without losing the incident in flight.
    /// A reloaded policy takes effect on the incident in flight too: its ladder is the new
    /// instance's, or the new rule that names its function.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
        for inc in [self.incident.as_mut(), self.resumed.as_mut()]
            .into_iter()
            .flatten()
        {
            inc.ladder = match inc.running() {
                Some(running) => incident::Ladder::for_script(&self.rules, running),
                None => incident::Ladder::of(&self.rules),
            };
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().map(|h| &h.snapshot)
    }

    /// The state, as metrics and `status` name it.
    pub fn state(&self) -> State {
        match self.incident.as_ref().or(self.resumed.as_ref()) {
            // A fault is the newest truth, also within an incident: a server restarted without
            // busyguard's user after a shutdown is up and refusing, not down.
            _ if self.fault.is_some() => State::Fault,
            None if self.loading => State::Loading,
            None => State::Healthy,
            Some(i) => match (&i.cause, &i.escalation) {
                (_, Escalation::ShutdownSent | Escalation::ShutdownConfirmed) => State::Down,
                (_, Escalation::Asked { .. }) => State::Asking,
                (_, Escalation::FailoverRequested { .. }) => State::FailingOver,
                (Cause::Busy(_) | Cause::Hang, _) if self.unreachable_now => State::Unreachable,
                (Cause::Busy(_), _) => State::Busy,
                (Cause::Hang, _) => State::Hang,
                (Cause::Unreachable, _) => State::Unreachable,
            },
        }
    }

    /// The incident in flight (or left open by an earlier run), if any.
    pub fn incident_id(&self) -> Option<&str> {
        self.incident
            .as_ref()
            .or(self.resumed.as_ref())
            .map(|i| i.id.as_str())
    }

    /// The end of the recovery budget of the incident in flight.
    pub fn budget_end(&self) -> Option<Millis> {
        let inc = self.incident.as_ref()?;
        Some(inc.first_busy? + inc.ladder.wait)
    }

    /// The next instant at which a fresh BUSY reply could lead to an action: the watchdog sends
    /// a PING then, so a deadline is met within one round trip instead of one probe interval.
    pub fn next_deadline(&self) -> Option<Millis> {
        let i = self.incident.as_ref()?;
        let first = i.first_busy?;
        // The candidates' offsets are being asked beside the probe: PINGs go on at their
        // cadence, and the first BUSY reply after the answer decides.
        if i.offsets_asked && i.offsets.is_none() {
            return None;
        }
        let paused = self.pause.is_some();
        let waiting = paused || self.hold.is_some();
        match (&i.kill, &i.escalation) {
            (Kill::NotYet, _) if paused => None,
            (Kill::NotYet, _) => Some(first + i.ladder.kill_after),
            (Kill::NoneExists | Kill::Answered { .. }, Escalation::NotYet) if waiting => None,
            (Kill::NoneExists | Kill::Answered { .. }, Escalation::NotYet) if i.approved => Some(0),
            (Kill::NoneExists | Kill::Answered { .. }, Escalation::NotYet) => {
                Some(first + i.ladder.wait)
            }
            (_, Escalation::Asked { .. }) if waiting => None,
            (_, Escalation::Asked { .. }) if i.approved => Some(0),
            (_, Escalation::Asked { since }) => Some(since + self.rules.ask_timeout),
            _ => None,
        }
    }

    /// How long a probe may stay unanswered before the engine wants to hear of it.
    pub fn silence_deadline(&self) -> Option<Millis> {
        match &self.incident {
            None => Some(self.rules.hang_after),
            Some(i) if i.cause == Cause::Hang => (self.rules.hang_signal == HangSignal::Sigkill
                && !i.signal_sent)
                .then_some(self.rules.signal_after),
            Some(_) => None,
        }
    }

    /// Feed one observation made at `at` on the connection in use, answered at once; returns
    /// what to record and do.
    pub fn observe(&mut self, at: At, obs: Observation) -> Step {
        let reply = continuity::Reply {
            conn: self.conn,
            waited: 0,
            sent: None,
        };
        self.observe_reply(at, reply, obs)
    }

    /// Feed one observation answered at `at`, from `source` (its connection, and when its
    /// command was sent); returns what to record and do.
    pub fn observe_from(&mut self, at: At, source: Source, obs: Observation) -> Step {
        let reply = continuity::Reply {
            conn: source.conn,
            waited: at.mono.saturating_sub(source.sent),
            sent: Some(source.sent),
        };
        self.observe_reply(at, reply, obs)
    }

    fn observe_reply(&mut self, at: At, reply: continuity::Reply, obs: Observation) -> Step {
        if reply.conn != self.conn {
            self.conn = reply.conn;
            self.path = continuity::Path::default();
        }
        let waited = reply.waited;
        self.reply = reply;
        // Answers a healthy server gives at once measure the path; a busy one's answers wait
        // for its next hook, and only bound it.
        let healthy = matches!(
            obs,
            Observation::Pong { .. }
                | Observation::Unsaved { .. }
                | Observation::Loading
                | Observation::Fault { .. }
        );
        // A busy server's answer bounds the path only when its question was sent after a BUSY
        // reply on this connection (not one that waited through a script's silent phase).
        let after_busy = self.incident.as_ref().is_some_and(|i| {
            i.first_busy.is_some()
                && i.conn == reply.conn
                && reply.sent.is_some_and(|sent| sent >= i.last_busy)
        });
        let busy = after_busy
            && matches!(
                obs,
                Observation::Busy { .. }
                    | Observation::KillReply(
                        KillReply::Ok | KillReply::Unkillable(_) | KillReply::Replicated(_)
                    )
            );
        // A reply measures the path it came over, its own freshness included.
        if healthy {
            self.path.healthy(waited);
        } else if busy {
            self.path.busy(waited);
        }
        self.decide_observation(at, obs)
    }

    fn decide_observation(&mut self, at: At, obs: Observation) -> Step {
        let mut step = Step::default();
        self.last_at = at;
        if !matches!(obs, Observation::AfterRecovery(_)) {
            // Its answer was never asked for: the record goes as it is.
            self.recovered_as_known(&mut step);
        }
        self.expire_pause(at, &mut step);
        let superseded = self.settle_resumed(&obs);
        let now = at.mono;
        // What the server is doing now: an answer of any kind means it is there.
        match &obs {
            Observation::Unreachable { .. } => self.unreachable_now = true,
            Observation::Pong { .. }
            | Observation::Unsaved { .. }
            | Observation::Busy { .. }
            | Observation::Loading
            | Observation::Fault { .. } => self.unreachable_now = false,
            _ => {}
        }
        match obs {
            Observation::Pong { snapshot } => {
                if let Some(s) = snapshot {
                    self.take_snapshot(*s, now, &mut step);
                }
                self.healthy(now, &mut step);
            }
            Observation::Unsaved { changes, aof } => {
                self.unsaved = Some((changes, aof, now));
                self.healthy(now, &mut step);
            }
            Observation::Busy { kind, reply } => {
                // A BUSY reply comes over a connection that was let in: no fault any more.
                self.fault = None;
                self.on_busy(at, kind, reply, &mut step)
            }
            Observation::Silent { for_ms } => self.on_silence(at, for_ms, &mut step),
            Observation::Loading => self.loading = true,
            Observation::Fault { reply } => {
                if self.fault.as_deref() != Some(reply.as_str()) {
                    let detail = d::ProbeFault::Fault {
                        reply: reply.clone(),
                        note: "configuration fault: reported, never acted on".into(),
                    };
                    step.events
                        .push(self.event(self.incident.as_ref(), false, detail));
                    self.fault = Some(reply);
                }
            }
            Observation::Unreachable { reason } => {
                // Nothing answers now: what the server refused before is no longer the news.
                self.fault = None;
                self.on_unreachable(at, reason, &mut step)
            }
            Observation::KillReply(reply) => self.on_kill_reply(now, reply, &mut step),
            Observation::Shutdown(outcome) => self.on_shutdown(now, outcome, &mut step),
            Observation::Demoted { successor, by } => self.on_demoted(successor, by, &mut step),
            Observation::Failover(outcome) => self.on_failover(now, outcome, &mut step),
            Observation::Fenced(outcome) => self.on_fenced(now, outcome, &mut step),
            Observation::NotSent {
                action,
                reason,
                missing,
            } => self.on_not_sent(now, action, reason, missing, &mut step),
            Observation::ReplicaOffsets(offsets) => self.on_offsets(offsets),
            Observation::SentinelNamesThis => self.sentinel_elsewhere = None,
            Observation::SentinelUnbelieved(why) => {
                if self.sentinel_elsewhere.as_deref() != Some(why.as_str()) {
                    let detail = d::ProbeFault::Fault {
                        reply: why.clone(),
                        note: "no failover goes through this Sentinel group, and nothing it says \
                               of a primary is acted on, until it names this server again"
                            .into(),
                    };
                    step.events
                        .push(self.event(self.incident.as_ref(), false, detail));
                    self.sentinel_elsewhere = Some(why);
                }
            }
            Observation::RunningFunction(seen) => self.on_running_function(now, seen, &mut step),
            Observation::EvalNamed(named) => self.on_eval_named(now, named, &mut step),
            Observation::AfterRecovery(told) => self.recovered_with(told, &mut step),
            Observation::Signal(result) => {
                if let Err(error) = result {
                    let detail = d::ActionFailed::Signal {
                        action: d::FailedAction::Signal,
                        error,
                    };
                    let inc = self.incident.as_ref();
                    step.events.push(self.event(inc, false, detail));
                }
            }
        }
        if let Some((old, reason)) = superseded {
            let detail = d::IncidentSuperseded {
                reason,
                by: self.incident.as_ref().map(|i| i.id.clone()),
            };
            step.events.insert(0, self.event(Some(&old), false, detail));
            if let Some(Detail::BusyDetected(b)) = step.events.get_mut(1).map(|e| &mut e.detail) {
                b.supersedes = Some(old.id.clone());
            }
        }
        self.ask_after_recovery(&mut step);
        step
    }

    /// Decide what the first observation of this run says of an incident left open by an
    /// earlier run: continue it (only to end it, or to wait for a server it shut down) or
    /// supersede it. Returns the superseded incident and why.
    fn settle_resumed(&mut self, obs: &Observation) -> Option<(Incident, String)> {
        let old = self.resumed.as_ref()?;
        let shut_down = matches!(
            old.escalation,
            Escalation::ShutdownSent | Escalation::ShutdownConfirmed
        );
        let reason = match obs {
            Observation::Pong { .. } | Observation::Unsaved { .. } => None,
            Observation::Unreachable { .. } if shut_down => None,
            Observation::Busy { .. } => Some(
                "busyguard restarted while the server answered BUSY, and nothing can prove it is \
                 the script the earlier run saw (it may have ended and another started): a new \
                 incident starts from the kill",
            ),
            Observation::Silent { .. } | Observation::Unreachable { .. } => Some(
                "busyguard restarted and the server does not answer: what the earlier run saw may \
                 have ended; a new incident follows",
            ),
            // Loading, a fault, or an action's outcome: nothing known yet.
            _ => return None,
        };
        let old = self.resumed.take()?;
        match reason {
            None => {
                self.incident = Some(old);
                None
            }
            Some(why) => Some((old, why.to_string())),
        }
    }

    /// A healthy answer: faults and loading are over, and so is the incident in flight, but
    /// for a split brain: a server whose role moved to another answers as a primary (see
    /// `fence`).
    fn healthy(&mut self, now: Millis, step: &mut Step) {
        self.fault = None;
        self.loading = false;
        if self.fence(now, step) || self.failover_in_flight(now) {
            if let Some(inc) = self.incident.as_mut() {
                inc.answered_healthy = true;
            }
            return;
        }
        self.recover(now, step);
    }

    /// The script ended while a failover was in flight (requested by this run or an earlier
    /// one, its outcome not known yet): the replica may be promoted any moment, and this server
    /// would then be a primary beside it. The incident stays open until the outcome, or the
    /// takeover, is known (its fence follows), or `failover.timeout` (and a margin) passes.
    fn failover_in_flight(&self, now: Millis) -> bool {
        let Some(Escalation::FailoverRequested { at, .. }) =
            self.incident.as_ref().map(|i| &i.escalation)
        else {
            return false;
        };
        now < at + self.rules.failover_timeout + failover::OUTCOME_MARGIN_MS
    }

    /// The last count of unsaved changes, against the start of `inc`: read no longer before
    /// its first BUSY than a threshold (the script's silent phase), two probe intervals and a
    /// margin for the round trips.
    fn counted(&self, inc: &Incident) -> guards::Counted {
        let Some((changes, aof, read_at)) = self.unsaved else {
            return guards::Counted::Unknown;
        };
        // With the AOF on only the script's own writes are lost, however old the count.
        if aof {
            return guards::Counted::Fresh { changes, aof };
        }
        let first = inc.first_busy.unwrap_or(read_at);
        let bound_ms = self.threshold().unwrap_or(0) + 2 * self.rules.probe_interval + 100;
        let age_ms = first.saturating_sub(read_at);
        match age_ms > bound_ms {
            true => guards::Counted::Stale { age_ms, bound_ms },
            false => guards::Counted::Fresh { changes, aof },
        }
    }

    fn take_snapshot(&mut self, s: Snapshot, now: Millis, step: &mut Step) {
        let zero = s.busy_threshold_ms == Some(0);
        if zero && !self.threshold_zero_reported {
            let detail = d::ProbeFault::ThresholdZero {
                warning: "busy-reply-threshold is 0: the server never answers BUSY, so no SCRIPT KILL or SHUTDOWN can get through a runaway script; only a hang (silence) can be seen".into(),
                threshold_ms: 0,
            };
            step.events
                .push(self.event(self.incident.as_ref(), false, detail));
        }
        self.threshold_zero_reported = zero;
        // A run id that changed on a server up longer than since the last snapshot: another
        // server, not a restart.
        if let Some(held) = self.snapshot.as_ref().filter(|h| h.fresh)
            && let (Some(before), Some(now_id), Some(up)) =
                (&held.snapshot.run_id, &s.run_id, s.uptime_seconds)
            && before != now_id
            && up * 1000 > now.saturating_sub(held.taken) + 2_000
        {
            let detail = d::ProbeFault::Elsewhere {
                warning: format!(
                    "another server answers at this address (run id {now_id}, up {up} s) than \
                     the one before (run id {before}): the address leads to more than one server \
                     (a VIP, a DNS name, a proxy); `redis.url` must address the server itself, \
                     or busyguard may act on one it did not watch"
                ),
                run_id_before: before.clone(),
                run_id_now: now_id.clone(),
            };
            step.events
                .push(self.event(self.incident.as_ref(), false, detail));
        }
        if !s.errors.is_empty() && s.errors != self.snapshot_errors {
            let detail = d::ProbeFault::SnapshotIncomplete {
                snapshot_errors: s.errors.clone(),
                note: "the healthy snapshot is incomplete: BUSY is still detected (PING), and a \
                       shutdown whose guards need what is missing is withheld"
                    .into(),
            };
            step.events
                .push(self.event(self.incident.as_ref(), false, detail));
        }
        self.snapshot_errors = s.errors.clone();
        if s.login_refused != self.login_refused
            && let Some(reply) = &s.login_refused
        {
            let detail = d::ProbeFault::LoginRefused {
                login_refused: reply.clone(),
                note: "busyguard's credential no longer logs in (a password rotated on the \
                       server?): this connection still works and busyguard still acts through \
                       it, but once it drops busyguard is blind"
                    .into(),
            };
            step.events
                .push(self.event(self.incident.as_ref(), false, detail));
        }
        self.login_refused = s.login_refused.clone();
        if self.incident.is_none() && self.resumed.is_none() {
            self.baseline = Some(s.clone());
        }
        match (s.aof_enabled, s.rdb_changes_since_last_save) {
            (Some(true), changes) => self.unsaved = Some((changes.unwrap_or(0), true, now)),
            (Some(false), Some(changes)) => self.unsaved = Some((changes, false, now)),
            (Some(false), None) | (None, _) => {}
        }
        self.lineage.saw_snapshot(&s);
        // A replica now (Sentinel reconfigured it, an operator did): no split brain to fence.
        if s.role.as_deref() == Some("slave") {
            self.successor = None;
        }
        self.snapshot = Some(Held {
            snapshot: s,
            taken: now,
            fresh: true,
        });
    }

    fn open(&mut self, at: At, cause: Cause) -> Incident {
        self.opened += 1;
        Incident {
            ladder: incident::Ladder::of(&self.rules),
            identifying: None,
            identity: None,
            id: format!("{}-{}-{}", self.rules.instance, at.unix_ms, self.opened),
            opened: at.mono,
            cause,
            first_busy: None,
            kill: Kill::NotYet,
            kill_retried: false,
            escalation: Escalation::NotYet,
            hang_reported: false,
            unreachable_reported: false,
            signal_sent: false,
            run_id_before: self.snapshot().and_then(|s| s.run_id.clone()),
            approved: false,
            withheld: None,
            steer_reported: None,
            failed_over: false,
            failover_failed: false,
            function: None,
            eval_sha: None,
            kills_sent: 0,
            conn: self.conn,
            seen_kind: None,
            last_busy: at.mono,
            doubt: None,
            shutdown_at: None,
            shutdown_lost: false,
            retries: None,
            slow_reported: false,
            fenced: false,
            answered_healthy: false,
            offsets: None,
            offsets_asked: false,
            requested_behind: Vec::new(),
        }
    }

    /// An engine instant on the wall clock, by the observation being decided.
    fn wall(&self, mono: Millis) -> u64 {
        (self.last_at.unix_ms + mono).saturating_sub(self.last_at.mono)
    }

    /// The decision inputs every decision record carries.
    fn inputs(&self, inc: Option<&Incident>, now: Millis) -> DecisionInputs {
        let r = &self.rules;
        let first = inc.and_then(|i| i.first_busy);
        let snapshot = self.snapshot();
        let base = incident::Ladder::of(r);
        let ladder = inc.map_or(&base, |i| &i.ladder);
        DecisionInputs {
            since_first_busy_ms: first.map(|f| now.saturating_sub(f)),
            budget_left_ms: first.map(|f| (f + ladder.wait).saturating_sub(now)),
            policy: PolicyInputs {
                kill_after_ms: ladder.kill_after,
                wait_ms: ladder.wait,
                then: ladder.then,
                max_shutdowns: r.max_shutdowns,
                per_ms: r.per,
                script_rule: ladder.rule.clone(),
                script: inc.and_then(|i| i.identity.clone()),
            },
            threshold_ms: snapshot.and_then(|s| s.busy_threshold_ms),
            snapshot_age_ms: self.snapshot.as_ref().map(|h| now.saturating_sub(h.taken)),
            snapshot: snapshot.cloned(),
            data_at_risk: snapshot.map(Snapshot::data_at_risk),
            snapshot_from_trail: self.snapshot.as_ref().is_some_and(|h| !h.fresh),
            successor: self.successor.clone(),
        }
    }

    /// An event of this instance, in `inc` (or outside any incident).
    fn event(&self, inc: Option<&Incident>, dry_run: bool, detail: impl Into<Detail>) -> Event {
        Event {
            instance: Some(self.rules.instance.clone()),
            incident: inc.map(|i| i.id.clone()),
            dry_run,
            policy: Some(self.rules.policy_hash.clone()),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests;
