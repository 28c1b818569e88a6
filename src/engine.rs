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

use serde_json::{Value, json};

use crate::event::{Event, EventKind, into_map};
use crate::policy::{self, HangSignal, Mode, Policy, Then};
use crate::snapshot::Snapshot;

/// The busy threshold assumed when the snapshot does not know it (CONFIG GET refused): how
/// long after a kill's `+OK` a BUSY reply is taken for a new script rather than the dying one.
pub const UNKNOWN_THRESHOLD_MS: Millis = 5;

/// Milliseconds on the watchdog's monotonic clock.
pub type Millis = u64;

/// When an observation was made: the monotonic instant (for deadlines) and the wall clock
/// (only for naming incidents).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub mono: Millis,
    pub unix_ms: u64,
}

/// What the BUSY text says is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyKind {
    /// EVAL / EVALSHA: "You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    Script,
    /// FCALL: "You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    Function,
    /// A module command: no kill exists for it.
    Module,
}

impl BusyKind {
    /// Read the kind from a BUSY error line. The code must be exactly `BUSY` (not `BUSYKEY`,
    /// `BUSYGROUP`), and the server's name is not matched (Valkey says "Valkey is busy").
    pub fn from_error(line: &str) -> Option<BusyKind> {
        let (code, text) = line.split_once(' ').unwrap_or((line, ""));
        if code != "BUSY" {
            return None;
        }
        Some(if text.contains("FUNCTION KILL") {
            BusyKind::Function
        } else if text.contains("SCRIPT KILL") {
            BusyKind::Script
        } else {
            BusyKind::Module
        })
    }

    fn name(self) -> &'static str {
        match self {
            BusyKind::Script => "script",
            BusyKind::Function => "function",
            BusyKind::Module => "module",
        }
    }
}

/// What the probe or a remedy saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A healthy answer; `snapshot` when one was just taken (always after a reconnect).
    Pong { snapshot: Option<Box<Snapshot>> },
    /// A BUSY error reply, with its text.
    Busy { kind: BusyKind, reply: String },
    /// A probe has been outstanding this long with no reply.
    Silent { for_ms: Millis },
    /// `-LOADING`: the dataset is loading; not an incident.
    Loading,
    /// An error reply that is a configuration fault (NOAUTH, NOPERM, WRONGPASS, ...).
    Fault { reply: String },
    /// No connection: refused, closed, reset, timed out connecting.
    Unreachable { reason: String },
    /// The reply to a kill the engine asked for.
    KillReply(KillReply),
    /// What became of a shutdown the engine asked for.
    Shutdown(ShutdownOutcome),
    /// Whether the signal the engine asked for was delivered.
    Signal(Result<(), String>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum KillReply {
    /// `+OK`: the script stops at its next hook; a PONG confirms it.
    Ok,
    /// `-UNKILLABLE ...`: it already wrote.
    Unkillable(String),
    /// Any other error reply (NOTBUSY, NOPERM, a BUSY naming the other kill).
    Error(String),
    /// The connection was lost before a reply.
    Lost(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShutdownOutcome {
    /// The connection closed without a reply and the server then refused connections.
    Confirmed { elapsed_ms: Millis },
    /// An error reply: the shutdown did not happen.
    Refused(String),
    /// The connection closed but the server still accepts connections, or some other failure.
    Failed(String),
}

/// A command or signal the watchdog must carry out, after writing the step's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Kill(KillCommand),
    Shutdown(ShutdownCommand),
    /// SIGKILL to a local pid, only if its start time still matches.
    Signal {
        pid: u32,
        start_ticks: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCommand {
    ScriptKill,
    FunctionKill,
}

impl KillCommand {
    pub fn words(self) -> [&'static str; 2] {
        match self {
            KillCommand::ScriptKill => ["SCRIPT", "KILL"],
            KillCommand::FunctionKill => ["FUNCTION", "KILL"],
        }
    }
}

/// The version-aware SHUTDOWN form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownCommand {
    /// `SHUTDOWN ABORT` first, clearing a plain SHUTDOWN that may be pending (7.0+).
    pub abort_first: bool,
    /// The words of the shutdown itself.
    pub words: Vec<&'static str>,
}

impl ShutdownCommand {
    /// `SHUTDOWN NOSAVE` on 6.x (exactly those two words, the only form allowed while busy);
    /// `SHUTDOWN NOSAVE NOW [FORCE]` on 7.0+, where plain NOSAVE would wait for lagging replicas
    /// in a cron that never runs during a busy script. An unknown version gets the 7.0+ form.
    pub fn for_version(major: Option<u32>, force: bool) -> ShutdownCommand {
        if major.is_some_and(|m| m < 7) {
            return ShutdownCommand {
                abort_first: false,
                words: vec!["SHUTDOWN", "NOSAVE"],
            };
        }
        let mut words = vec!["SHUTDOWN", "NOSAVE", "NOW"];
        if force {
            words.push("FORCE");
        }
        ShutdownCommand {
            abort_first: true,
            words,
        }
    }

    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// Events to record (in order, before the action) and at most one action.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    pub events: Vec<Event>,
    pub action: Option<Action>,
}

/// The part of a policy the engine decides with.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub instance: String,
    /// SHA-256 of the policy file, named in every record.
    pub policy_hash: String,
    pub dry_run: bool,
    pub kill_after: Millis,
    pub wait: Millis,
    pub then: Then,
    pub force: bool,
    pub hang_after: Millis,
    pub hang_signal: HangSignal,
    pub signal_after: Millis,
    pub max_shutdowns: u32,
    pub per: Millis,
    pub guards: policy::Guards,
}

impl Rules {
    /// `dry_run` is forced on by `--dry-run`, whatever the file says.
    pub fn from_policy(p: &Policy, force_dry_run: bool) -> Rules {
        let ms = |d: std::time::Duration| d.as_millis() as Millis;
        Rules {
            instance: p.instance.clone(),
            policy_hash: p.content_hash.clone(),
            dry_run: force_dry_run || p.mode == Mode::DryRun,
            kill_after: ms(p.on_busy.kill_after),
            wait: ms(p.on_busy.on_unkillable.wait),
            then: p.on_busy.on_unkillable.then,
            force: p.on_busy.on_unkillable.force,
            hang_after: ms(p.on_hang.after),
            hang_signal: p.on_hang.signal,
            signal_after: ms(p.on_hang.signal_after),
            max_shutdowns: p.limits.max_shutdowns,
            per: ms(p.limits.per),
            guards: p.guards.clone(),
        }
    }
}

/// Where the kill stands within an incident.
#[derive(Clone, Debug, PartialEq)]
enum Kill {
    NotYet,
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
    /// The budget applies: unkillable, a module, a failed kill, or a dry-run kill.
    Waiting {
        why: &'static str,
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
    escalation: Escalation,
    hang_reported: bool,
    unreachable_reported: bool,
    signal_sent: bool,
    /// The server's run id before the incident, to tell a restart in `recovered`.
    run_id_before: Option<String>,
}

/// The state machine of one instance.
#[derive(Debug)]
pub struct Engine {
    rules: Rules,
    snapshot: Option<(Snapshot, Millis)>,
    incident: Option<Incident>,
    /// When shutdowns were decided, for `limits` (dry-run decisions count too, so a dry run
    /// shows what enforce would do).
    shutdowns: Vec<Millis>,
    /// The last configuration fault reported, so it is reported once, not on every probe.
    fault: Option<String>,
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
            shutdowns: Vec::new(),
            fault: None,
            loading: false,
            threshold_zero_reported: false,
            opened: 0,
        }
    }

    /// Resume from what the trail says (after a restart of the daemon, even a SIGKILL): the
    /// incident still open goes on under the same id, with what was already done (a kill, a
    /// shutdown) counted as done, so nothing is sent twice; past shutdowns still count for
    /// `limits`. Wall-clock times in the records are placed on the monotonic clock by their age
    /// at `now`. Returns the id of the resumed incident.
    pub fn resume(&mut self, history: &crate::audit::History, now: At) -> Option<String> {
        let to_mono = |unix_ms: u64| now.mono.saturating_sub(now.unix_ms.saturating_sub(unix_ms));
        self.shutdowns = history.shutdowns.iter().map(|t| to_mono(*t)).collect();
        let records = &history.open_incident;
        let first = records.first()?;
        let id = first["incident"].as_str()?.to_string();
        let find = |event: &str| records.iter().find(|r| r["event"] == event);
        let has = |event: &str| find(event).is_some();
        let busy = find("busy_detected");
        let kind = match busy.and_then(|b| b["detail"]["busy_kind"].as_str()) {
            Some("function") => Some(BusyKind::Function),
            Some("module") => Some(BusyKind::Module),
            Some(_) => Some(BusyKind::Script),
            None => None,
        };
        let cause = match kind {
            Some(k) => Cause::Busy(k),
            None if has("hang_detected") => Cause::Hang,
            None => Cause::Unreachable,
        };
        let kill = if has("kill_sent") || has("unkillable") || kind == Some(BusyKind::Module) {
            Kill::Waiting {
                why: "resumed after a restart: the kill was already decided",
            }
        } else {
            Kill::NotYet
        };
        let shutdown = find("shutdown_sent");
        let escalation = if has("shutdown_confirmed") {
            Escalation::ShutdownConfirmed
        } else if let Some(sent) = shutdown {
            if sent["dry_run"] == true {
                Escalation::ShutdownDecided
            } else {
                Escalation::ShutdownSent
            }
        } else if has("escalation_withheld") {
            Escalation::Withheld
        } else {
            Escalation::NotYet
        };
        self.opened += 1;
        self.incident = Some(Incident {
            id: id.clone(),
            opened: crate::audit::ts_unix_ms(first).map_or(now.mono, to_mono),
            cause,
            first_busy: busy.and_then(crate::audit::ts_unix_ms).map(to_mono),
            kill,
            escalation,
            hang_reported: has("hang_detected"),
            unreachable_reported: has("unreachable"),
            signal_sent: has("signal_sent"),
            run_id_before: busy
                .and_then(|b| b["detail"]["snapshot"]["run_id"].as_str())
                .map(str::to_string),
        });
        Some(id)
    }

    /// Take new rules (a reload) without losing the incident in flight.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().map(|(s, _)| s)
    }

    /// The state, as metrics and `status` name it.
    pub fn state(&self) -> &'static str {
        match &self.incident {
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

    /// The incident in flight, if any.
    pub fn incident_id(&self) -> Option<&str> {
        self.incident.as_ref().map(|i| i.id.as_str())
    }

    /// The next instant at which a fresh BUSY reply could lead to an action: the watchdog sends
    /// a PING then, so a deadline is met within one round trip instead of one probe interval.
    pub fn next_deadline(&self) -> Option<Millis> {
        let i = self.incident.as_ref()?;
        let first = i.first_busy?;
        match (&i.kill, &i.escalation) {
            (Kill::NotYet, _) => Some(first + self.rules.kill_after),
            (Kill::Waiting { .. }, Escalation::NotYet) => Some(first + self.rules.wait),
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
        let now = at.mono;
        match obs {
            Observation::Pong { snapshot } => {
                if let Some(s) = snapshot {
                    let zero = s.busy_threshold_ms == Some(0);
                    if zero && !self.threshold_zero_reported {
                        let detail = json!({"warning": "busy-reply-threshold is 0: the server never answers BUSY, so no SCRIPT KILL or SHUTDOWN can get through a runaway script; only a hang (silence) can be seen", "threshold_ms": 0});
                        step.events
                            .push(self.event(EventKind::ProbeFault, false, detail));
                    }
                    self.threshold_zero_reported = zero;
                    self.snapshot = Some((*s, now));
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
                    let detail = json!({"reply": reply, "note": "configuration fault: reported, never acted on"});
                    step.events
                        .push(self.event(EventKind::ProbeFault, false, detail));
                    self.fault = Some(reply);
                }
            }
            Observation::Unreachable { reason } => self.on_unreachable(at, reason, &mut step),
            Observation::KillReply(reply) => self.on_kill_reply(now, reply, &mut step),
            Observation::Shutdown(outcome) => self.on_shutdown(now, outcome, &mut step),
            Observation::Signal(result) => {
                if let Err(e) = result {
                    let detail = json!({"action": "signal", "error": e});
                    step.events
                        .push(self.event(EventKind::ActionFailed, false, detail));
                }
            }
        }
        step
    }

    fn open(&mut self, at: At, cause: Cause) -> &mut Incident {
        self.opened += 1;
        let id = format!("{}-{}-{}", self.rules.instance, at.unix_ms, self.opened);
        let run_id_before = self.snapshot().and_then(|s| s.run_id.clone());
        self.incident.insert(Incident {
            id,
            opened: at.mono,
            cause,
            first_busy: None,
            kill: Kill::NotYet,
            escalation: Escalation::NotYet,
            hang_reported: false,
            unreachable_reported: false,
            signal_sent: false,
            run_id_before,
        })
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
        let is_busy = matches!(
            self.incident.as_ref().map(|i| i.cause),
            Some(Cause::Busy(_))
        );
        if !is_busy {
            if self.incident.is_none() {
                self.open(at, Cause::Busy(kind));
            }
            let inc = self.incident.as_mut().expect("incident just ensured");
            inc.cause = Cause::Busy(kind);
            inc.first_busy = Some(now);
            if kind == BusyKind::Module {
                inc.kill = Kill::Waiting {
                    why: "a module command is busy: no kill exists for it",
                };
            }
            let mut detail = self.inputs(now);
            detail["reply"] = json!(reply);
            detail["busy_kind"] = json!(kind.name());
            if self.snapshot().and_then(|s| s.busy_threshold_ms) == Some(0) {
                detail["warning"] = json!("busy-reply-threshold is 0 on this server");
            }
            step.events
                .push(self.event(EventKind::BusyDetected, false, detail));
        }
        let rules = self.rules.clone();
        let inc = self.incident.as_mut().expect("busy incident");
        let first = inc.first_busy.unwrap_or(now);
        if inc.kill == Kill::NotYet && now >= first + rules.kill_after {
            let command = if kind == BusyKind::Function {
                KillCommand::FunctionKill
            } else {
                KillCommand::ScriptKill
            };
            inc.kill = if rules.dry_run {
                Kill::Waiting {
                    why: "dry-run: the kill was decided, not sent",
                }
            } else {
                Kill::Sent { command, at: now }
            };
            let mut detail = self.inputs(now);
            detail["command"] = json!(command.words().join(" "));
            detail["reply_seen"] = json!(reply);
            step.events
                .push(self.event(EventKind::KillSent, rules.dry_run, detail));
            if !rules.dry_run {
                step.action = Some(Action::Kill(command));
            }
            return;
        }
        let inc = self.incident.as_ref().expect("busy incident");
        if matches!(inc.kill, Kill::Waiting { .. })
            && inc.escalation == Escalation::NotYet
            && now >= first + rules.wait
        {
            self.escalate(now, reply, step);
        }
    }

    /// The budget is spent and the last reply was BUSY: shut down, or say why not.
    fn escalate(&mut self, now: Millis, reply: String, step: &mut Step) {
        let rules = self.rules.clone();
        let mut detail = self.inputs(now);
        detail["reply_seen"] = json!(reply);
        let withheld = self.withheld_because(now);
        let major = self.snapshot().and_then(Snapshot::major_version);
        let inc = self.incident.as_mut().expect("busy incident");
        if let Some(reason) = withheld {
            inc.escalation = Escalation::Withheld;
            detail["reason"] = json!(reason);
            step.events
                .push(self.event(EventKind::EscalationWithheld, rules.dry_run, detail));
            return;
        }
        let command = ShutdownCommand::for_version(major, rules.force);
        inc.escalation = if rules.dry_run {
            Escalation::ShutdownDecided
        } else {
            Escalation::ShutdownSent
        };
        self.shutdowns.push(now);
        detail["command"] = json!(command.text());
        detail["abort_first"] = json!(command.abort_first);
        step.events
            .push(self.event(EventKind::ShutdownSent, rules.dry_run, detail));
        if !rules.dry_run {
            step.action = Some(Action::Shutdown(command));
        }
    }

    /// Why a shutdown must not be sent now, if it must not.
    fn withheld_because(&self, now: Millis) -> Option<String> {
        let rules = &self.rules;
        if rules.then == Then::Notify {
            return Some("policy: `on_unkillable.then` is `notify`".into());
        }
        let recent = self
            .shutdowns
            .iter()
            .filter(|t| now.saturating_sub(**t) < rules.per)
            .count();
        if recent >= rules.max_shutdowns as usize {
            return Some(format!(
                "limits: {recent} shutdown(s) already within {} (max_shutdowns {})",
                humantime::format_duration(std::time::Duration::from_millis(rules.per)),
                rules.max_shutdowns
            ));
        }
        let snapshot = self.snapshot();
        if let Some(max) = rules.guards.max_unsaved_changes {
            match snapshot {
                None => {
                    return Some(
                        "guards.max_unsaved_changes: no healthy snapshot, data at risk unknown"
                            .into(),
                    );
                }
                Some(s) if s.aof_enabled != Some(true) => {
                    let changes = s.rdb_changes_since_last_save.unwrap_or(u64::MAX);
                    if changes > max {
                        return Some(format!(
                            "guards.max_unsaved_changes: RDB-only instance with {changes} unsaved changes (max {max})"
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        if rules.guards.keep_primary_with_replicas
            && let Some(s) = snapshot
            && s.role.as_deref() == Some("master")
            && s.connected_replicas.unwrap_or(0) > 0
        {
            return Some(format!(
                "guards.keep_primary_with_replicas: primary with {} replica(s) attached",
                s.connected_replicas.unwrap_or(0)
            ));
        }
        None
    }

    fn on_silence(&mut self, at: At, for_ms: Millis, step: &mut Step) {
        let rules = self.rules.clone();
        if self.incident.is_none() && for_ms >= rules.hang_after {
            self.open(at, Cause::Hang).hang_reported = true;
            let mut detail = self.inputs(at.mono);
            detail["silent_ms"] = json!(for_ms);
            step.events
                .push(self.event(EventKind::HangDetected, false, detail));
        }
        let Some(inc) = self.incident.as_mut() else {
            return;
        };
        if inc.cause != Cause::Hang
            || inc.signal_sent
            || rules.hang_signal != HangSignal::Sigkill
            || for_ms < rules.signal_after
        {
            return;
        }
        inc.signal_sent = true;
        let target = self
            .snapshot()
            .and_then(|s| Some((s.process_id?, s.process_start_ticks?)));
        let mut detail = self.inputs(at.mono);
        detail["silent_ms"] = json!(for_ms);
        detail["signal"] = json!("SIGKILL");
        match target {
            None => {
                detail["reason"] = json!("no pid with a known start time in the healthy snapshot");
                step.events
                    .push(self.event(EventKind::EscalationWithheld, rules.dry_run, detail));
            }
            Some((pid, start_ticks)) => {
                detail["pid"] = json!(pid);
                step.events
                    .push(self.event(EventKind::SignalSent, rules.dry_run, detail));
                if !rules.dry_run {
                    step.action = Some(Action::Signal { pid, start_ticks });
                }
            }
        }
    }

    fn on_unreachable(&mut self, at: At, reason: String, step: &mut Step) {
        if let Some(inc) = &self.incident
            && matches!(
                inc.escalation,
                Escalation::ShutdownSent | Escalation::ShutdownConfirmed
            )
        {
            return; // down because we shut it down: expected, already recorded
        }
        if self.incident.is_none() {
            self.open(at, Cause::Unreachable);
        }
        let inc = self.incident.as_mut().expect("incident");
        if inc.unreachable_reported {
            return;
        }
        inc.unreachable_reported = true;
        let mut detail = self.inputs(at.mono);
        detail["reason"] = json!(reason);
        step.events
            .push(self.event(EventKind::Unreachable, false, detail));
    }

    fn on_kill_reply(&mut self, now: Millis, reply: KillReply, step: &mut Step) {
        let Some(inc) = self.incident.as_mut() else {
            return;
        };
        let Kill::Sent { command, at } = inc.kill else {
            return;
        };
        let budget_left = inc
            .first_busy
            .map(|f| (f + self.rules.wait).saturating_sub(now));
        let mut detail = json!({
            "command": command.words().join(" "),
            "reply_ms": now.saturating_sub(at),
            "budget_left_ms": budget_left,
            "then": match self.rules.then { Then::Shutdown => "shutdown", Then::Notify => "notify" },
        });
        match reply {
            KillReply::Ok => {
                inc.kill = Kill::Accepted {
                    command,
                    reply_at: now,
                };
            }
            KillReply::Unkillable(text) => {
                inc.kill = Kill::Waiting {
                    why: "the script already wrote",
                };
                detail["reply"] = json!(text);
                step.events
                    .push(self.event(EventKind::Unkillable, false, detail));
            }
            KillReply::Error(text) | KillReply::Lost(text) => {
                inc.kill = Kill::Waiting {
                    why: "the kill failed",
                };
                detail["reply"] = json!(text);
                step.events
                    .push(self.event(EventKind::ActionFailed, false, detail));
            }
        }
    }

    fn on_shutdown(&mut self, now: Millis, outcome: ShutdownOutcome, step: &mut Step) {
        let Some(inc) = self.incident.as_mut() else {
            return;
        };
        if inc.escalation != Escalation::ShutdownSent {
            return;
        }
        let since_busy = inc.first_busy.map(|f| now.saturating_sub(f));
        let (kind, detail) = match outcome {
            ShutdownOutcome::Confirmed { elapsed_ms } => {
                inc.escalation = Escalation::ShutdownConfirmed;
                (
                    EventKind::ShutdownConfirmed,
                    json!({"confirm_ms": elapsed_ms, "since_first_busy_ms": since_busy,
                           "how": "the connection closed without a reply and the server refused new connections"}),
                )
            }
            ShutdownOutcome::Refused(reply) | ShutdownOutcome::Failed(reply) => {
                inc.escalation = Escalation::ShutdownFailed;
                (
                    EventKind::ActionFailed,
                    json!({"action": "shutdown", "reply": reply, "note": "not retried: a shutdown is sent at most once"}),
                )
            }
        };
        step.events.push(self.event(kind, false, detail));
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
        if let Kill::Accepted { command, reply_at } = inc.kill {
            let detail = json!({
                "command": command.words().join(" "),
                "confirmed_ms_after_reply": now.saturating_sub(reply_at),
                "since_first_busy_ms": inc.first_busy.map(|f| now.saturating_sub(f)),
            });
            step.events
                .push(self.event_for(&inc, EventKind::Killed, false, detail));
        }
        let how = match (&inc.kill, &inc.escalation) {
            (Kill::Accepted { .. }, _) => "killed",
            (_, Escalation::ShutdownConfirmed | Escalation::ShutdownSent) => {
                "restarted after shutdown"
            }
            (_, _) if inc.cause == Cause::Unreachable => "reachable again",
            _ => "ended by itself",
        };
        let detail = json!({
            "how": how,
            "duration_ms": now.saturating_sub(inc.opened),
            "since_first_busy_ms": inc.first_busy.map(|f| now.saturating_sub(f)),
            "restarted": restarted,
            "run_id": run_id_now,
        });
        step.events
            .push(self.event_for(&inc, EventKind::Recovered, false, detail));
    }

    /// The decision inputs every decision record carries.
    fn inputs(&self, now: Millis) -> Value {
        let r = &self.rules;
        let inc = self.incident.as_ref();
        let first = inc.and_then(|i| i.first_busy);
        json!({
            "since_first_busy_ms": first.map(|f| now.saturating_sub(f)),
            "budget_left_ms": first.map(|f| (f + r.wait).saturating_sub(now)),
            "policy": {
                "kill_after_ms": r.kill_after, "wait_ms": r.wait,
                "then": match r.then { Then::Shutdown => "shutdown", Then::Notify => "notify" },
                "max_shutdowns": r.max_shutdowns, "per_ms": r.per,
            },
            "threshold_ms": self.snapshot().and_then(|s| s.busy_threshold_ms),
            "snapshot_age_ms": self.snapshot.as_ref().map(|(_, t)| now.saturating_sub(*t)),
            "snapshot": self.snapshot().map(Snapshot::to_json),
            "data_at_risk": self.snapshot().map(Snapshot::data_at_risk),
        })
    }

    fn event(&self, kind: EventKind, dry_run: bool, detail: Value) -> Event {
        Event {
            kind,
            instance: Some(self.rules.instance.clone()),
            incident: self.incident.as_ref().map(|i| i.id.clone()),
            dry_run,
            detail: into_map(detail),
            policy: Some(self.rules.policy_hash.clone()),
        }
    }

    fn event_for(&self, inc: &Incident, kind: EventKind, dry_run: bool, detail: Value) -> Event {
        Event {
            incident: Some(inc.id.clone()),
            ..self.event(kind, dry_run, detail)
        }
    }
}

#[cfg(test)]
mod tests;
