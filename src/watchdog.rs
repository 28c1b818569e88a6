//! One watchdog task per instance: it owns the probe connection, feeds what it sees to the
//! engine, records the engine's events, and carries out its actions.
//!
//! Exactly one probe command is outstanding at a time and it is never abandoned: a PING sent
//! during a script's silent phase is answered BUSY the instant the threshold passes, so BUSY is
//! seen one round trip after the server starts accepting kills, whatever `probe.interval` is.
//! Deadlines from the engine (end of `kill_after`, end of `wait`) bring the next PING forward so
//! the action lands one round trip after them. A `*_sent` record is on disk before its command
//! is written to the socket; if it cannot be recorded, the command is not sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::watch;
use tokio::time::sleep_until;

use crate::audit::{AuditLog, History};
use crate::engine::{Action, At, Engine, KillReply, Observation, Rules, ShutdownOutcome, Step};
use crate::event::{Event, EventKind, into_map};
use crate::forensics;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::probe::{self, ConnectError, Connection, Outcome, classify_error};
use crate::remedy;
use crate::snapshot::{Snapshot, process_start_ticks};

/// Reconnection attempts are spaced by the probe interval, within these bounds.
const RECONNECT_MIN: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// The engine's clock starts here rather than at zero, so that instants before the daemon
/// started (an incident resumed from the trail) are still representable.
const MONO_ORIGIN_MS: u64 = 400 * 24 * 3600 * 1000;

/// The loops show they are alive at least this often (systemd's WatchdogSec must exceed it).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Why a session on one connection ended.
enum SessionEnd {
    Lost,
    Stopped,
}

pub struct Watchdog {
    policy: Policy,
    force_dry_run: bool,
    engine: Engine,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    /// Zero of the engine's monotonic clock.
    epoch: Instant,
    stop: watch::Receiver<bool>,
    /// A reload sends the file's new version here.
    policy_updates: watch::Receiver<Policy>,
    /// Unix ms of the loop's last sign of life, for systemd's WATCHDOG=1.
    heartbeat: Arc<AtomicU64>,
    beat: tokio::time::Interval,
    /// The last snapshot taken outside an incident, for the forensics' counter deltas.
    baseline: Option<Snapshot>,
    /// The running function FUNCTION STATS named during the incident in flight.
    function_stats: Option<serde_json::Value>,
}

/// What the daemon hands a watchdog to steer it.
pub struct Controls {
    pub stop: watch::Receiver<bool>,
    pub policy_updates: watch::Receiver<Policy>,
    pub heartbeat: Arc<AtomicU64>,
}

/// Why a wait ended.
enum Wake {
    Time,
    Stop,
    /// The policy changed where the connection is concerned: connect anew.
    Reconnect,
}

impl Watchdog {
    pub fn new(
        policy: Policy,
        force_dry_run: bool,
        audit: Arc<AuditLog>,
        metrics: Arc<Metrics>,
        controls: Controls,
    ) -> Watchdog {
        let engine = Engine::new(Rules::from_policy(&policy, force_dry_run));
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Watchdog {
            policy,
            force_dry_run,
            engine,
            audit,
            metrics,
            epoch: Instant::now(),
            stop: controls.stop,
            policy_updates: controls.policy_updates,
            heartbeat: controls.heartbeat,
            beat,
            baseline: None,
            function_stats: None,
        }
    }

    /// A sign of life for systemd's watchdog. Resetting the beat means it only fires while the
    /// loop is really waiting (an outstanding probe, a connection being opened).
    fn alive(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.heartbeat.store(now, Ordering::Relaxed);
        self.beat.reset();
    }

    /// Take a reloaded policy without losing the incident in flight. True when the connection
    /// must be opened anew (the `redis` section changed).
    fn apply_policy(&mut self) -> bool {
        let new = self.policy_updates.borrow_and_update().clone();
        let reconnect = new.redis != self.policy.redis;
        self.engine
            .set_rules(Rules::from_policy(&new, self.force_dry_run));
        tracing::info!(instance = %new.instance, policy_hash = %new.content_hash, reconnect, "policy updated");
        self.policy = new;
        reconnect
    }

    /// Wait until `deadline`, then say whether to stop or reconnect. Stops and reloads are seen
    /// when the wait ends (at most one probe interval or reconnect delay late) instead of by
    /// registering on their channels at every probe: that registration was a measurable part of
    /// the cost of supervising hundreds of servers.
    async fn wait_until(&mut self, deadline: Instant) -> Wake {
        sleep_until(deadline.into()).await;
        self.alive();
        if *self.stop.borrow() {
            return Wake::Stop;
        }
        if self.policy_updates.has_changed().unwrap_or(false) && self.apply_policy() {
            return Wake::Reconnect;
        }
        Wake::Time
    }

    /// Continue what the trail says was in flight for this instance before a restart.
    pub fn resume(&mut self, history: &History) -> Option<String> {
        let now = self.now();
        self.engine.resume(history, now)
    }

    fn now(&self) -> At {
        At {
            mono: MONO_ORIGIN_MS + self.epoch.elapsed().as_millis() as u64,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// An engine instant as a clock instant.
    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms.saturating_sub(MONO_ORIGIN_MS))
    }

    /// Supervise until told to stop.
    pub async fn run(mut self) {
        let rules = self.engine.rules().clone();
        self.record_own(
            EventKind::WatchdogStarted,
            json!({
                "resumed_incident": self.engine.incident_id(),
                "endpoint": self.policy.redis.endpoint.to_string(),
                "policy_file": self.policy.source.display().to_string(),
                "policy_hash": self.policy.content_hash,
                "dry_run": rules.dry_run,
                "probe_interval_ms": self.policy.probe.interval.as_millis() as u64,
            }),
        );
        let retry = self
            .policy
            .probe
            .interval
            .clamp(RECONNECT_MIN, RECONNECT_MAX);
        // Set-up commands during a silent phase wait for the threshold, like a PING would.
        let setup_timeout = self
            .policy
            .on_hang
            .after
            .max(self.policy.redis.connect_timeout);
        while !*self.stop.borrow() {
            self.alive();
            let target = self.policy.redis.clone();
            let connecting = probe::connect(&target, setup_timeout);
            tokio::pin!(connecting);
            let attempt = loop {
                tokio::select! {
                    c = &mut connecting => break c,
                    _ = self.stop.changed() => break Err(ConnectError::Unreachable("stopping".into())),
                    _ = self.beat.tick() => self.alive(),
                }
            };
            if *self.stop.borrow() {
                break;
            }
            match attempt {
                Ok(conn) => {
                    if let SessionEnd::Stopped = self.session(&conn).await {
                        break;
                    }
                }
                Err(ConnectError::Unreachable(reason)) => {
                    self.metrics.probe_lost(&self.policy.instance);
                    let step = self.decide(Observation::Unreachable { reason });
                    self.act(None, step).await;
                }
                Err(ConnectError::Rejected(reply)) => {
                    // Set-up was refused (WRONGPASS, NOPERM, ...): a configuration fault. Even a
                    // BUSY here could not be acted on, with no connection to act through.
                    let observation = match classify_error(&reply) {
                        Observation::Busy { .. } => Observation::Fault { reply },
                        other => other,
                    };
                    let step = self.decide(observation);
                    self.act(None, step).await;
                }
            }
            if let Wake::Stop = self.wait_until(Instant::now() + retry).await {
                break;
            }
        }
        self.record_own(
            EventKind::WatchdogStopped,
            json!({"state": self.engine.state(), "incident_in_flight": self.engine.incident_id()}),
        );
    }

    /// Probe one connection until it is lost or the watchdog is stopped.
    async fn session(&mut self, conn: &Connection) -> SessionEnd {
        let interval = self.policy.probe.interval;
        let mut next_probe = Instant::now();
        let mut next_snapshot = Instant::now();
        loop {
            let wake = match self.engine.next_deadline() {
                Some(ms) => next_probe.min(self.instant(ms)),
                None => next_probe,
            };
            match self.wait_until(wake).await {
                Wake::Time => {}
                Wake::Stop => return SessionEnd::Stopped,
                Wake::Reconnect => return SessionEnd::Lost,
            }
            self.alive();
            let sent = Instant::now();
            let with_snapshot = sent >= next_snapshot;
            let probe = async {
                if !with_snapshot {
                    return (conn.ping().await, None);
                }
                match conn.snapshot().await {
                    Ok(s) => (Outcome::Reply(fred::types::Value::Null), Some(s)),
                    Err(outcome) => (outcome, None),
                }
            };
            tokio::pin!(probe);
            let (outcome, snapshot) = loop {
                let silence = self
                    .engine
                    .silence_deadline()
                    .map(|ms| sent + Duration::from_millis(ms));
                tokio::select! {
                    r = &mut probe => break r,
                    _ = sleep_until(silence.unwrap_or(sent + Duration::from_secs(86_400)).into()), if silence.is_some() => {
                        let for_ms = sent.elapsed().as_millis() as u64;
                        let step = self.decide(Observation::Silent { for_ms });
                        self.act(Some(conn), step).await;
                    }
                    _ = self.beat.tick() => {
                        self.alive();
                        if *self.stop.borrow() {
                            return SessionEnd::Stopped;
                        }
                    }
                }
            };
            tracing::trace!(instance = %self.policy.instance, snapshot = with_snapshot,
                waited_us = sent.elapsed().as_micros() as u64, outcome = ?outcome, "probe answered");
            match &outcome {
                Outcome::Lost(_) => self.metrics.probe_lost(&self.policy.instance),
                _ => self
                    .metrics
                    .probe_replied(&self.policy.instance, sent.elapsed()),
            }
            next_probe = sent + interval;
            let snapshot = snapshot.map(|mut s| {
                next_snapshot = Instant::now() + self.policy.probe.snapshot_every;
                if self.policy.redis.endpoint.is_local() {
                    s.process_start_ticks = s.process_id.and_then(process_start_ticks);
                }
                s
            });
            let observation = outcome.observation().unwrap_or(Observation::Pong {
                snapshot: snapshot.map(Box::new),
            });
            let lost = matches!(observation, Observation::Unreachable { .. });
            if let Observation::Pong { snapshot: Some(s) } = &observation
                && self.engine.incident_id().is_none()
            {
                // Counters of a healthy moment: what an incident's deltas are measured from.
                self.baseline = Some((**s).clone());
            }
            let step = self.decide(observation);
            let gone = self.act(Some(conn), step).await;
            if lost || gone {
                return SessionEnd::Lost;
            }
        }
    }

    /// Record a step's events (with the forensics they call for), then carry out its action
    /// and feed the outcome back. `conn` is `None` when there is no connection to act through.
    /// Returns true when the connection is gone (after a shutdown or a lost kill).
    async fn act(&mut self, conn: Option<&Connection>, mut step: Step) -> bool {
        let function_busy = step.events.iter().any(|e| {
            e.kind == EventKind::BusyDetected
                && e.detail.get("busy_kind") == Some(&json!("function"))
        });
        // Forensics cost round trips: never ahead of an action (a new incident right after
        // the last one), only when nothing waits on them.
        if let (Some(conn), None) = (conn, &step.action) {
            self.add_recovery_forensics(conn, &mut step.events).await;
        }
        let recorded = self.record(&step.events);
        let (Some(conn), Some(action)) = (conn, step.action) else {
            if let (Some(conn), true) = (conn, function_busy) {
                self.function_stats = Some(forensics::running_function(
                    &conn.call(&["FUNCTION", "STATS"]).await,
                ));
            }
            return false;
        };
        if let Err(e) = recorded {
            tracing::error!(instance = %self.policy.instance, error = %e,
                "the audit record could not be written: the action is NOT sent");
            let reason = format!("not sent: the audit record could not be written ({e})");
            let outcome = match action {
                Action::Kill(_) => Observation::KillReply(KillReply::Error(reason)),
                Action::Shutdown(_) => Observation::Shutdown(ShutdownOutcome::Failed(reason)),
                Action::Signal { .. } => Observation::Signal(Err(reason)),
            };
            let step = self.decide(outcome);
            let _ = self.record(&step.events);
            return false;
        }
        // FUNCTION STATS is written just ahead of the kill (join polls it first): it reaches the
        // server before the function dies and costs the kill nothing.
        let stats = async {
            match function_busy {
                true => Some(conn.call(&["FUNCTION", "STATS"]).await),
                false => None,
            }
        };
        let endpoint = self.policy.redis.endpoint.clone();
        let perform = async {
            match action {
                Action::Kill(command) => {
                    let reply = remedy::kill(conn, command).await;
                    let gone = matches!(reply, KillReply::Lost(_));
                    (Observation::KillReply(reply), gone)
                }
                Action::Shutdown(command) => {
                    let outcome = remedy::shutdown(conn, &command, &endpoint).await;
                    let gone = matches!(
                        outcome,
                        ShutdownOutcome::Confirmed { .. } | ShutdownOutcome::Failed(_)
                    );
                    (Observation::Shutdown(outcome), gone)
                }
                Action::Signal { pid, start_ticks } => (
                    Observation::Signal(remedy::sigkill(pid, start_ticks)),
                    false,
                ),
            }
        };
        let (stats, (outcome, gone)) = tokio::join!(stats, perform);
        if let Some(stats) = stats {
            self.function_stats = Some(forensics::running_function(&stats));
        }
        let step = self.decide(outcome);
        let _ = self.record(&step.events);
        gone
    }

    /// Fill a `recovered` record with what the server can now tell of the incident.
    async fn add_recovery_forensics(&mut self, conn: &Connection, events: &mut [Event]) {
        let Some(recovered) = events.iter_mut().find(|e| e.kind == EventKind::Recovered) else {
            return;
        };
        let mut found = serde_json::Map::new();
        if let Some(function) = self.function_stats.take() {
            found.insert("function".into(), function);
        }
        if recovered.detail.get("restarted") == Some(&json!(true)) {
            found.insert(
                "note".into(),
                json!("the server restarted: its SLOWLOG and counters began anew"),
            );
        } else if recovered.detail.get("how") != Some(&json!("reachable again")) {
            let duration = recovered
                .detail
                .get("duration_ms")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let opened = self.now().unix_ms.saturating_sub(duration);
            let before = self.baseline.as_ref();
            if let serde_json::Value::Object(m) =
                forensics::after_recovery(conn, opened, before).await
            {
                found.extend(m);
            }
        }
        recovered
            .detail
            .insert("forensics".into(), serde_json::Value::Object(found));
    }

    /// Give the engine an observation made now; the caller records and acts on the step.
    fn decide(&mut self, observation: Observation) -> Step {
        let now = self.now();
        let step = self.engine.observe(now, observation);
        self.metrics
            .set_state(&self.policy.instance, self.engine.state());
        step
    }

    fn record(&self, events: &[Event]) -> std::io::Result<()> {
        for event in events {
            log_event(&self.policy.instance, event);
            self.metrics.record(event);
            if let Err(e) = self.audit.append(event) {
                tracing::error!(error = %e, path = %self.audit.path().display(), "audit write failed");
                return Err(e);
            }
        }
        Ok(())
    }

    fn record_own(&self, kind: EventKind, detail: serde_json::Value) {
        let event = Event {
            kind,
            instance: Some(self.policy.instance.clone()),
            incident: self.engine.incident_id().map(str::to_string),
            dry_run: false,
            detail: into_map(detail),
            policy: Some(self.policy.content_hash.clone()),
        };
        let _ = self.record(&[event]);
    }
}

/// One log line per event; what needs a human's eye is a warning.
fn log_event(instance: &str, event: &Event) {
    let incident = event.incident.as_deref().unwrap_or("-");
    let detail = serde_json::Value::Object(event.detail.clone());
    let name = event.kind.name();
    match event.kind {
        EventKind::ProbeFault
        | EventKind::ActionFailed
        | EventKind::EscalationWithheld
        | EventKind::Unreachable
        | EventKind::HangDetected => {
            tracing::warn!(%instance, %incident, dry_run = event.dry_run, %detail, "{name}")
        }
        _ => tracing::info!(%instance, %incident, dry_run = event.dry_run, %detail, "{name}"),
    }
}
