//! One watchdog task per instance: it owns the probe connection, feeds what it sees to the
//! engine, and hands the engine's steps to [`act`], which records them and carries out their
//! actions.
//!
//! Exactly one probe command is outstanding at a time: a PING sent during a script's silent
//! phase is answered BUSY the instant the threshold passes, so BUSY is seen one round trip after
//! the server starts accepting kills, whatever `probe.interval` is. Deadlines from the engine
//! (end of `kill_after`, end of `wait`) bring the next PING forward so the action lands one
//! round trip after them. The probe is PING, always: a healthy snapshot (INFO, CONFIG) is taken
//! beside it, and a snapshot the server refuses (an ACL user without `+info`, a renamed CONFIG)
//! leaves its facts unknown but never blinds the probe.

mod act;
mod beside;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::sleep_until;

use crate::engine::History;
use crate::engine::early::EarlyWarnings;
use crate::engine::{At, Engine, Live, Observation, Rules, Source, Steer, Step};
use crate::event::Event;
use crate::event::detail::{Carried, WatchdogStarted, WatchdogStopped};
use crate::model::takeover::Lineage;
use crate::policy::Policy;
use crate::record::Recorder;
use crate::redis::probe::{self, ConnectError, Connection, Outcome, classify_error};
use crate::redis::sentinel::SentinelWord;
use crate::remedy::signal::process_start_ticks;

/// Reconnection attempts are spaced by the probe interval, within these bounds.
const RECONNECT_MIN: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// The engine's clock starts here rather than at zero, so that instants before the daemon
/// started (an incident resumed from the trail) are still representable.
const MONO_ORIGIN_MS: u64 = 400 * 24 * 3600 * 1000;

/// What a second opinion on a silent connection (a new connection and its PING) may take.
const SECOND_OPINION_LIMIT: Duration = Duration::from_secs(2);
/// The least margin past a threshold before a silent PING gets a second opinion.
const SECOND_OPINION_MARGIN: Duration = Duration::from_millis(500);
/// How long a PING may stay unanswered by a server that answered FUNCTION STATS, before it is
/// taken to defer PING while busy (a server that does not answers both at the same hook).
const DEFERRED_AFTER: Duration = Duration::from_millis(500);

/// The loops show they are alive at least this often (systemd's WatchdogSec must exceed it).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Why a session on one connection ended.
enum SessionEnd {
    Lost,
    Stopped,
    /// The connection went silent while a new one to the same address answered (a second
    /// opinion): probing goes on over the new one.
    Replaced(Box<Connection>),
    /// The PING went unanswered while FUNCTION STATS on a new connection says a script runs:
    /// the server defers PING while busy (Valkey's proposed #3363). Probing goes on over the new
    /// connection with FUNCTION STATS until the server is healthy again.
    Deferring(Box<Connection>),
}

/// What a second connection says of a silent probe.
enum SecondOpinion {
    /// The silent connection is half-open: this one answers.
    Answers(Connection),
    /// This one's FUNCTION STATS says a script runs: PINGs are deferred, not lost.
    Busy(Connection),
}

pub struct Watchdog {
    policy: Policy,
    force_dry_run: bool,
    engine: Engine,
    recorder: Recorder,
    /// Zero of the engine's monotonic clock.
    epoch: Instant,
    stop: watch::Receiver<bool>,
    /// A reload sends the file's new version here.
    policy_updates: watch::Receiver<Policy>,
    /// Unix ms of the loop's last sign of life, for systemd's WATCHDOG=1.
    heartbeat: Arc<AtomicU64>,
    beat: tokio::time::Interval,
    /// Slow scripts seen in the SLOWLOG before they ever go BUSY.
    early: EarlyWarnings,
    /// `on_busy.server_log`: the server's log, which names a busy EVAL for script rules.
    pub(super) server_log: Option<crate::redis::serverlog::ServerLog>,
    steer: tokio::sync::mpsc::UnboundedReceiver<ToWatchdog>,
    /// What Sentinel says of the primary (`topology.sentinel`), asked off the probe path.
    sentinel: Option<crate::redis::sentinel::Feed>,
    /// During an incident: whether one of this server's replicas took over.
    replicas: Option<crate::redis::replicas::ReplicaWatch>,
    /// The last reason the relay dropped the probe connection (a reply past its bound): told
    /// once, until a healthy snapshot comes through again.
    cut_told: Option<String>,
    /// A lost connection was reopened without a word (it closed while the server was healthy);
    /// until a connection answers healthy twice, the next loss is told: a peer that accepts
    /// every connection and drops it is an outage, not a quiet loop.
    reopened_quietly: bool,
    /// No snapshot before this (after a cut: the next one waits `probe.snapshot_every`, while
    /// PINGs go on, rather than pull another bound's worth at every reconnect).
    snapshot_after: Option<Instant>,
    /// What [`Watchdog::resume`] carried over from the trail, for `watchdog_started` to sum up.
    carried: Carried,
    /// The generation of the probe connection: each session's is the next.
    conn: u64,
    /// Who this server has been (its healthy snapshots', or the trail's), for the Sentinel
    /// feed to check a takeover against.
    identity: watch::Sender<Lineage>,
    /// A failover, or its candidates' offsets, going on beside the probe.
    beside: Option<beside::Beside>,
    /// Whether the server's log could be read when last looked at (told once per change).
    log_readable: Option<bool>,
    /// The server defers PING while busy: probed with FUNCTION STATS until healthy again.
    stats_probe: bool,
}

/// What the daemon hands a watchdog to steer it.
pub struct Controls {
    pub stop: watch::Receiver<bool>,
    pub policy_updates: watch::Receiver<Policy>,
    pub heartbeat: Arc<AtomicU64>,
    /// Operators' commands from the control socket, and `ps`'s questions.
    pub steer: tokio::sync::mpsc::UnboundedReceiver<ToWatchdog>,
}

/// What the control socket asks of a watchdog. Answered at its next wake-up (within a probe
/// interval): nothing is published on every probe, so supervising costs nothing more.
pub enum ToWatchdog {
    Steer(SteerRequest),
    /// What the engine is doing now, for `busyguard ps`.
    Report(tokio::sync::oneshot::Sender<Live>),
}

/// An operator's command for one watchdog, and where its outcome goes.
pub struct SteerRequest {
    pub steer: Steer,
    pub caller: crate::daemon::control::Caller,
    pub reason: String,
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
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
        recorder: Recorder,
        controls: Controls,
    ) -> Watchdog {
        let engine = Engine::new(Rules::from_policy(&policy, force_dry_run));
        recorder.metrics.register(&policy.instance);
        recorder
            .metrics
            .set_liveness_grace(&policy.instance, policy.on_hang.after);
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Watchdog {
            force_dry_run,
            engine,
            recorder,
            epoch: Instant::now(),
            stop: controls.stop,
            policy_updates: controls.policy_updates,
            heartbeat: controls.heartbeat,
            steer: controls.steer,
            sentinel: None,
            replicas: None,
            cut_told: None,
            reopened_quietly: false,
            snapshot_after: None,
            carried: Carried::default(),
            conn: 0,
            identity: watch::Sender::new(Lineage::default()),
            beside: None,
            log_readable: None,
            stats_probe: false,
            beat,
            early: EarlyWarnings::new(policy.early_warning, None),
            server_log: server_log_of(&policy),
            policy,
        }
    }

    /// A sign of life for systemd's watchdog. Resetting the beat means it only fires while the
    /// loop is really waiting (an outstanding probe, a connection being opened).
    fn alive(&mut self) {
        self.heartbeat
            .store(crate::model::clock::unix_ms(), Ordering::Relaxed);
        self.recorder.metrics.heartbeat(&self.policy.instance);
        self.beat.reset();
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Take a reloaded policy without losing the incident in flight. True when the connection
    /// must be opened anew (the `redis` section changed).
    fn apply_policy(&mut self) -> bool {
        let new = self.policy_updates.borrow_and_update().clone();
        if new.topology != self.policy.topology {
            self.sentinel = None;
        }
        if new.redis != self.policy.redis {
            self.replicas = None;
        }
        let reconnect = new.redis != self.policy.redis;
        self.engine
            .set_rules(Rules::from_policy(&new, self.force_dry_run));
        self.early.set_rule(new.early_warning);
        self.recorder
            .metrics
            .set_liveness_grace(&new.instance, new.on_hang.after);
        if new.on_busy.server_log != self.policy.on_busy.server_log
            || new.on_busy.scripts != self.policy.on_busy.scripts
        {
            self.server_log = server_log_of(&new);
        }
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
        while let Ok(message) = self.steer.try_recv() {
            self.answer(message);
        }
        self.role_views().await;
        if let Some(outcome) = self.beside.as_mut().and_then(beside::Beside::try_outcome) {
            self.beside_done(outcome).await;
        }
        if self.stopping() {
            return Wake::Stop;
        }
        if self.policy_updates.has_changed().unwrap_or(false) && self.apply_policy() {
            return Wake::Reconnect;
        }
        Wake::Time
    }

    /// Where the primary role is now: what Sentinel says (`topology.sentinel`: its feed runs
    /// all along, started here on the runtime) and, during an incident, whether one of this
    /// server's replicas took over. A primary other than this server is handed to the engine:
    /// this one was failed over.
    async fn role_views(&mut self) {
        let mut seen = Vec::new();
        self.identity.send_if_modified(|known| {
            let now = self.engine.lineage();
            let changed = known != now;
            if changed {
                *known = now.clone();
            }
            changed
        });
        if let Some(topology) = &self.policy.topology.sentinel {
            let (primary, ours) = (&self.policy.redis, self.identity.subscribe());
            let listed = &self.policy.topology.replicas;
            let feed = self.sentinel.get_or_insert_with(|| {
                crate::redis::sentinel::Feed::start(topology, primary, listed, ours)
            });
            while let Ok(word) = feed.words.try_recv() {
                seen.push(match word {
                    SentinelWord::FailedOver(successor) => Observation::Demoted {
                        successor,
                        by: "sentinel",
                    },
                    SentinelWord::Unbelieved(why) => Observation::SentinelUnbelieved(why),
                    SentinelWord::NamesThis => Observation::SentinelNamesThis,
                });
            }
        }
        self.watch_replicas();
        if let Some(watch) = &mut self.replicas
            && let Some(successor) = latest(&mut watch.views)
        {
            seen.push(Observation::Demoted {
                successor,
                by: "replica",
            });
        }
        for observation in seen {
            let step = self.decide(observation);
            self.act(None, step).await;
        }
    }

    /// Watch this server's replicas while an incident is open on a primary that has some (the
    /// healthy snapshot names them and the replication ID they share); stop once it ends. Not
    /// under Sentinel: there Sentinel's view is the authority (it turns a replica promoted
    /// without it back into a replica), and its feed says what it decided.
    fn watch_replicas(&mut self) {
        if self.engine.incident_id().is_none() || self.policy.topology.sentinel.is_some() {
            self.replicas = None;
            return;
        }
        if self.replicas.is_some() {
            return;
        }
        let Some(s) = self.engine.snapshot() else {
            return;
        };
        if s.role.as_deref() != Some("master") || !self.engine.lineage().is_known() {
            return;
        }
        let listed = &self.policy.topology.replicas;
        let addresses: Vec<String> = s
            .replica_links()
            .into_iter()
            .filter(|r| {
                r.state == "online" && crate::policy::replicas::named(listed, &r.address).is_some()
            })
            .map(|r| r.address)
            .collect();
        if !addresses.is_empty() {
            let watch = crate::redis::replicas::ReplicaWatch::start(
                &self.policy.redis,
                listed,
                addresses,
                self.engine.lineage().clone(),
            );
            self.replicas = Some(watch);
        }
    }

    /// Take what the trail says of this instance from before a restart.
    pub fn resume(&mut self, history: &History) -> Option<String> {
        let cursor = history.slowlog_cursor.clone();
        self.early = EarlyWarnings::new(
            self.policy.early_warning,
            cursor.clone().map(|c| (c.run_id, c.slowlog_id)),
        );
        let now = self.now();
        // A pause survives a restart until it expires.
        let pause = history
            .pause
            .clone()
            .filter(|p| p.until_unix_ms > now.unix_ms);
        if let Some(p) = pause.clone() {
            let _ = self.engine.steer(
                now,
                Steer::Pause {
                    until_unix_ms: p.until_unix_ms,
                    by: p.by,
                    reason: p.reason,
                },
            );
        }
        self.carried = Carried {
            pause,
            slowlog_cursor: cursor,
            hold: history.hold.clone(),
        };
        self.engine.resume(history, now)
    }

    fn now(&self) -> At {
        At {
            mono: MONO_ORIGIN_MS + self.epoch.elapsed().as_millis() as u64,
            unix_ms: crate::model::clock::unix_ms(),
        }
    }

    /// An engine instant as a clock instant.
    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms.saturating_sub(MONO_ORIGIN_MS))
    }

    /// Supervise until told to stop.
    pub async fn run(mut self) {
        let started = WatchdogStarted::Instance {
            resumed_incident: self.engine.incident_id().map(str::to_string),
            endpoint: self.policy.redis.endpoint.to_string(),
            policy_file: self.policy.source.display().to_string(),
            policy_hash: self.policy.content_hash.clone(),
            dry_run: self.engine.rules().dry_run,
            probe_interval_ms: self.policy.probe.interval.as_millis() as u64,
            carried: Some(std::mem::take(&mut self.carried)),
        };
        self.record_own(started);
        self.look_at_server_log();
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
        while !self.stopping() {
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
            if self.stopping() {
                break;
            }
            match attempt {
                Ok(mut conn) => loop {
                    match self.session(&conn).await {
                        SessionEnd::Stopped => break,
                        SessionEnd::Lost => break,
                        SessionEnd::Replaced(other) => {
                            tracing::warn!(instance = %self.policy.instance,
                                "the probe connection went silent while a new one to the same address answers (a half-open connection: a partition, a conntrack flush, a balancer): probing goes on over the new one");
                            conn = *other;
                        }
                        SessionEnd::Deferring(other) => {
                            tracing::warn!(instance = %self.policy.instance,
                                "PING went unanswered while FUNCTION STATS says a script runs (the server defers ordinary commands while busy): probing goes on with FUNCTION STATS");
                            self.stats_probe = true;
                            conn = *other;
                        }
                    }
                },
                Err(ConnectError::Unreachable(reason)) => {
                    self.recorder.metrics.probe_lost(&self.policy.instance);
                    let step = self.decide(Observation::Unreachable { reason });
                    self.act(None, step).await;
                }
                Err(ConnectError::Rejected(reply)) => {
                    // It answered: up, and blind (the state says fault), not unreachable.
                    self.recorder
                        .metrics
                        .answered_refusal(&self.policy.instance);
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
            if self.stopping() {
                break;
            }
            if let Wake::Stop = self.wait_until(Instant::now() + retry).await {
                break;
            }
        }
        let stopped = WatchdogStopped::Instance {
            state: self.engine.state().name().to_string(),
            incident_in_flight: self.engine.incident_id().map(str::to_string),
        };
        self.record_own(stopped);
    }

    /// Probe one connection until it is lost or the watchdog is stopped.
    async fn session(&mut self, conn: &Connection) -> SessionEnd {
        // A new connection: the engine's evidence starts anew with it.
        self.conn += 1;
        // Healthy answers on this connection: a quiet reopen is allowed again only once one
        // survived past its first (a peer that answers the first probe and drops the next is
        // no healthy server).
        let mut healthy_answers = 0u32;
        let interval = self.policy.probe.interval;
        let mut next_probe = Instant::now();
        let mut next_snapshot = self.snapshot_after.unwrap_or_else(Instant::now);
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
            if let Some(log) = self.server_log.as_mut() {
                log.before_probe();
            }
            let sent = Instant::now();
            let with_snapshot = sent >= next_snapshot;
            if with_snapshot {
                // Taken at most this often, whether it worked or not: never a hot retry loop.
                next_snapshot = sent + self.policy.probe.snapshot_every;
                self.look_at_server_log();
            }
            // Under `guards.max_unsaved_changes` the probe counts the unsaved changes too (INFO
            // persistence instead of PING, outside an incident): the count a shutdown would
            // rest on is then at most one probe interval older than the script.
            let counting = self.policy.guards.max_unsaved_changes.is_some()
                && self.engine.incident_id().is_none();
            let stats_probe = self.stats_probe;
            let probe = async {
                // A server that defers PING while busy is probed with FUNCTION STATS.
                if stats_probe {
                    return match conn.stats_probe().await {
                        Some(Observation::Busy { reply, .. }) => {
                            (Outcome::ErrorReply(reply), None, None)
                        }
                        Some(_) => (Outcome::Reply(fred::types::Value::Null), None, None),
                        None => (conn.ping().await, None, None),
                    };
                }
                if !with_snapshot && counting {
                    return match conn.unsaved().await {
                        Ok(count) => (Outcome::Reply(fred::types::Value::Null), None, Some(count)),
                        // Refused (no `+info`): that says nothing about a busy script.
                        Err(Outcome::ErrorReply(e)) if probe::refusal(&e) => {
                            (conn.ping().await, None, None)
                        }
                        Err(outcome) => (outcome, None, None),
                    };
                }
                if !with_snapshot {
                    return (conn.ping().await, None, None);
                }
                match conn.snapshot().await {
                    // INFO answered: the server is healthy.
                    Ok(h) if h.snapshot.errors.is_empty() => {
                        (Outcome::Reply(fred::types::Value::Null), Some(h), None)
                    }
                    // Refused in part (no `+info`, a renamed CONFIG): that says nothing about a
                    // busy script (ACL checks come first), so PING decides.
                    Ok(h) => (conn.ping().await, Some(h), None),
                    Err(outcome) => (outcome, None, None),
                }
            };
            tokio::pin!(probe);
            // A PING outstanding past this gets a second opinion on a new connection.
            let second_at = sent + self.second_opinion_after();
            let mut second: Option<
                std::pin::Pin<Box<dyn Future<Output = Option<SecondOpinion>> + Send>>,
            > = None;
            let mut asked = false;
            let (outcome, healthy, counted) = loop {
                let silence = self
                    .engine
                    .silence_deadline()
                    .map(|ms| sent + Duration::from_millis(ms));
                tokio::select! {
                    r = &mut probe => break r,
                    _ = sleep_until(second_at.into()), if !asked => {
                        asked = true;
                        second = Some(Box::pin(second_opinion(self.policy.redis.clone())));
                    }
                    answered = async { second.as_mut().expect("asked").await }, if second.is_some() => {
                        second = None;
                        match answered {
                            Some(SecondOpinion::Answers(other)) => return SessionEnd::Replaced(Box::new(other)),
                            Some(SecondOpinion::Busy(other)) => return SessionEnd::Deferring(Box::new(other)),
                            None => {}
                        }
                    }
                    _ = sleep_until(silence.unwrap_or(sent + Duration::from_secs(86_400)).into()), if silence.is_some() => {
                        let for_ms = sent.elapsed().as_millis() as u64;
                        let step = self.decide_reply(sent, Observation::Silent { for_ms });
                        self.act(Some(conn), step).await;
                    }
                    _ = self.beat.tick() => {
                        self.alive();
                        if self.stopping() {
                            return SessionEnd::Stopped;
                        }
                    }
                    // While a probe is outstanding (a silent phase, a hang), commands still apply.
                    Some(message) = self.steer.recv() => self.answer(message),
                    // And what the work beside the probe found is recorded.
                    Some(outcome) = async { self.beside.as_mut().expect("beside").outcome().await }, if self.beside.is_some() => {
                        self.beside_done(outcome).await;
                    }
                }
            };
            // Nothing runs any more: PING answers again.
            if stats_probe && matches!(outcome, Outcome::Reply(_)) {
                self.stats_probe = false;
            }
            tracing::trace!(instance = %self.policy.instance, snapshot = with_snapshot,
                waited_us = sent.elapsed().as_micros() as u64, outcome = ?outcome, "probe answered");
            match &outcome {
                Outcome::Lost(_) => self.recorder.metrics.probe_lost(&self.policy.instance),
                _ => self
                    .recorder
                    .metrics
                    .probe_replied(&self.policy.instance, sent.elapsed()),
            }
            // During an incident, at least every quarter threshold: a script's end and the next
            // one's start then always show in the BUSY stream (see the engine's continuity).
            let every = match self.engine.probe_every() {
                Some(ms) => interval.min(Duration::from_millis(ms)),
                None => interval,
            };
            next_probe = sent + every;
            let (snapshot, slowlog, answered) = match healthy {
                Some(h) => (Some(h.snapshot), h.slowlog.ok(), h.answered),
                None => (None, None, false),
            };
            let snapshot = snapshot.map(|mut s| {
                if self.policy.redis.endpoint.is_local() {
                    s.process_start_ticks = s.process_id.and_then(process_start_ticks);
                }
                s
            });
            // The relay dropped the connection (a reply past its bound): the peer's fault,
            // told once, not an outage; probing goes on over a new connection.
            if let Some(why) = conn.cut() {
                if self.cut_told.as_deref() != Some(why.as_str()) {
                    tracing::warn!(instance = %self.policy.instance, reason = %why, "the probe connection was dropped");
                    let step = self.decide(Observation::Fault { reply: why.clone() });
                    self.act(None, step).await;
                    self.cut_told = Some(why);
                }
                self.snapshot_after = Some(Instant::now() + self.policy.probe.snapshot_every);
                return SessionEnd::Lost;
            }
            if snapshot.is_some() {
                self.cut_told = None;
            }
            let mut snapshot = snapshot;
            let observation = match (outcome.observation(), counted) {
                (Some(o), _) => o,
                (None, Some((changes, aof))) => Observation::Unsaved { changes, aof },
                (None, None) => Observation::Pong {
                    snapshot: snapshot.take().map(Box::new),
                },
            };
            // A snapshot read in part (INFO refused) is followed by a PING; when that PING meets
            // a script that just started, what the snapshot read was still answered by a
            // healthy server: it goes to the engine first, or the incident would start without
            // it. Never during an incident, nor when every read was refused.
            if let Some(s) = snapshot.take().filter(|_| answered)
                && self.engine.incident_id().is_none()
            {
                let step = self.decide_reply(
                    sent,
                    Observation::Pong {
                        snapshot: Some(Box::new(s)),
                    },
                );
                self.act(Some(conn), step).await;
            }
            // Where the server's log ends while it is healthy: the line that names a busy EVAL
            // is written after it (a metadata read per probe, only with `on_busy.server_log`).
            if let (Some(log), Observation::Pong { .. } | Observation::Unsaved { .. }) =
                (self.server_log.as_mut(), &observation)
            {
                log.mark_healthy();
            }
            let lost = matches!(observation, Observation::Unreachable { .. });
            // A connection closed while all is well is not yet an outage: the server may have
            // closed it (CLIENT KILL, a rotated password, `timeout`). The next connection, one
            // interval later, says what it is: unreachable (with its own reason), a refused
            // login (a fault, not an outage), or healthy. Once only, until a healthy answer.
            match &observation {
                Observation::Unreachable { reason }
                    if self.engine.incident_id().is_none() && !self.reopened_quietly =>
                {
                    tracing::warn!(instance = %self.policy.instance, %reason,
                        "the probe connection was lost while the server was healthy: connecting again");
                    self.reopened_quietly = true;
                    return SessionEnd::Lost;
                }
                Observation::Pong { .. } | Observation::Unsaved { .. } => {
                    healthy_answers += 1;
                    if healthy_answers >= 2 {
                        self.reopened_quietly = false;
                    }
                }
                _ => {}
            }
            let step = self.decide_reply(sent, observation);
            let gone = self.act(Some(conn), step).await;
            if lost || gone {
                return SessionEnd::Lost;
            }
            if let Some(entries) = slowlog {
                self.early_warnings(&entries);
            }
            if self.stopping() {
                return SessionEnd::Stopped;
            }
        }
    }

    /// Whether the server's log (`on_busy.server_log`) can be read: a gauge, and a fault told
    /// once per change, before any incident needs the log to name an EVAL.
    fn look_at_server_log(&mut self) {
        let instance = self.policy.instance.clone();
        let Some(path) = self.policy.on_busy.server_log.clone() else {
            self.recorder
                .metrics
                .set_server_log_readable(&instance, None);
            return;
        };
        let read = crate::policy::readable::by_this_process(&path);
        self.recorder
            .metrics
            .set_server_log_readable(&instance, Some(read.is_ok()));
        if self.log_readable != Some(read.is_ok())
            && let Err(why) = &read
        {
            tracing::warn!(instance = %instance, reason = %why, "the server's log cannot be read");
            self.record_own(crate::event::detail::ProbeFault::Fault {
                reply: format!("`on_busy.server_log`: {why}"),
                note: crate::policy::readable::FIX.into(),
            });
        }
        self.log_readable = Some(read.is_ok());
    }

    /// The work beside the probe ended: its outcome goes to the engine. Nothing is sent on its
    /// account now: what it decides goes at the next BUSY reply.
    async fn beside_done(&mut self, outcome: Observation) {
        self.beside = None;
        let step = self.decide(outcome);
        self.act(None, step).await;
    }

    /// How long a PING may stay outstanding before a second connection is asked: a threshold
    /// and a margin (a script's silent phase lasts a threshold, and a busy server answers BUSY
    /// then, unless it defers PING while busy), `on_hang.after` when the threshold is unknown.
    fn second_opinion_after(&self) -> Duration {
        let hang = self.policy.on_hang.after;
        match self.engine.threshold_ms() {
            Some(t) => {
                let t = Duration::from_millis(t);
                (t + (t / 2).max(SECOND_OPINION_MARGIN)).min(hang)
            }
            None => hang,
        }
    }

    /// Warn of the scripts the SLOWLOG shows creeping toward the threshold, and count them.
    fn early_warnings(&mut self, entries: &[crate::model::slowlog::SlowEntry]) {
        let snapshot = self.engine.snapshot();
        let threshold = snapshot.and_then(|s| s.busy_threshold_ms);
        let run_id = snapshot.and_then(|s| s.run_id.clone());
        let now = crate::model::clock::unix_ms();
        let (fresh, warnings) = self
            .early
            .observe(run_id.as_deref(), threshold, entries, now);
        let line = self.early.line_ms(threshold);
        for entry in &fresh {
            let ms = entry.duration_us as f64 / 1000.0;
            let slow = line.is_some_and(|l| ms >= l);
            // Near, and below: a script that reached the threshold went BUSY (an incident).
            let near = threshold
                .filter(|t| *t > 0)
                .is_some_and(|t| ms >= t as f64 * crate::event::NEAR_THRESHOLD && ms < t as f64);
            let name = entry.script().map(|(_, name)| name);
            self.recorder.metrics.script_seen(
                &self.policy.instance,
                Duration::from_micros(entry.duration_us),
                name.as_deref().filter(|_| slow),
                near,
            );
        }
        for warning in warnings {
            self.record_own(warning);
        }
    }

    /// Answer the control socket.
    fn answer(&mut self, message: ToWatchdog) {
        match message {
            ToWatchdog::Steer(request) => self.apply_steer(request),
            ToWatchdog::Report(reply) => {
                let _ = reply.send(self.engine.live(self.now()));
            }
        }
    }

    /// Apply an operator's command, record it, and answer.
    fn apply_steer(&mut self, request: SteerRequest) {
        let now = self.now();
        let (command, until) = match &request.steer {
            Steer::Pause { until_unix_ms, .. } => ("pause", Some(*until_unix_ms)),
            Steer::Resume => ("resume", None),
            Steer::Hold { .. } => ("hold", None),
            Steer::Release { .. } => ("release", None),
            Steer::Approve => ("approve", None),
            Steer::Stopping => ("stopping", None),
        };
        let outcome = self.engine.steer(now, request.steer);
        let answer = match outcome {
            Ok(what) => {
                let detail = crate::event::detail::OperatorCommand {
                    command: command.to_string(),
                    by_user: request.caller.user.clone(),
                    by_uid: request.caller.uid,
                    reason: request.reason,
                    until: until.map(crate::model::clock::rfc3339),
                    until_unix_ms: until,
                };
                self.record_own(detail);
                Ok(format!(
                    "{}: {command} applied: {what}",
                    self.policy.instance
                ))
            }
            Err(e) => Err(format!("{}: {e}", self.policy.instance)),
        };
        self.publish_live(now);
        let _ = request.reply.send(answer);
    }

    /// Whether a pause is in force, and when the escalation is due, for the metrics.
    fn publish_live(&self, now: At) {
        let metrics = &self.recorder.metrics;
        metrics.set_paused(&self.policy.instance, self.engine.paused(now));
        let due = self.engine.escalation_deadline().map_or(0.0, |ms| {
            (now.unix_ms + ms).saturating_sub(now.mono) as f64 / 1000.0
        });
        metrics.set_deadline(&self.policy.instance, due);
    }

    /// Give the engine an observation made now; the caller records and acts on the step.
    fn decide(&mut self, observation: Observation) -> Step {
        self.decide_reply(Instant::now(), observation)
    }

    /// Give the engine the answer, come now on the connection in use, to a command sent at
    /// `sent`; the caller records and acts on the step.
    fn decide_reply(&mut self, sent: Instant, observation: Observation) -> Step {
        let now = self.now();
        let source = Source {
            conn: self.conn,
            sent: MONO_ORIGIN_MS + sent.saturating_duration_since(self.epoch).as_millis() as u64,
        };
        let step = self.engine.observe_from(now, source, observation);
        self.recorder
            .metrics
            .set_state(&self.policy.instance, self.engine.state());
        self.publish_live(now);
        step
    }

    /// Record a watchdog's own lifecycle event.
    fn record_own(&self, detail: impl Into<crate::event::Detail>) {
        let event = Event {
            instance: Some(self.policy.instance.clone()),
            incident: self.engine.incident_id().map(str::to_string),
            dry_run: false,
            policy: Some(self.policy.content_hash.clone()),
            detail: detail.into(),
        };
        let _ = self.recorder.record(&event);
    }
}

/// A new connection to `target`, asked within [`SECOND_OPINION_LIMIT`]: a PING that gets any
/// answer (BUSY, PONG, an error) means the silent connection is half-open, not the server. A
/// busy server that defers PING (Valkey's proposed #3363) still answers FUNCTION STATS: asked on
/// a connection of its own (a deferred PING would hold every command behind it), a script that
/// runs there while the PING gets no answer makes it [`SecondOpinion::Busy`].
async fn second_opinion(target: crate::policy::RedisTarget) -> Option<SecondOpinion> {
    let asked = async {
        let (pinged, stats) = tokio::join!(
            probe::connect(&target, SECOND_OPINION_LIMIT),
            probe::connect(&target, SECOND_OPINION_LIMIT)
        );
        let (pinged, stats) = (pinged.ok()?, stats.ok()?);
        // Whether the PING was answered (`Some(lost)`), or deferred while a script runs (`None`).
        let answered: Option<bool> = {
            let ping = pinged.ping();
            tokio::pin!(ping);
            let busy = tokio::select! {
                answered = &mut ping => Err(matches!(answered, Outcome::Lost(_))),
                busy = stats.stats_probe() => Ok(matches!(busy, Some(Observation::Busy { .. }))),
            };
            match busy {
                Err(lost) => Some(lost),
                // Not busy by its word: the PING decides.
                Ok(false) => Some(matches!(ping.await, Outcome::Lost(_))),
                // A script runs. A server that answered FUNCTION STATS answers a PING at the
                // same hook, unless it defers it.
                Ok(true) => match tokio::time::timeout(DEFERRED_AFTER, &mut ping).await {
                    Ok(answer) => Some(matches!(answer, Outcome::Lost(_))),
                    Err(_) => None,
                },
            }
        };
        match answered {
            Some(true) => None,
            Some(false) => Some(SecondOpinion::Answers(pinged)),
            None => Some(SecondOpinion::Busy(stats)),
        }
    };
    tokio::time::timeout(SECOND_OPINION_LIMIT, asked)
        .await
        .ok()
        .flatten()
}

/// The last successor a watch has passed on since it was last asked, if any.
fn latest(
    views: &mut tokio::sync::mpsc::Receiver<crate::model::takeover::Successor>,
) -> Option<crate::model::takeover::Successor> {
    let mut last = None;
    while let Ok(view) = views.try_recv() {
        last = Some(view);
    }
    last
}

/// The server's log to read for a busy EVAL's name (`on_busy.server_log`).
fn server_log_of(policy: &Policy) -> Option<crate::redis::serverlog::ServerLog> {
    policy
        .on_busy
        .server_log
        .as_ref()
        .map(|path| crate::redis::serverlog::ServerLog::new(path.clone()))
}
