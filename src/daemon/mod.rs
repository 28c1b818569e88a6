//! `busyguard run`: load the policies, supervise each instance with its own watchdog task (and
//! one delivery task per receiver), reload on SIGHUP, and stop cleanly on SIGTERM or SIGINT.
//! A slow or dead instance never delays another: each has its own task and connection.
//!
//! Under systemd (`Type=notify`): `READY=1` once every watchdog is started, `WATCHDOG=1` only
//! while every watchdog loop shows signs of life, `RELOADING=1` / `READY=1` around a reload,
//! `STOPPING=1` at the stop.
//!
//! [`run`] is a library call: it takes its reload and stop requests as a channel of [`Control`]
//! and its metrics listener from the caller (the binary maps SIGHUP, SIGTERM and SIGINT onto
//! the channel), so tests drive a whole daemon in-process. A watchdog task that panics is
//! reported the moment it ends, not found at the stop.

pub mod control;
mod listener;
pub mod logs;
pub mod sched;
pub(crate) mod sdnotify;
pub(crate) mod statedir;
mod stopping;
pub(crate) mod watchdog;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::daemon::control::{Caller, Command, InstanceLive, Request, Response};
use crate::daemon::watchdog::{Controls, SteerRequest, ToWatchdog, Watchdog};
use crate::engine::History;
use crate::engine::Steer;
use crate::event::Event;
use crate::event::detail::{PolicyLoaded, PolicyRejected, WatchdogStarted, WatchdogStopped};
use crate::model::kinds::State;
use crate::policy::{self, Policy};
use crate::record::Recorder;
use crate::record::metrics::Metrics;

/// Where the daemon keeps its trail when no `--state-dir` is given and systemd set none.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/busyguard";

/// How far back shutdowns are counted for `limits` at least (and an open incident's start sought).
const HISTORY_AT_LEAST: Duration = Duration::from_secs(24 * 3600);

/// How long reading the policy files (and their secrets) may take.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// How long an operator's command waits for its watchdog before it is answered as queued.
const QUEUED_AFTER: Duration = Duration::from_secs(2);

/// How long stopping watchdogs may take before the daemon goes on anyway.
const STOP_LIMIT: Duration = Duration::from_secs(5);
/// How long pending notifications may still be delivered at a stop.
const NOTIFY_DRAIN: Duration = Duration::from_secs(3);

pub struct RunOptions {
    pub policies: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub dry_run: bool,
    /// Where `/metrics` is served, bound by the caller.
    pub metrics: Option<tokio::net::TcpListener>,
    /// The pod is stopping when busyguard is told to stop: kill running scripts first, and
    /// serve kubelet's preStop call (`/prestop`) on the metrics listener.
    pub kill_on_stop: bool,
    /// Where the notifications' delivery tasks run: a thread of their own at normal priority
    /// beside the watchdogs' (see [`sched`]); `None`, the caller's runtime (tests in-process).
    pub notifications: Option<tokio::runtime::Handle>,
}

/// What the caller asks of a running daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Reopen the trail and reload every policy file (SIGHUP).
    Reload,
    /// Stop cleanly (SIGTERM, SIGINT).
    Stop,
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
    /// Ends when the watchdog task ends (and reports how it ended).
    task: JoinHandle<()>,
    watchdog_abort: tokio::task::AbortHandle,
    /// The receivers' delivery tasks and their stop.
    outboxes: Vec<JoinHandle<()>>,
    outboxes_stop: watch::Sender<bool>,
    /// Operators' commands for this watchdog, and what it is doing now.
    steer: mpsc::UnboundedSender<ToWatchdog>,
}

/// The daemon's shared parts.
struct Daemon {
    paths: Vec<PathBuf>,
    /// The runtime the notifications' delivery tasks run on.
    notifications: tokio::runtime::Handle,
    dir: PathBuf,
    dry_run: bool,
    recorder: Recorder,
    /// Told the instance of every watchdog task that ends, so a panic is reported at once.
    ended: mpsc::UnboundedSender<(String, Result<(), tokio::task::JoinError>)>,
    running: BTreeMap<String, Supervised>,
    /// What `systemctl status` shows (sd_notify `STATUS=`): what is supervised, what was refused.
    status: String,
}

/// Raise the soft limit on open files to the hard one (systemd's default soft limit is 1024):
/// each supervised instance holds a few descriptors, and idle control clients must not starve
/// the probes of theirs.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open files limit"),
    }
}

pub async fn run(opts: RunOptions, mut control: mpsc::Receiver<Control>) -> anyhow::Result<RunEnd> {
    raise_open_files_limit();
    let dir = state_dir(opts.state_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create state dir {}", dir.display()))?;
    // One writer per state dir: held until `run` returns.
    let _lock = crate::daemon::statedir::lock(&dir)
        .with_context(|| format!("state dir {}", dir.display()))?;
    let control_listener = crate::daemon::control::listen(&dir).with_context(|| {
        format!(
            "cannot listen on the control socket {}",
            crate::daemon::control::socket_path(&dir).display()
        )
    })?;
    let path = dir.join("audit.jsonl");
    let (audit, resume) = AuditLog::open(&path)
        .with_context(|| format!("cannot open audit trail {}", path.display()))?;
    let recorder = Recorder {
        audit: Arc::new(audit),
        metrics: Arc::new(Metrics::default()),
    };
    let (control_tx, mut control_rx) = mpsc::channel(16);
    let metrics_addr = opts.metrics.as_ref().and_then(|l| l.local_addr().ok());
    let metrics_server = opts.metrics.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving /metrics");
        }
        tokio::spawn(listener::serve(
            listener,
            recorder.metrics.clone(),
            opts.kill_on_stop.then(|| control_tx.clone()),
        ))
    });
    crate::install_crypto_provider();
    let (ended, mut ended_rx) = mpsc::unbounded_channel();
    let control_server = tokio::spawn(crate::daemon::control::serve(control_listener, control_tx));
    let mut daemon = Daemon {
        paths: opts.policies,
        notifications: opts
            .notifications
            .unwrap_or_else(tokio::runtime::Handle::current),
        dir,
        dry_run: opts.dry_run,
        recorder,
        ended,
        running: BTreeMap::new(),
        status: String::new(),
    };
    daemon.record(WatchdogStarted::Daemon {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        dry_run_forced: daemon.dry_run,
        resumed_after_seq: resume.last_seq,
        torn_tail_bytes: resume.torn_bytes,
    });
    if resume.torn_bytes > 0 {
        tracing::warn!(bytes = resume.torn_bytes, path = %path.display(),
            "the audit trail ended in a torn record (a crash mid-write); it is kept and the chain continues after it");
    }
    daemon.load(resume.last_seq).await;
    if daemon.running.is_empty() {
        tracing::error!("no valid policy could be loaded");
        daemon.record(WatchdogStopped::Daemon {
            reason: "no valid policy".into(),
        });
        let _ = daemon.recorder.audit.sync();
        return Ok(RunEnd::NoValidPolicy);
    }
    daemon.start_line(&path, metrics_addr, opts.kill_on_stop);
    sdnotify::ready(&daemon.status);

    let syncer = {
        let audit = daemon.recorder.audit.clone();
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
    let systemd_watchdog = sdnotify::watchdog_interval();
    let mut systemd_tick =
        tokio::time::interval(systemd_watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    loop {
        tokio::select! {
            request = control.recv() => match request {
                Some(Control::Reload) => {
                    sdnotify::reloading();
                    daemon.reopen_trail(&path);
                    let seq = daemon.recorder.audit.last_seq();
                    daemon.load(seq).await;
                    sdnotify::ready(&daemon.status);
                }
                Some(Control::Stop) | None => {
                    if opts.kill_on_stop {
                        daemon.stop_scripts().await;
                    }
                    break;
                }
            },
            Some((instance, result)) = ended_rx.recv() => daemon.task_ended(&instance, result),
            Some((request, caller, reply)) = control_rx.recv() => daemon.control(request, caller, reply),
            _ = systemd_tick.tick(), if systemd_watchdog.is_some() => {
                if let Some(limit) = systemd_watchdog && daemon.all_alive(limit) {
                    sdnotify::notify("WATCHDOG=1");
                }
            }
        }
    }
    sdnotify::notify("STOPPING=1");
    tracing::info!("stopping");
    daemon.stop_all().await;
    syncer.abort();
    control_server.abort();
    let _ = std::fs::remove_file(crate::daemon::control::socket_path(&daemon.dir));
    if let Some(server) = metrics_server {
        server.abort();
    }
    daemon.record(WatchdogStopped::Daemon {
        reason: "signal".into(),
    });
    let _ = daemon.recorder.audit.sync();
    Ok(RunEnd::Stopped)
}

impl Daemon {
    /// Record a daemon-wide event (an error is logged by the recorder).
    fn record(&self, detail: impl Into<crate::event::Detail>) {
        let _ = self.recorder.record(&Event::daemon(detail));
    }

    /// A watchdog task ended on its own: a panic, or a return while it should still run.
    fn task_ended(&mut self, instance: &str, result: Result<(), tokio::task::JoinError>) {
        let Some(s) = self.running.get(instance) else {
            return; // stopped on purpose (removed from the policies)
        };
        if *s.stop.borrow() {
            return;
        }
        match result {
            Err(e) => tracing::error!(%instance, error = %e,
                "the watchdog task failed: this instance is NOT supervised until busyguard restarts"),
            Ok(()) => tracing::error!(%instance,
                "the watchdog task ended on its own: this instance is NOT supervised until busyguard restarts"),
        }
        self.recorder.metrics.set_state(instance, State::Fault);
        self.recorder.metrics.probe_lost(instance);
    }

    /// One line that says what is supervised and how, where the trail is, and where to ask.
    fn start_line(&self, trail: &Path, metrics: Option<std::net::SocketAddr>, kill_on_stop: bool) {
        let supervised: Vec<String> = self
            .running
            .values()
            .map(|s| {
                let rules = crate::engine::Rules::from_policy(&s.policy, self.dry_run);
                format!(
                    "{} at {} ({})",
                    s.policy.instance,
                    s.policy.redis.endpoint,
                    rules.short_plan()
                )
            })
            .collect();
        tracing::info!(
            "busyguard {} ({}) supervises {} Redis: {}; audit trail {}; metrics {}; control socket {}{}",
            env!("CARGO_PKG_VERSION"),
            crate::COMMIT,
            supervised.len(),
            supervised.join(", "),
            trail.display(),
            metrics.map_or("off".to_string(), |a| format!("on {a}")),
            crate::daemon::control::socket_path(&self.dir).display(),
            match kill_on_stop {
                true =>
                    "; a pod: a running script is killed when busyguard stops or at GET /prestop",
                false => "",
            }
        );
    }

    fn reopen_trail(&self, path: &Path) {
        // logrotate (`create` + postrotate `systemctl reload`) may have moved the trail away.
        match self.recorder.audit.reopen() {
            Ok(_) => tracing::info!(path = %path.display(), "SIGHUP: audit trail reopened"),
            Err(e) => tracing::error!(error = %e, path = %path.display(),
                "SIGHUP: cannot reopen the audit trail; still writing the old file"),
        }
    }

    /// (Re)load every policy file: start what is new, update what changed, stop what is gone.
    /// A file that no longer validates keeps its previous version running.
    async fn load(&mut self, start_seq: u64) {
        let Some(report) = read_policies(&self.paths).await else {
            self.recorder.metrics.reloaded(false);
            self.status = format!(
                "the policies could not be read; still supervising {}",
                self.supervised_names()
            );
            return;
        };
        self.recorder.metrics.reloaded(report.rejected.is_empty());
        for (file, why) in &report.skipped {
            tracing::warn!(file = %file.display(), "policy folder entry skipped: {why}");
        }
        let mut refused = Vec::new();
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
            refused.push(diags.first().map(ToString::to_string).unwrap_or_default());
            self.record(PolicyRejected {
                file: file.display().to_string(),
                errors: diags.iter().map(ToString::to_string).collect(),
                kept_running: kept.into_iter().map(str::to_string).collect(),
            });
        }
        for w in &report.warnings {
            tracing::warn!("{w}");
        }
        let mut histories = self.histories_of_new(&report.policies).await;
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
                self.recorder.metrics.unregister(&name);
            }
        }
        for p in report.policies {
            // Any difference counts, a secret file's new content too (a rotated password: the
            // file's bytes, and so its hash, may be the same).
            let changed = self.running.get(&p.instance).map(|s| s.policy != p);
            if changed == Some(false) {
                continue;
            }
            let loaded = Event {
                instance: Some(p.instance.clone()),
                policy: Some(p.content_hash.clone()),
                dry_run: self.dry_run || p.mode == policy::Mode::DryRun,
                ..Event::daemon(PolicyLoaded {
                    file: p.source.display().to_string(),
                    policy_hash: p.content_hash.clone(),
                    endpoint: p.redis.endpoint.to_string(),
                    update: changed.is_some(),
                })
            };
            let _ = self.recorder.record(&loaded);
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
                        &self.recorder,
                        self.dry_run,
                        start_seq,
                        &rx,
                        &self.notifications,
                    );
                    s.outboxes_stop = tx;
                    let _ = s.updates.send(p.clone());
                    s.policy = p.clone();
                }
                None => {
                    let history = histories.remove(&p.instance).unwrap_or_default();
                    self.start(p.clone(), start_seq, &history)
                }
            }
        }
        self.status = match refused.as_slice() {
            [] => format!("supervising {}", self.supervised_names()),
            [first, ..] => format!(
                "supervising {}; {} policy file(s) REFUSED, first: {first} (`busyguard check` names every error)",
                self.supervised_names(),
                refused.len()
            ),
        };
    }

    /// The supervised instances, for one line: "2 instances: a, b".
    fn supervised_names(&self) -> String {
        let names: Vec<&str> = self.running.keys().map(String::as_str).collect();
        match names.as_slice() {
            [] => "nothing".to_string(),
            [one] => format!("1 instance: {one}"),
            all => format!("{} instances: {}", all.len(), all.join(", ")),
        }
    }

    /// What the trail says of the instances among `policies` that are not running yet (the
    /// first load, or ones a reload adds): what was in flight when they last ran, read off the
    /// runtime thread (a new instance's first read may cover the whole trail).
    async fn histories_of_new(&self, policies: &[Policy]) -> HashMap<String, History> {
        let new: Vec<String> = policies
            .iter()
            .filter(|p| !self.running.contains_key(&p.instance))
            .map(|p| p.instance.clone())
            .collect();
        if new.is_empty() {
            return HashMap::new();
        }
        // Shutdowns as far back as the longest `limits.per` (a day at least).
        let window = policies
            .iter()
            .map(|p| p.limits.per)
            .max()
            .unwrap_or_default()
            .max(HISTORY_AT_LEAST);
        let path = self.recorder.audit.path().to_path_buf();
        let now = crate::model::clock::unix_ms();
        let read =
            tokio::task::spawn_blocking(move || crate::audit::history(&path, &new, window, now));
        match read.await {
            Ok(Ok(histories)) => histories,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the audit trail back: the new watchdogs start with no history (no incident resumed, no pause, limits counted from now)");
                HashMap::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the audit trail back failed");
                HashMap::new()
            }
        }
    }

    fn start(&mut self, p: Policy, start_seq: u64, history: &History) {
        let (stop, stop_rx) = watch::channel(false);
        let (updates, updates_rx) = watch::channel(p.clone());
        let heartbeat = Arc::new(AtomicU64::new(now_ms()));
        let (steer, steer_rx) = mpsc::unbounded_channel();
        let controls = Controls {
            stop: stop_rx,
            policy_updates: updates_rx,
            heartbeat: heartbeat.clone(),
            steer: steer_rx,
        };
        let mut dog = Watchdog::new(p.clone(), self.dry_run, self.recorder.clone(), controls);
        if let Some(id) = dog.resume(history) {
            tracing::warn!(instance = %p.instance, incident = %id,
                "resuming an incident that was in flight when busyguard last stopped");
        }
        let (outboxes_stop, outboxes_rx) = watch::channel(false);
        let outboxes = crate::notify::spawn_for(
            &p,
            &self.dir,
            &self.recorder,
            self.dry_run,
            start_seq,
            &outboxes_rx,
            &self.notifications,
        );
        let watchdog = tokio::spawn(dog.run());
        let watchdog_abort = watchdog.abort_handle();
        // Watch the task: its end (a panic above all) is reported as it happens.
        let (ended, instance) = (self.ended.clone(), p.instance.clone());
        let task = tokio::spawn(async move {
            let result = watchdog.await;
            let _ = ended.send((instance, result));
        });
        self.running.insert(
            p.instance.clone(),
            Supervised {
                policy: p,
                stop,
                updates,
                heartbeat,
                task,
                watchdog_abort,
                outboxes,
                outboxes_stop,
                steer,
            },
        );
    }

    /// Answer an operator's command from the control socket: `ps` from here, the rest by the
    /// watchdogs concerned (each applies it at its next wake-up and records it).
    fn control(&self, request: Request, caller: Caller, reply: oneshot::Sender<Response>) {
        let targets: Vec<&String> = match &request.instance {
            Some(name) => match self.running.get_key_value(name) {
                Some((name, _)) => vec![name],
                None => {
                    let _ = reply.send(Response::error(format!(
                        "no instance `{name}` is supervised"
                    )));
                    return;
                }
            },
            None => self.running.keys().collect(),
        };
        let steer = match request.command {
            Command::Ps => return self.ps(targets, reply),
            Command::Pause { for_ms, force } => {
                let most = match force {
                    true => control::PAUSE_FORCED_AT_MOST,
                    false => control::PAUSE_AT_MOST,
                };
                if for_ms > most.as_millis() as u64 {
                    let _ = reply.send(Response::error(format!(
                        "a pause of {} is longer than {}{}: refused",
                        humantime::format_duration(Duration::from_millis(for_ms)),
                        humantime::format_duration(most),
                        match force {
                            true => "",
                            false => " (pass --force for up to a year)",
                        }
                    )));
                    return;
                }
                Steer::Pause {
                    until_unix_ms: now_ms().saturating_add(for_ms),
                    by: caller.user.clone(),
                    reason: request.reason.clone(),
                }
            }
            Command::Resume => Steer::Resume,
            Command::Hold => Steer::Hold {
                by: caller.user.clone(),
                reason: request.reason.clone(),
            },
            Command::Release { now } => Steer::Release { now },
            Command::Approve => Steer::Approve,
            Command::Stopping => Steer::Stopping,
        };
        let mut answers = Vec::new();
        for name in targets {
            let (tx, rx) = oneshot::channel();
            let name = name.clone();
            let request = SteerRequest {
                steer: steer.clone(),
                caller: caller.clone(),
                reason: request.reason.clone(),
                reply: tx,
            };
            if self.running[&name]
                .steer
                .send(ToWatchdog::Steer(request))
                .is_ok()
            {
                answers.push((name, rx));
            }
        }
        tokio::spawn(async move {
            let mut lines = Vec::new();
            let mut ok = true;
            for (name, rx) in answers {
                // A watchdog carrying out an action (a failover may take its `failover.timeout`)
                // takes the command when it is done: said, not left to time out.
                match tokio::time::timeout(QUEUED_AFTER, rx).await {
                    Ok(Ok(Ok(line))) => lines.push(line),
                    Ok(Ok(Err(line))) => {
                        ok = false;
                        lines.push(line);
                    }
                    Ok(Err(_)) => ok = false,
                    Err(_) => lines.push(format!(
                        "{name}: queued: its watchdog is carrying out an action and takes the command when that ends (the trail records it then)"
                    )),
                }
            }
            let _ = reply.send(Response {
                ok,
                message: lines.join("\n"),
                instances: Vec::new(),
            });
        });
    }

    /// Told to stop under `--kill-on-stop`: the pod is stopping, so every running script is
    /// killed first (within [`stopping::SETTLE_WITHIN`]), and what became of each is logged.
    async fn stop_scripts(&self) {
        let (tx, rx) = oneshot::channel();
        let request = stopping::request(None, "busyguard's SIGTERM");
        self.control(request, stopping::caller("busyguard".into()), tx);
        match tokio::time::timeout(QUEUED_AFTER * 2, rx).await {
            Ok(Ok(response)) => tracing::info!(answer = %response.message, "the pod is stopping"),
            _ => tracing::warn!("the pod is stopping: the watchdogs did not answer in time"),
        }
        let settled = stopping::settle(&self.recorder.metrics, &[]).await;
        tracing::info!(scripts = %settled, "stopping");
    }

    /// `ps`: what each of `targets` is doing now, asked of its watchdog.
    fn ps(&self, targets: Vec<&String>, reply: oneshot::Sender<Response>) {
        let mut asked = Vec::new();
        for name in targets {
            let (tx, rx) = oneshot::channel();
            if self.running[name]
                .steer
                .send(ToWatchdog::Report(tx))
                .is_ok()
            {
                asked.push((name.clone(), rx));
            }
        }
        tokio::spawn(async move {
            let mut instances = Vec::new();
            for (instance, rx) in asked {
                let live = tokio::time::timeout(QUEUED_AFTER, rx)
                    .await
                    .ok()
                    .and_then(Result::ok);
                instances.push(InstanceLive { instance, live });
            }
            let _ = reply.send(Response {
                ok: true,
                message: String::new(),
                instances,
            });
        });
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
        let mut aborts = Vec::new();
        for s in running.into_values() {
            let _ = s.stop.send(true);
            tasks.push(s.task);
            aborts.push(s.watchdog_abort);
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
        for a in aborts {
            a.abort();
        }
    }
}

/// Read the policy files off the runtime thread, within [`READ_LIMIT`]: the watchdogs keep
/// probing meanwhile, and a file system that hangs costs this reload, not the supervision.
async fn read_policies(paths: &[PathBuf]) -> Option<policy::LoadReport> {
    let paths = paths.to_vec();
    let read = tokio::task::spawn_blocking(move || policy::load(&paths));
    match tokio::time::timeout(READ_LIMIT, read).await {
        Ok(Ok(report)) => Some(report),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the policies failed: the running policies are kept");
            None
        }
        Err(_) => {
            tracing::error!(
                "reading the policies took longer than {READ_LIMIT:?}: the running policies are kept"
            );
            None
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
    crate::model::clock::unix_ms()
}
