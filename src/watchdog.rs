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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::watch;
use tokio::time::sleep_until;

use crate::audit::AuditLog;
use crate::engine::{Action, At, Engine, KillReply, Observation, Rules, ShutdownOutcome, Step};
use crate::event::{Event, EventKind, into_map};
use crate::policy::Policy;
use crate::probe::{self, ConnectError, Connection, Outcome, classify_error};
use crate::remedy;
use crate::snapshot::process_start_ticks;

/// Reconnection attempts are spaced by the probe interval, within these bounds.
const RECONNECT_MIN: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// Why a session on one connection ended.
enum SessionEnd {
    Lost,
    Stopped,
}

pub struct Watchdog {
    policy: Policy,
    engine: Engine,
    audit: Arc<AuditLog>,
    /// Zero of the engine's monotonic clock.
    epoch: Instant,
    stop: watch::Receiver<bool>,
}

impl Watchdog {
    pub fn new(
        policy: Policy,
        force_dry_run: bool,
        audit: Arc<AuditLog>,
        stop: watch::Receiver<bool>,
    ) -> Watchdog {
        let engine = Engine::new(Rules::from_policy(&policy, force_dry_run));
        Watchdog {
            policy,
            engine,
            audit,
            epoch: Instant::now(),
            stop,
        }
    }

    /// Supervise until told to stop.
    pub async fn run(mut self) {
        let rules = self.engine.rules().clone();
        self.record_own(
            EventKind::WatchdogStarted,
            json!({
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
            let attempt = tokio::select! {
                c = probe::connect(&self.policy.redis, setup_timeout) => c,
                _ = self.stop.changed() => break,
            };
            match attempt {
                Ok(conn) => {
                    if let SessionEnd::Stopped = self.session(&conn).await {
                        break;
                    }
                }
                Err(ConnectError::Unreachable(reason)) => {
                    self.feed(Observation::Unreachable { reason });
                }
                Err(ConnectError::Rejected(reply)) => {
                    // Set-up was refused (WRONGPASS, NOPERM, ...): a configuration fault. Even a
                    // BUSY here could not be acted on, with no connection to act through.
                    let observation = match classify_error(&reply) {
                        Observation::Busy { .. } => Observation::Fault { reply },
                        other => other,
                    };
                    self.feed(observation);
                }
            }
            let wake = tokio::time::Instant::now() + retry;
            tokio::select! {
                _ = sleep_until(wake) => {}
                _ = self.stop.changed() => break,
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
                Some(ms) => next_probe.min(self.epoch + Duration::from_millis(ms)),
                None => next_probe,
            };
            tokio::select! {
                _ = sleep_until(wake.into()) => {}
                _ = self.stop.changed() => return SessionEnd::Stopped,
            }
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
                        let step = self.feed(Observation::Silent { for_ms });
                        self.act(conn, step).await;
                    }
                    _ = self.stop.changed() => return SessionEnd::Stopped,
                }
            };
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
            let step = self.feed(observation);
            if lost || self.act(conn, step).await {
                return SessionEnd::Lost;
            }
        }
    }

    /// Record a step's events, then carry out its action and feed the outcome back. Returns
    /// true when the connection is gone (after a shutdown or a lost kill).
    async fn act(&mut self, conn: &Connection, step: Step) -> bool {
        let recorded = self.record(&step.events);
        let Some(action) = step.action else {
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
            self.feed(outcome);
            return false;
        }
        let (outcome, gone) = match action {
            Action::Kill(command) => {
                let reply = remedy::kill(conn, command).await;
                let gone = matches!(reply, KillReply::Lost(_));
                (Observation::KillReply(reply), gone)
            }
            Action::Shutdown(command) => {
                let outcome = remedy::shutdown(conn, &command, &self.policy.redis.endpoint).await;
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
        };
        self.feed(outcome);
        gone
    }

    /// Give the engine an observation made now, record what it decided, return the step for
    /// the caller to act on.
    fn feed(&mut self, observation: Observation) -> Step {
        let at = At {
            mono: self.epoch.elapsed().as_millis() as u64,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let step = self.engine.observe(at, observation);
        if step.action.is_none() {
            // Without an action nothing waits on the records: write them here. With one,
            // `act` writes them and sends only if they are on disk.
            let _ = self.record(&step.events);
            return Step {
                events: Vec::new(),
                action: None,
            };
        }
        step
    }

    fn record(&self, events: &[Event]) -> std::io::Result<()> {
        for event in events {
            log_event(&self.policy.instance, event);
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
