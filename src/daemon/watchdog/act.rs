//! Carrying out a step: record its events (with the forensics they call for), then send its
//! action, once, and feed the outcome back to the engine.
//!
//! The record-then-send gate: a `*_sent` record is in the trail before its command is written
//! to the socket. A shutdown or a signal whose record cannot be written and flushed is not sent;
//! a kill goes all the same (it is harmless and idempotent). Every wait for a reply is
//! bounded by the next deadline that matters (the end of the budget, `on_hang.after`, a stop):
//! a server that reads a kill and never answers (a partition, a process frozen right after its
//! BUSY reply) costs an `action_failed` and a new connection, never the watchdog.

use std::time::Duration;

use crate::engine::{Action, FailoverOutcome, KillReply, Observation, ShutdownOutcome, Step};
use crate::event::Detail;
use crate::event::detail::RecoveredHow;
use crate::redis::forensics;
use crate::redis::probe::{Connection, Outcome};
use crate::remedy;

use super::Watchdog;

/// The least time a command's reply is given, however close the next deadline.
const REPLY_FLOOR: Duration = Duration::from_millis(500);
/// What the forensics during an incident (FUNCTION STATS, allowed while busy) may take at most.
const FORENSICS_LIMIT: Duration = Duration::from_secs(2);
/// What the forensics after a recovery (SLOWLOG, INFO) may take at most. A client may start the
/// next script the instant the last one ends; the server then answers nothing until that
/// script's threshold, and the `recovered` record (its time, its notification, the next probe)
/// must not wait that long. On a free server they take a millisecond or two.
const RECOVERY_FORENSICS_LIMIT: Duration = Duration::from_millis(200);

impl Watchdog {
    /// Record a step's events, then carry out its action and feed the outcome back. `conn` is
    /// `None` when there is no connection to act through. Returns true when the connection is
    /// gone (after a shutdown, a lost or unanswered command) and must be opened anew.
    pub(super) async fn act(&mut self, conn: Option<&Connection>, step: Step) -> bool {
        if step.events.is_empty() && step.action.is_none() {
            return false;
        }
        // Carrying out a step holds every command it may send: tens of KiB of future. Boxed
        // (one allocation, a microsecond, only for a step that decides something), it is not
        // part of every watchdog's resident task for the probes that decide nothing.
        Box::pin(self.carry_out(conn, step)).await
    }

    async fn carry_out(&mut self, conn: Option<&Connection>, mut step: Step) -> bool {
        let function_busy = step.events.iter().any(|e| {
            matches!(&e.detail, Detail::BusyDetected(b) if b.busy_kind == crate::model::kinds::BusyKind::Function)
        });
        // Forensics cost round trips: never ahead of an action (a new incident right after
        // the last one), only when nothing waits on them.
        if let (Some(conn), None) = (conn, &step.action) {
            self.add_recovery_forensics(conn, &mut step.events).await;
        }
        let recorded = self.recorder.record_all(&step.events);
        let (Some(conn), Some(action)) = (conn, step.action) else {
            if let (Some(conn), true) = (conn, function_busy) {
                let stats = bounded(FORENSICS_LIMIT, conn.call(&["FUNCTION", "STATS"])).await;
                self.function_stats = Some(forensics::running_function(&stats));
            }
            return false;
        };
        // The record is written; a shutdown or a signal also waits until it is on disk (off the
        // runtime thread), so a restarted daemon never sends it twice. A kill does not wait,
        // and goes even when the trail cannot be written: it is harmless and idempotent, and an
        // operator prefers a killed script to a stalled server.
        let held_back = match (&recorded, &action) {
            (Err(e), Action::Shutdown(_) | Action::Signal { .. } | Action::Failover(_)) => Some(
                format!("not sent: the audit record could not be written ({e})"),
            ),
            (Ok(()), Action::Shutdown(_) | Action::Signal { .. } | Action::Failover(_)) => {
                match self.flush().await {
                    Ok(()) => None,
                    Err(e) => Some(format!(
                        "not sent: the audit record could not be flushed ({e})"
                    )),
                }
            }
            (Err(e), Action::Kill(_)) => {
                tracing::error!(instance = %self.policy.instance, error = %e,
                    "the audit record could not be written: the kill goes all the same");
                None
            }
            (Ok(()), Action::Kill(_)) => None,
        };
        if let Some(reason) = held_back {
            tracing::error!(instance = %self.policy.instance, %reason, "action withheld");
            let outcome = unanswered(&action, reason, false);
            let step = self.decide(outcome);
            let _ = self.recorder.record_all(&step.events);
            return false;
        }
        let limit = match &action {
            // The failover bounds itself; the margin is for the last question in flight.
            Action::Failover(plan) => Duration::from_millis(plan.timeout_ms) + REPLY_FLOOR,
            _ => self.reply_limit(),
        };
        if let Action::Kill(_) = action {
            self.kills_sent += 1;
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
            match &action {
                Action::Kill(command) => {
                    let reply =
                        remedy::kill::kill_then(conn, *command, || self.flush_later()).await;
                    let gone = matches!(reply, KillReply::Lost(_));
                    (Observation::KillReply(reply), gone)
                }
                Action::Shutdown(command) => {
                    let outcome = remedy::shutdown::shutdown(conn, command, &endpoint).await;
                    let gone = matches!(
                        outcome,
                        ShutdownOutcome::Confirmed { .. } | ShutdownOutcome::Failed(_)
                    );
                    (Observation::Shutdown(outcome), gone)
                }
                Action::Signal { pid, start_ticks } => (
                    Observation::Signal(remedy::signal::sigkill(*pid, *start_ticks)),
                    false,
                ),
                Action::Failover(plan) => {
                    let sentinel = self.policy.topology.sentinel.as_ref();
                    let outcome =
                        crate::remedy::failover::carry_out(plan, &self.policy.redis, sentinel)
                            .await;
                    (Observation::Failover(outcome), false)
                }
            }
        };
        let mut stop = self.stop.clone();
        // A bounded wait on an action is the loop at work, not a stalled one: it keeps showing
        // signs of life for systemd's watchdog (a failover may take `failover.timeout`, longer
        // than WatchdogSec).
        let heartbeat = self.heartbeat.clone();
        let alive = async move {
            loop {
                tokio::time::sleep(super::HEARTBEAT).await;
                heartbeat.store(
                    crate::model::clock::unix_ms(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        };
        let done = async {
            tokio::select! {
                // The action first: even at a stop, it is sent (once) before the wait ends.
                biased;
                r = tokio::time::timeout(limit, async { tokio::join!(stats, perform) }) => r.ok(),
                _ = stop.wait_for(|s| *s) => None,
                never = alive => never,
            }
        };
        let (outcome, gone) = match done.await {
            Some((stats, (outcome, gone))) => {
                if let Some(stats) = stats {
                    self.function_stats = Some(forensics::running_function(&stats));
                }
                (outcome, gone)
            }
            None => {
                let why = match self.stopping() {
                    true => "busyguard stopped before a reply came".to_string(),
                    false => format!(
                        "no reply within {} ms (the next deadline that matters): the connection \
                         is dropped and opened anew",
                        limit.as_millis()
                    ),
                };
                tracing::warn!(instance = %self.policy.instance, reason = %why, "action unanswered");
                let outcome = unanswered(&action, why, true);
                (outcome, true)
            }
        };
        let mut step = self.decide(outcome);
        // What the script was, as early as it is known: the function FUNCTION STATS named.
        let running = self
            .function_stats
            .as_ref()
            .and_then(|f| f["name"].as_str())
            .map(str::to_string);
        for event in &mut step.events {
            if let Detail::Unkillable(answer) = &mut event.detail {
                answer.function.clone_from(&running);
            }
        }
        let _ = self.recorder.record_all(&step.events);
        gone
    }

    /// Flush the trail off the runtime thread, and wait for it.
    async fn flush(&self) -> std::io::Result<()> {
        let audit = self.recorder.audit.clone();
        tokio::task::spawn_blocking(move || audit.sync())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Flush the trail off the runtime thread, without waiting (after a kill has left).
    fn flush_later(&self) {
        let audit = self.recorder.audit.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = audit.sync() {
                tracing::error!(error = %e, "audit sync failed");
            }
        });
    }

    /// How long an action's reply may take: until the end of the budget (an unanswered kill
    /// must not hold back the escalation) or `on_hang.after`, whichever comes first.
    fn reply_limit(&self) -> Duration {
        let now = self.now().mono;
        let hang = self.engine.rules().hang_after;
        let ms = match self.engine.budget_end().map(|end| end.saturating_sub(now)) {
            Some(left) if left > 0 => left.min(hang),
            _ => hang,
        };
        Duration::from_millis(ms).max(REPLY_FLOOR)
    }

    /// Fill a `recovered` record with what the server can now tell of the incident.
    async fn add_recovery_forensics(
        &mut self,
        conn: &Connection,
        events: &mut [crate::event::Event],
    ) {
        let Some(recovered) = events.iter_mut().find_map(|e| match &mut e.detail {
            Detail::Recovered(r) => Some(r),
            _ => None,
        }) else {
            return;
        };
        let mut found = serde_json::Map::new();
        let kills_sent = std::mem::take(&mut self.kills_sent);
        if let Some(function) = self.function_stats.take() {
            found.insert("function".into(), function);
        }
        if recovered.restarted == Some(true) {
            found.insert(
                "note".into(),
                "the server restarted: its SLOWLOG and counters began anew".into(),
            );
        } else if recovered.how != RecoveredHow::ReachableAgain {
            let opened = crate::model::clock::unix_ms().saturating_sub(recovered.duration_ms);
            let after = forensics::after_recovery(conn, opened, self.baseline.as_ref());
            let (told, kills) = tokio::time::timeout(RECOVERY_FORENSICS_LIMIT, after)
                .await
                .unwrap_or_else(|_| {
                    let why = "no reply in time: another script may have started";
                    (serde_json::json!({ "error": why }), None)
                });
            if let serde_json::Value::Object(m) = told {
                found.extend(m);
            }
            // The server counted more kills than busyguard sent: another client ended it.
            if recovered.how == RecoveredHow::EndedByItself && kills.is_some_and(|k| k > kills_sent)
            {
                recovered.how = RecoveredHow::KilledByOther;
            }
        }
        recovered.forensics = Some(serde_json::Value::Object(found));
    }
}

/// What the engine is told of an action that was held back (`lost`: false) or got no answer in
/// time (`lost`: true).
fn unanswered(action: &Action, why: String, lost: bool) -> Observation {
    match action {
        Action::Kill(_) if lost => Observation::KillReply(KillReply::Lost(why)),
        Action::Kill(_) => Observation::KillReply(KillReply::Error(why)),
        Action::Shutdown(_) => Observation::Shutdown(ShutdownOutcome::Failed(why)),
        Action::Signal { .. } => Observation::Signal(Err(why)),
        // Whether a request was accepted before the bound is not known: said as not.
        Action::Failover(_) => Observation::Failover(FailoverOutcome::Failed {
            accepted: false,
            reason: why,
        }),
    }
}

/// A call's outcome, or `Lost` past `limit`.
async fn bounded(limit: Duration, call: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Outcome::Lost(format!("no reply within {} ms", limit.as_millis())))
}
