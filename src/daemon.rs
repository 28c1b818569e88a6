//! `busyguard run`: load the policies, supervise each instance with its own watchdog task (and
//! one delivery task per receiver), reload on SIGHUP, and stop cleanly on SIGTERM or SIGINT.
//! A slow or dead instance never delays another: each has its own task and connection.
//!
//! Under systemd (`Type=notify`): `READY=1` once every watchdog is started, `WATCHDOG=1` only
//! while every watchdog loop shows signs of life, `RELOADING=1` / `READY=1` around a reload,
//! `STOPPING=1` at the stop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::{AuditLog, History};
use crate::event::{Event, EventKind};
use crate::metrics::Metrics;
use crate::policy::{self, Policy};
use crate::sdnotify;
use crate::watchdog::{Controls, Watchdog};

/// Where the daemon keeps its trail when no `--state-dir` is given and systemd set none.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/busyguard";

/// How long stopping watchdogs may take before the daemon goes on anyway.
const STOP_LIMIT: Duration = Duration::from_secs(5);
/// How long pending notifications may still be delivered at a stop.
const NOTIFY_DRAIN: Duration = Duration::from_secs(3);

pub struct RunOptions {
    pub policies: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub dry_run: bool,
    /// `host:port` for `/metrics`.
    pub metrics: Option<String>,
}

/// How the daemon ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    Stopped,
    NoValidPolicy,
}

/// `--state-dir`, else systemd's `$STATE_DIRECTORY` (its first entry), else the default.
pub fn state_dir(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| {
            std::env::var("STATE_DIRECTORY")
                .ok()
                .and_then(|v| v.split(':').next().map(PathBuf::from))
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// One supervised instance.
struct Supervised {
    policy: Policy,
    stop: watch::Sender<bool>,
    updates: watch::Sender<Policy>,
    heartbeat: Arc<AtomicU64>,
    task: JoinHandle<()>,
    /// The receivers' delivery tasks and their stop.
    outboxes: Vec<JoinHandle<()>>,
    outboxes_stop: watch::Sender<bool>,
}

/// The daemon's shared parts.
struct Daemon {
    paths: Vec<PathBuf>,
    dir: PathBuf,
    dry_run: bool,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    histories: std::collections::HashMap<String, History>,
    running: BTreeMap<String, Supervised>,
}

pub async fn run(opts: RunOptions) -> anyhow::Result<RunEnd> {
    let dir = state_dir(opts.state_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create state dir {}: {e}", dir.display()))?;
    let path = dir.join("audit.jsonl");
    // What was in flight when the daemon last stopped (or was killed), read before appending.
    let histories = crate::audit::history(&path)
        .map_err(|e| anyhow::anyhow!("cannot read audit trail {}: {e}", path.display()))?;
    let (audit, resume) = AuditLog::open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open audit trail {}: {e}", path.display()))?;
    let audit = Arc::new(audit);
    let metrics = Arc::new(Metrics::default());
    let metrics_server = match &opts.metrics {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
            tracing::info!(%addr, "serving /metrics");
            Some(tokio::spawn(crate::metrics::serve(
                listener,
                metrics.clone(),
            )))
        }
    };
    // reqwest's TLS uses the process-wide rustls provider; ring is the one fred already brings.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut daemon = Daemon {
        paths: opts.policies,
        dir,
        dry_run: opts.dry_run,
        audit,
        metrics,
        histories,
        running: BTreeMap::new(),
    };
    daemon.record(Event::daemon(
        EventKind::WatchdogStarted,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "dry_run_forced": daemon.dry_run,
            "resumed_after_seq": resume.last_seq,
            "torn_tail_bytes": resume.torn_bytes,
        }),
    ));
    if resume.torn_bytes > 0 {
        tracing::warn!(bytes = resume.torn_bytes, path = %path.display(),
            "the audit trail ended in a torn record (a crash mid-write); it is kept and the chain continues after it");
    }
    daemon.load(resume.last_seq);
    if daemon.running.is_empty() {
        tracing::error!("no valid policy could be loaded");
        daemon.record(Event::daemon(
            EventKind::WatchdogStopped,
            json!({"reason": "no valid policy"}),
        ));
        let _ = daemon.audit.sync();
        return Ok(RunEnd::NoValidPolicy);
    }
    sdnotify::notify("READY=1");

    let syncer = {
        let audit = daemon.audit.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::audit::SYNC_EVERY);
            loop {
                tick.tick().await;
                // fdatasync off the runtime's thread: a BUSY reply must never wait for it.
                let audit = audit.clone();
                match tokio::task::spawn_blocking(move || audit.sync()).await {
                    Ok(Err(e)) => tracing::error!(error = %e, "audit sync failed"),
                    Err(e) => tracing::error!(error = %e, "audit sync task failed"),
                    Ok(Ok(())) => {}
                }
            }
        })
    };
    let watchdog_every = sdnotify::watchdog_interval();
    let mut watchdog_tick =
        tokio::time::interval(watchdog_every.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                sdnotify::reloading();
                daemon.reopen_trail(&path);
                let seq = daemon.audit.last_seq();
                daemon.load(seq);
                sdnotify::notify("READY=1");
            }
            _ = watchdog_tick.tick(), if watchdog_every.is_some() => {
                if let Some(limit) = watchdog_every && daemon.all_alive(limit) {
                    sdnotify::notify("WATCHDOG=1");
                }
            }
        }
    }
    sdnotify::notify("STOPPING=1");
    tracing::info!("stopping");
    daemon.stop_all().await;
    syncer.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    daemon.record(Event::daemon(
        EventKind::WatchdogStopped,
        json!({"reason": "signal"}),
    ));
    let _ = daemon.audit.sync();
    Ok(RunEnd::Stopped)
}

impl Daemon {
    fn record(&self, event: Event) {
        if let Err(e) = self.audit.append(&event) {
            tracing::error!(error = %e, "audit write failed");
        }
    }

    fn reopen_trail(&self, path: &Path) {
        // logrotate (`create` + postrotate `systemctl reload`) may have moved the trail away.
        match self.audit.reopen() {
            Ok(_) => tracing::info!(path = %path.display(), "SIGHUP: audit trail reopened"),
            Err(e) => tracing::error!(error = %e, path = %path.display(),
                "SIGHUP: cannot reopen the audit trail; still writing the old file"),
        }
    }

    /// (Re)load every policy file: start what is new, update what changed, stop what is gone.
    /// A file that no longer validates keeps its previous version running.
    fn load(&mut self, start_seq: u64) {
        let report = policy::load(&self.paths);
        for (file, diags) in &report.rejected {
            for d in diags {
                tracing::error!("{d}");
            }
            let kept: Vec<&str> = self
                .running
                .values()
                .filter(|s| &s.policy.source == file)
                .map(|s| s.policy.instance.as_str())
                .collect();
            self.record(Event::daemon(
                EventKind::PolicyRejected,
                json!({"file": file.display().to_string(),
                       "errors": diags.iter().map(ToString::to_string).collect::<Vec<_>>(),
                       "kept_running": kept}),
            ));
        }
        for w in &report.warnings {
            tracing::warn!("{w}");
        }
        let rejected_files: Vec<&PathBuf> = report.rejected.iter().map(|(f, _)| f).collect();
        let valid: Vec<String> = report.policies.iter().map(|p| p.instance.clone()).collect();
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(name, s)| {
                !valid.contains(name) && !rejected_files.contains(&&s.policy.source)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(s) = self.running.remove(&name) {
                tracing::info!(instance = %name, "policy removed: stopping its watchdog");
                let _ = s.stop.send(true);
                let _ = s.outboxes_stop.send(true);
            }
        }
        for p in report.policies {
            let changed = self
                .running
                .get(&p.instance)
                .map(|s| s.policy.content_hash != p.content_hash);
            if changed == Some(false) {
                continue;
            }
            self.record(Event {
                instance: Some(p.instance.clone()),
                policy: Some(p.content_hash.clone()),
                ..Event::daemon(
                    EventKind::PolicyLoaded,
                    json!({"file": p.source.display().to_string(), "policy_hash": p.content_hash,
                           "endpoint": p.redis.endpoint.to_string(), "update": changed.is_some()}),
                )
            });
            match changed {
                Some(false) => {}
                Some(true) => {
                    let s = self.running.get_mut(&p.instance).expect("running");
                    // The watchdog keeps its incident; the receivers restart from their cursors.
                    for t in s.outboxes.drain(..) {
                        t.abort();
                    }
                    let (tx, rx) = watch::channel(false);
                    s.outboxes = crate::notify::spawn_for(
                        &p,
                        &self.dir,
                        &self.audit,
                        &self.metrics,
                        start_seq,
                        &rx,
                    );
                    s.outboxes_stop = tx;
                    let _ = s.updates.send(p.clone());
                    s.policy = p.clone();
                }
                None => self.start(p.clone(), start_seq),
            }
        }
    }

    fn start(&mut self, p: Policy, start_seq: u64) {
        let (stop, stop_rx) = watch::channel(false);
        let (updates, updates_rx) = watch::channel(p.clone());
        let heartbeat = Arc::new(AtomicU64::new(now_ms()));
        let controls = Controls {
            stop: stop_rx,
            policy_updates: updates_rx,
            heartbeat: heartbeat.clone(),
        };
        let mut dog = Watchdog::new(
            p.clone(),
            self.dry_run,
            self.audit.clone(),
            self.metrics.clone(),
            controls,
        );
        if let Some(history) = self.histories.remove(&p.instance)
            && let Some(id) = dog.resume(&history)
        {
            tracing::warn!(instance = %p.instance, incident = %id,
                "resuming an incident that was in flight when busyguard last stopped");
        }
        let (outboxes_stop, outboxes_rx) = watch::channel(false);
        let outboxes = crate::notify::spawn_for(
            &p,
            &self.dir,
            &self.audit,
            &self.metrics,
            start_seq,
            &outboxes_rx,
        );
        let task = tokio::spawn(dog.run());
        self.running.insert(
            p.instance.clone(),
            Supervised {
                policy: p,
                stop,
                updates,
                heartbeat,
                task,
                outboxes,
                outboxes_stop,
            },
        );
    }

    /// Every watchdog loop showed a sign of life within `limit`.
    fn all_alive(&self, limit: Duration) -> bool {
        let now = now_ms();
        self.running.values().all(|s| {
            now.saturating_sub(s.heartbeat.load(Ordering::Relaxed)) < limit.as_millis() as u64
        })
    }

    /// Stop the watchdogs (each records `watchdog_stopped`), then give pending notifications a
    /// bounded chance; the cursors carry the rest to the next start.
    async fn stop_all(&mut self) {
        let running = std::mem::take(&mut self.running);
        let mut outboxes = Vec::new();
        let mut tasks = Vec::new();
        for s in running.into_values() {
            let _ = s.stop.send(true);
            tasks.push(s.task);
            let _ = s.outboxes_stop.send(true);
            outboxes.extend(s.outboxes);
        }
        if tokio::time::timeout(STOP_LIMIT, join_all(&mut tasks))
            .await
            .is_err()
        {
            tracing::warn!("some watchdogs did not stop within {STOP_LIMIT:?}");
        }
        if tokio::time::timeout(NOTIFY_DRAIN, join_all(&mut outboxes))
            .await
            .is_err()
        {
            tracing::warn!("notifications still pending at stop; they go out at the next start");
        }
        for t in tasks.iter().chain(outboxes.iter()) {
            t.abort();
        }
    }
}

/// Wait for every task (a panicked one is logged, not propagated).
async fn join_all(tasks: &mut [JoinHandle<()>]) {
    for t in tasks.iter_mut() {
        if let Err(e) = t.await
            && !e.is_cancelled()
        {
            tracing::error!(error = %e, "a task failed");
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
