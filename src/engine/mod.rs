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
//! Files: [`vocab`] (the words shared with probe, remedy and watchdog), this file (the
//! transitions), [`guards`], [`resume`].

pub mod guards;
pub mod resume;
mod vocab;

pub use resume::{OpenIncident, ResumedShutdown};
pub use vocab::*;

use crate::audit::History;
use crate::event::detail::{self as d, DecisionInputs, PolicyInputs, RecoveredHow};
use crate::event::{Detail, Event};
use crate::policy::HangSignal;
use crate::snapshot::Snapshot;
use guards::{Known, Withheld};

/// Where the kill stands within an incident.
#[derive(Clone, Debug, PartialEq)]
enum Kill {
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
    /// Answered without effect (unkillable, failed, or decided in dry-run): the budget applies.
    /// `replicated` when the script came from the master (it cannot be killed, and on the
    /// master it has already ended).
    Answered {
        replicated: bool,
    },
}

/// Where the escalation stands within an incident.
#[derive(Clone, Debug, PartialEq)]
enum Escalation {
    NotYet,
    Withheld,
    /// Dry-run: the shutdown was decided and recorded, not sent.
    ShutdownDecided,
    ShutdownSent,
    ShutdownConfirmed,
    ShutdownFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Busy(BusyKind),
    Hang,
    Unreachable,
}

/// One BUSY, hang or unreachable episode.
#[derive(Clone, Debug)]
struct Incident {
    id: String,
    opened: Millis,
    cause: Cause,
    first_busy: Option<Millis>,
    kill: Kill,
    /// The kill was sent again with the other command, after the first named it (a BUSY of
    /// unknown form answered SCRIPT KILL with a BUSY naming FUNCTION KILL).
    kill_retried: bool,
    escalation: Escalation,
    hang_reported: bool,
    unreachable_reported: bool,
    signal_sent: bool,
    /// The server's run id before the incident, to tell a restart in `recovered`.
    run_id_before: Option<String>,
}

/// The healthy snapshot held, when it was taken, and whether this run took it.
#[derive(Clone, Debug)]
struct Held {
    snapshot: Snapshot,
    taken: Millis,
    /// Taken by this run (false: restored from the trail of an earlier run).
    fresh: bool,
}

/// The state machine of one instance.
#[derive(Debug)]
pub struct Engine {
    rules: Rules,
    snapshot: Option<Held>,
    incident: Option<Incident>,
    /// An incident left open by an earlier run, until the first observation says what became
    /// of it (see [`resume`]).
    resumed: Option<Incident>,
    /// When shutdowns were decided, for `limits` (dry-run decisions count too, so a dry run
    /// shows what enforce would do).
    shutdowns: Vec<Millis>,
    /// The last configuration fault reported, so it is reported once, not on every probe.
    fault: Option<String>,
    /// What the last snapshot could not read, reported once per change.
    snapshot_errors: Vec<String>,
    loading: bool,
    /// `busy-reply-threshold 0` was reported for the current snapshot (once, not every probe).
    threshold_zero_reported: bool,
    /// Incidents opened so far, to keep ids unique even within one millisecond.
    opened: u64,
}

impl Engine {
    pub fn new(rules: Rules) -> Engine {
        Engine {
            rules,
            snapshot: None,
            incident: None,
            resumed: None,
            shutdowns: Vec::new(),
            fault: None,
            snapshot_errors: Vec::new(),
            loading: false,
            threshold_zero_reported: false,
            opened: 0,
        }
    }

    /// Take what the trail says of this instance (after a restart of the daemon, even a
    /// SIGKILL): past shutdowns count for `limits`; an incident left open is held until the
    /// first observation (see [`resume`]), its snapshot restored. Wall-clock times in the
    /// records are placed on the monotonic clock by their age at `now`. Returns the id of the
    /// incident left open.
    pub fn resume(&mut self, history: &History, now: At) -> Option<String> {
        let to_mono = |unix_ms: u64| now.mono.saturating_sub(now.unix_ms.saturating_sub(unix_ms));
        self.shutdowns = history.shutdowns.iter().map(|t| to_mono(*t)).collect();
        let open = history.open_incident.as_ref()?;
        if let Some((snapshot, taken)) = &open.snapshot {
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
        let escalation = match open.shutdown {
            Some(ResumedShutdown::Confirmed) => Escalation::ShutdownConfirmed,
            Some(ResumedShutdown::Sent) => Escalation::ShutdownSent,
            Some(ResumedShutdown::Decided) => Escalation::ShutdownDecided,
            None => Escalation::NotYet,
        };
        self.opened += 1;
        self.resumed = Some(Incident {
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
        });
        Some(open.id.clone())
    }

    /// Take new rules (a reload) without losing the incident in flight.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().map(|h| &h.snapshot)
    }

    /// The state, as metrics and `status` name it.
    pub fn state(&self) -> &'static str {
        match self.incident.as_ref().or(self.resumed.as_ref()) {
            None if self.fault.is_some() => "fault",
            None if self.loading => "loading",
            None => "healthy",
            Some(i) => match (&i.cause, &i.escalation) {
                (_, Escalation::ShutdownSent | Escalation::ShutdownConfirmed) => "down",
                (Cause::Busy(_), _) => "busy",
                (Cause::Hang, _) => "hang",
                (Cause::Unreachable, _) => "unreachable",
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

    /// Whether the incident in flight is a busy function (FUNCTION STATS can name it).
    pub fn busy_function(&self) -> bool {
        matches!(
            self.incident.as_ref().map(|i| i.cause),
            Some(Cause::Busy(BusyKind::Function))
        )
    }

    /// The end of the recovery budget of the incident in flight.
    pub fn budget_end(&self) -> Option<Millis> {
        let first = self.incident.as_ref()?.first_busy?;
        Some(first + self.rules.wait)
    }

    /// The next instant at which a fresh BUSY reply could lead to an action: the watchdog sends
    /// a PING then, so a deadline is met within one round trip instead of one probe interval.
    pub fn next_deadline(&self) -> Option<Millis> {
        let i = self.incident.as_ref()?;
        let first = i.first_busy?;
        match (&i.kill, &i.escalation) {
            (Kill::NotYet, _) => Some(first + self.rules.kill_after),
            (Kill::NoneExists | Kill::Answered { .. }, Escalation::NotYet) => {
                Some(first + self.rules.wait)
            }
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

    /// Feed one observation made at `at`; returns what to record and do.
    pub fn observe(&mut self, at: At, obs: Observation) -> Step {
        let mut step = Step::default();
        let superseded = self.settle_resumed(&obs);
        let now = at.mono;
        match obs {
            Observation::Pong { snapshot } => {
                if let Some(s) = snapshot {
                    self.take_snapshot(*s, now, &mut step);
                }
                self.fault = None;
                self.loading = false;
                self.recover(now, &mut step);
            }
            Observation::Busy { kind, reply } => self.on_busy(at, kind, reply, &mut step),
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
            Observation::Unreachable { reason } => self.on_unreachable(at, reason, &mut step),
            Observation::KillReply(reply) => self.on_kill_reply(now, reply, &mut step),
            Observation::Shutdown(outcome) => self.on_shutdown(now, outcome, &mut step),
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
            Observation::Pong { .. } => None,
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
        self.snapshot = Some(Held {
            snapshot: s,
            taken: now,
            fresh: true,
        });
    }

    fn open(&mut self, at: At, cause: Cause) -> Incident {
        self.opened += 1;
        Incident {
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
        }
    }

    fn on_busy(&mut self, at: At, kind: BusyKind, reply: String, step: &mut Step) {
        let now = at.mono;
        // After `+OK` to a kill the script unwinds within the hook that answered it (which may
        // still answer a probe or two BUSY). A new script cannot draw a BUSY reply before it has
        // run for a whole threshold, so a BUSY that late is a new incident; the old one ends
        // as killed.
        if let Some(Kill::Accepted { reply_at, .. }) = self.incident.as_ref().map(|i| &i.kill) {
            let threshold = self
                .snapshot()
                .and_then(|s| s.busy_threshold_ms)
                .filter(|t| *t > 0)
                .unwrap_or(UNKNOWN_THRESHOLD_MS);
            if now >= reply_at + threshold {
                self.recover(now, step);
            }
        }
        let mut inc = match self.incident.take() {
            Some(inc) if matches!(inc.cause, Cause::Busy(_)) => inc,
            other => {
                // A hang or unreachable episode that turns out to be BUSY continues as busy.
                let mut inc = other.unwrap_or_else(|| self.open(at, Cause::Busy(kind)));
                inc.cause = Cause::Busy(kind);
                inc.first_busy = Some(now);
                inc.kill = match kind {
                    BusyKind::Module => Kill::NoneExists,
                    _ => Kill::NotYet,
                };
                let warning = (self.snapshot().and_then(|s| s.busy_threshold_ms) == Some(0))
                    .then(|| "busy-reply-threshold is 0 on this server".to_string());
                let detail = d::BusyDetected {
                    inputs: self.inputs(Some(&inc), now),
                    reply: reply.clone(),
                    busy_kind: kind,
                    warning,
                    supersedes: None,
                };
                step.events.push(self.event(Some(&inc), false, detail));
                inc
            }
        };
        // A reply that names a kill after one that named none (a module's yield, then a
        // script): the kill is owed before any shutdown.
        if inc.kill == Kill::NoneExists && kill_for(kind).is_some() {
            inc.cause = Cause::Busy(kind);
            inc.kill = Kill::NotYet;
        }
        self.decide(&mut inc, now, kind, reply, step);
        self.incident = Some(inc);
    }

    /// The next rung for a busy incident that just answered BUSY again.
    fn decide(
        &mut self,
        inc: &mut Incident,
        now: Millis,
        kind: BusyKind,
        reply: String,
        step: &mut Step,
    ) {
        let rules = &self.rules;
        let first = inc.first_busy.unwrap_or(now);
        if inc.kill == Kill::NotYet && now >= first + rules.kill_after {
            let Some(command) = kill_for(kind).or(match inc.cause {
                Cause::Busy(k) => kill_for(k),
                _ => None,
            }) else {
                inc.kill = Kill::NoneExists;
                return;
            };
            let dry_run = rules.dry_run;
            inc.kill = if dry_run {
                Kill::Answered { replicated: false }
            } else {
                Kill::Sent { command, at: now }
            };
            let detail = d::KillSent {
                inputs: self.inputs(Some(inc), now),
                command: command.text(),
                reply_seen: reply,
            };
            step.events.push(self.event(Some(inc), dry_run, detail));
            if !dry_run {
                step.action = Some(Action::Kill(command));
            }
            return;
        }
        if matches!(inc.kill, Kill::NoneExists | Kill::Answered { .. })
            && inc.escalation == Escalation::NotYet
            && now >= first + rules.wait
        {
            self.escalate(inc, now, reply, step);
        }
    }

    /// The budget is spent and the last reply was BUSY: shut down, or say why not.
    fn escalate(&mut self, inc: &mut Incident, now: Millis, reply: String, step: &mut Step) {
        let rules = &self.rules;
        let dry_run = rules.dry_run;
        let replicated = inc.kill == Kill::Answered { replicated: true };
        let withheld = if replicated && !rules.shutdown_replicated {
            Some(Withheld {
                reason: "the script was sent by the master (replication) and has already ended \
                         there: it is waited out, never shut down, unless \
                         `on_unkillable.shutdown_replicated` says so"
                    .into(),
                missing: None,
            })
        } else {
            let known = Known {
                snapshot: self.snapshot(),
                fresh: self.snapshot.as_ref().is_some_and(|h| h.fresh),
            };
            guards::withheld(rules, &self.shutdowns, known, now)
        };
        let inputs = self.inputs(Some(inc), now);
        if let Some(w) = withheld {
            inc.escalation = Escalation::Withheld;
            let detail = d::EscalationWithheld {
                inputs,
                reason: w.reason,
                missing: w.missing,
                reply_seen: Some(reply),
                silent_ms: None,
                signal: None,
            };
            step.events.push(self.event(Some(inc), dry_run, detail));
            return;
        }
        let major = self.snapshot().and_then(Snapshot::major_version);
        let command = ShutdownCommand::for_version(major, rules.force);
        inc.escalation = if dry_run {
            Escalation::ShutdownDecided
        } else {
            Escalation::ShutdownSent
        };
        self.shutdowns.push(now);
        let detail = d::ShutdownSent {
            inputs,
            reply_seen: reply,
            command: command.text(),
            abort_first: command.abort_first,
        };
        step.events.push(self.event(Some(inc), dry_run, detail));
        if !dry_run {
            step.action = Some(Action::Shutdown(command));
        }
    }

    fn on_silence(&mut self, at: At, for_ms: Millis, step: &mut Step) {
        if self.incident.is_none() && for_ms >= self.rules.hang_after {
            let mut inc = self.open(at, Cause::Hang);
            inc.hang_reported = true;
            let detail = d::HangDetected {
                inputs: self.inputs(Some(&inc), at.mono),
                silent_ms: for_ms,
            };
            step.events.push(self.event(Some(&inc), false, detail));
            self.incident = Some(inc);
        }
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        let rules = &self.rules;
        if inc.cause == Cause::Hang
            && !inc.signal_sent
            && rules.hang_signal == HangSignal::Sigkill
            && for_ms >= rules.signal_after
        {
            inc.signal_sent = true;
            self.signal(&inc, at.mono, for_ms, step);
        }
        self.incident = Some(inc);
    }

    /// SIGKILL a hung local server, if the snapshot names its process.
    fn signal(&self, inc: &Incident, now: Millis, for_ms: Millis, step: &mut Step) {
        let dry_run = self.rules.dry_run;
        let inputs = self.inputs(Some(inc), now);
        let target = self
            .snapshot
            .as_ref()
            .filter(|h| h.fresh)
            .and_then(|h| Some((h.snapshot.process_id?, h.snapshot.process_start_ticks?)));
        match target {
            None => {
                let detail = d::EscalationWithheld {
                    inputs,
                    reason: "no pid with a known start time in the healthy snapshot".into(),
                    missing: Some("process_id".into()),
                    reply_seen: None,
                    silent_ms: Some(for_ms),
                    signal: Some("SIGKILL".into()),
                };
                step.events.push(self.event(Some(inc), dry_run, detail));
            }
            Some((pid, start_ticks)) => {
                let detail = d::SignalSent {
                    inputs,
                    silent_ms: for_ms,
                    signal: "SIGKILL".into(),
                    pid,
                };
                step.events.push(self.event(Some(inc), dry_run, detail));
                if !dry_run {
                    step.action = Some(Action::Signal { pid, start_ticks });
                }
            }
        }
    }

    fn on_unreachable(&mut self, at: At, reason: String, step: &mut Step) {
        let mut inc = match self.incident.take() {
            Some(inc) => inc,
            None => self.open(at, Cause::Unreachable),
        };
        let shut_down = matches!(
            inc.escalation,
            Escalation::ShutdownSent | Escalation::ShutdownConfirmed
        );
        // Down because it was shut down: expected, already recorded.
        if !shut_down && !inc.unreachable_reported {
            inc.unreachable_reported = true;
            let detail = d::Unreachable {
                inputs: self.inputs(Some(&inc), at.mono),
                reason,
            };
            step.events.push(self.event(Some(&inc), false, detail));
        }
        self.incident = Some(inc);
    }

    fn on_kill_reply(&mut self, now: Millis, reply: KillReply, step: &mut Step) {
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        if let Kill::Sent { command, at } = inc.kill {
            self.kill_answered(&mut inc, command, at, now, reply, step);
        }
        self.incident = Some(inc);
    }

    fn kill_answered(
        &self,
        inc: &mut Incident,
        command: KillCommand,
        sent_at: Millis,
        now: Millis,
        reply: KillReply,
        step: &mut Step,
    ) {
        let answer = |reply: String, replicated: bool| d::KillAnswer {
            command: command.text(),
            reply_ms: now.saturating_sub(sent_at),
            budget_left_ms: inc
                .first_busy
                .map(|f| (f + self.rules.wait).saturating_sub(now)),
            then: self.rules.then,
            reply,
            replicated,
        };
        let unknown = inc.cause == Cause::Busy(BusyKind::Unknown);
        let detail: Detail = match reply {
            KillReply::Ok => {
                inc.kill = Kill::Accepted {
                    command,
                    reply_at: now,
                };
                return;
            }
            KillReply::Unkillable(text) => {
                inc.kill = Kill::Answered { replicated: false };
                answer(text, false).into()
            }
            KillReply::Replicated(text) => {
                inc.kill = Kill::Answered { replicated: true };
                answer(text, true).into()
            }
            // A BUSY of unknown form, answered with a BUSY naming the other kill: the right
            // kill is owed, once, at the next BUSY reply.
            KillReply::Error(text)
                if unknown
                    && !inc.kill_retried
                    && BusyKind::from_error(&text) == Some(BusyKind::Function) =>
            {
                inc.kill_retried = true;
                inc.cause = Cause::Busy(BusyKind::Function);
                inc.kill = Kill::NotYet;
                return;
            }
            // NOTBUSY to a kill of a BUSY of unknown form: a module command, which no kill
            // ends. Not a failure: the budget applies.
            KillReply::Error(text) if unknown && text.split(' ').next() == Some("NOTBUSY") => {
                inc.kill = Kill::Answered { replicated: false };
                answer(text, false).into()
            }
            KillReply::Error(text) | KillReply::Lost(text) => {
                inc.kill = Kill::Answered { replicated: false };
                d::ActionFailed::Kill(answer(text, false)).into()
            }
        };
        step.events.push(self.event(Some(inc), false, detail));
    }

    fn on_shutdown(&mut self, now: Millis, outcome: ShutdownOutcome, step: &mut Step) {
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        if inc.escalation == Escalation::ShutdownSent {
            let since_first_busy_ms = inc.first_busy.map(|f| now.saturating_sub(f));
            let detail: Detail = match outcome {
                ShutdownOutcome::Confirmed { elapsed_ms } => {
                    inc.escalation = Escalation::ShutdownConfirmed;
                    d::ShutdownConfirmed {
                        confirm_ms: elapsed_ms,
                        since_first_busy_ms,
                        how: "the connection closed without a reply and the server refused new connections".into(),
                    }
                    .into()
                }
                ShutdownOutcome::Refused(reply) | ShutdownOutcome::Failed(reply) => {
                    inc.escalation = Escalation::ShutdownFailed;
                    d::ActionFailed::Shutdown {
                        action: d::FailedAction::Shutdown,
                        reply,
                        note: "not retried: a shutdown is sent at most once".into(),
                    }
                    .into()
                }
            };
            step.events.push(self.event(Some(&inc), false, detail));
        }
        self.incident = Some(inc);
    }

    /// A healthy answer ends the incident in flight.
    fn recover(&mut self, now: Millis, step: &mut Step) {
        let Some(inc) = self.incident.take() else {
            return;
        };
        let run_id_now = self.snapshot().and_then(|s| s.run_id.clone());
        let restarted = match (&inc.run_id_before, &run_id_now) {
            (Some(a), Some(b)) => Some(a != b),
            _ => None,
        };
        let since_first_busy_ms = inc.first_busy.map(|f| now.saturating_sub(f));
        if let Kill::Accepted { command, reply_at } = inc.kill {
            let detail = d::Killed {
                command: command.text(),
                confirmed_ms_after_reply: now.saturating_sub(reply_at),
                since_first_busy_ms,
            };
            step.events.push(self.event(Some(&inc), false, detail));
        }
        let how = match (&inc.kill, &inc.escalation) {
            (Kill::Accepted { .. }, _) => RecoveredHow::Killed,
            (_, Escalation::ShutdownConfirmed | Escalation::ShutdownSent) => {
                RecoveredHow::RestartedAfterShutdown
            }
            (_, _) if inc.cause == Cause::Unreachable => RecoveredHow::ReachableAgain,
            _ => RecoveredHow::EndedByItself,
        };
        let detail = d::Recovered {
            how,
            duration_ms: now.saturating_sub(inc.opened),
            since_first_busy_ms,
            restarted,
            run_id: run_id_now,
            forensics: None,
        };
        step.events.push(self.event(Some(&inc), false, detail));
    }

    /// The decision inputs every decision record carries.
    fn inputs(&self, inc: Option<&Incident>, now: Millis) -> DecisionInputs {
        let r = &self.rules;
        let first = inc.and_then(|i| i.first_busy);
        let snapshot = self.snapshot();
        DecisionInputs {
            since_first_busy_ms: first.map(|f| now.saturating_sub(f)),
            budget_left_ms: first.map(|f| (f + r.wait).saturating_sub(now)),
            policy: PolicyInputs {
                kill_after_ms: r.kill_after,
                wait_ms: r.wait,
                then: r.then,
                max_shutdowns: r.max_shutdowns,
                per_ms: r.per,
            },
            threshold_ms: snapshot.and_then(|s| s.busy_threshold_ms),
            snapshot_age_ms: self.snapshot.as_ref().map(|h| now.saturating_sub(h.taken)),
            snapshot: snapshot.cloned(),
            data_at_risk: snapshot.map(Snapshot::data_at_risk),
            snapshot_from_trail: self.snapshot.as_ref().is_some_and(|h| !h.fresh),
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
