//! Carrying out a step: record its events, then ask what the engine wants to hear and send its
//! action (through [`remedy::carry_out`], the one dispatch), and hand what came back to the
//! engine. Nothing here decides: it records, sends within its bounds, and reports.
//!
//! The record-then-send gate: a `*_sent` record is in the trail before its command is written
//! to the socket. A shutdown, a signal or a failover whose record cannot be written and flushed
//! is not sent; a kill goes all the same (it is harmless and idempotent). Every wait for a reply
//! is bounded by the next deadline that matters (the end of the budget, `on_hang.after`, a
//! stop): a server that reads a kill and never answers (a partition, a process frozen right
//! after its BUSY reply) costs an `action_failed` and a new connection, never the watchdog.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::engine::{Inquiry, Observation, Step};
use crate::model::told::RunningFunction;
use crate::policy::Policy;
use crate::redis::forensics;
use crate::redis::probe::Connection;
use crate::remedy::{self, Context, Runtime};

use super::beside::Beside;

use super::Watchdog;

/// The least time a command's reply is given, however close the next deadline.
const REPLY_FLOOR: Duration = Duration::from_millis(500);
/// What FUNCTION STATS during an incident (allowed while busy) may take at most, when no kill
/// goes with it.
const FUNCTION_STATS_LIMIT: Duration = Duration::from_secs(2);
/// What the questions after a recovery (INFO, CONFIG, SLOWLOG) may take at most. A client may
/// start the next script the instant the last one ends; the server then answers nothing until
/// that script's threshold, and the `recovered` record (its time, its notification, the next
/// probe) must not wait that long. On a free server they take a millisecond or two.
const AFTER_RECOVERY_LIMIT: Duration = Duration::from_millis(200);

impl Watchdog {
    /// Record a step's events, then carry out its inquiry and action and feed what came back
    /// to the engine, until nothing more is due. `conn` is `None` when there is no connection
    /// to act through. Returns true when the connection is gone (after a shutdown, a lost or
    /// unanswered command) and must be opened anew.
    pub(super) async fn act(&mut self, conn: Option<&Connection>, step: Step) -> bool {
        if step.events.is_empty() && step.action.is_none() && step.inquiry.is_none() {
            return false;
        }
        // Carrying out a step holds every command it may send: tens of KiB of future. Boxed
        // (one allocation, a microsecond, only for a step that decides something), it is not
        // part of every watchdog's resident task for the probes that decide nothing.
        Box::pin(self.carry_out(conn, step)).await
    }

    async fn carry_out(&mut self, conn: Option<&Connection>, mut step: Step) -> bool {
        let mut gone = false;
        loop {
            let recorded = self
                .recorder
                .record_all(&step.events)
                .map_err(|e| e.to_string());
            let Some(conn) = conn.filter(|_| !gone) else {
                return gone;
            };
            let sent = std::time::Instant::now();
            let observations = match (step.action.take(), step.inquiry) {
                (Some(action), ahead) => {
                    let epoch = self.epoch;
                    let now_ms = move || super::MONO_ORIGIN_MS + epoch.elapsed().as_millis() as u64;
                    let ctx = Context {
                        conn,
                        generation: self.conn,
                        now_ms: &now_ms,
                        policy: &self.policy,
                        recorded,
                        ahead,
                        reply_limit: self.reply_limit(),
                    };
                    let performed = remedy::carry_out(&action, &ctx, &self.lent()).await;
                    gone = performed.gone;
                    // Long work that does not talk on the probe's connection goes on beside it.
                    if let Some(work) = performed.beside {
                        self.beside = Some(Beside::start(work));
                    }
                    performed.observations
                }
                (None, Some(inquiry)) => {
                    match ask(conn, &self.policy, inquiry, self.server_log.as_ref()).await {
                        Asked::Now(observation) => vec![observation],
                        Asked::Beside(work) => {
                            self.beside = Some(work);
                            Vec::new()
                        }
                    }
                }
                (None, None) => return gone,
            };
            let mut next = Step::default();
            for observation in observations {
                let s = self.decide_reply(sent, observation);
                next.events.extend(s.events);
                next.action = s.action.or(next.action);
                next.inquiry = s.inquiry.or(next.inquiry);
            }
            step = next;
        }
    }

    /// What an action borrows of the watchdog: the trail's flush, the stop, the heartbeat.
    fn lent(&self) -> Lent {
        Lent {
            audit: self.recorder.audit.clone(),
            stop: self.stop.clone(),
            heartbeat: self.heartbeat.clone(),
        }
    }

    /// How long an action's reply may take: until the end of the budget (an unanswered kill
    /// must not hold back the escalation) or `on_hang.after`, whichever comes first.
    fn reply_limit(&self) -> Duration {
        let now = self.now().mono;
        let hang = self.engine.rules().hang_after;
        let ms = match self.engine.budget_end().map(|end| end.saturating_sub(now)) {
            Some(left) if left > 0 => left.min(hang),
            Some(_) | None => hang,
        };
        Duration::from_millis(ms).max(REPLY_FLOOR)
    }
}

/// What asking gave: an answer now, or work going on beside the probe whose answer comes later.
enum Asked {
    Now(Observation),
    Beside(Beside),
}

/// Ask what the engine wants to hear, within its bound; `policy` names the watched server and
/// the replicas it lists (asked with its credentials).
async fn ask(
    conn: &Connection,
    policy: &Policy,
    inquiry: Inquiry,
    server_log: Option<&crate::redis::serverlog::ServerLog>,
) -> Asked {
    let now = match inquiry {
        // A local file, read up to its bound: no wait on the server.
        Inquiry::IdentifyEval => Observation::EvalNamed(match server_log {
            Some(log) => log.running_eval(),
            None => Err("`on_busy.server_log` is not set".into()),
        }),
        // Up to half of `failover.timeout`: beside the probe.
        Inquiry::ReplicaOffsets {
            replicas,
            primary_offset,
            within_ms,
        } => {
            let (primary, listed) = (policy.redis.clone(), policy.topology.replicas.clone());
            return Asked::Beside(Beside::start(async move {
                Observation::ReplicaOffsets(
                    forensics::replica_offsets(
                        &primary,
                        &listed,
                        &replicas,
                        primary_offset,
                        Duration::from_millis(within_ms),
                    )
                    .await,
                )
            }));
        }
        Inquiry::RunningFunction | Inquiry::Identify { .. } => {
            // A busy server answers FUNCTION STATS at its script's next hook: within a
            // millisecond for a loop of cheap steps, a few hundred for a job with heavy calls.
            let limit = match inquiry {
                Inquiry::Identify { within_ms } => Duration::from_millis(within_ms),
                _ => FUNCTION_STATS_LIMIT,
            };
            let seen = tokio::time::timeout(limit, forensics::ask_running_function(conn)).await;
            Observation::RunningFunction(seen.unwrap_or_else(|_| {
                RunningFunction::Unknown(format!(
                    "no reply within {}",
                    crate::model::duration::human_ms(limit.as_millis() as u64)
                ))
            }))
        }
        Inquiry::AfterRecovery => Observation::AfterRecovery(
            tokio::time::timeout(AFTER_RECOVERY_LIMIT, forensics::after_recovery(conn))
                .await
                .map(Box::new)
                .map_err(|_| "no reply in time: another script may have started".to_string()),
        ),
    };
    Asked::Now(now)
}

/// The watchdog's part of an action.
struct Lent {
    audit: Arc<AuditLog>,
    stop: watch::Receiver<bool>,
    heartbeat: Arc<AtomicU64>,
}

impl Runtime for Lent {
    async fn flushed(&self) -> Result<(), String> {
        let audit = self.audit.clone();
        tokio::task::spawn_blocking(move || audit.sync())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| e.to_string())
    }

    fn flush_later(&self) {
        let audit = self.audit.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = audit.sync() {
                tracing::error!(error = %e, "audit sync failed");
            }
        });
    }

    async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let alive = async {
            loop {
                tokio::time::sleep(super::HEARTBEAT).await;
                self.heartbeat
                    .store(crate::model::clock::unix_ms(), Ordering::Relaxed);
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            () = alive => {}
        }
    }
}
