//! `busyguard run`: load the policies, start one watchdog task per instance, and stop them all
//! cleanly on SIGTERM or SIGINT. A slow or dead instance never delays another: each watchdog is
//! its own task with its own connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::event::{Event, EventKind};
use crate::policy;
use crate::watchdog::Watchdog;

/// Where the daemon keeps its trail when no `--state-dir` is given and systemd set none.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/busyguard";

/// How long stopping watchdogs may take before the daemon exits anyway.
const STOP_LIMIT: Duration = Duration::from_secs(5);

pub struct RunOptions {
    pub policies: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub dry_run: bool,
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
    let record = |event: Event| {
        if let Err(e) = audit.append(&event) {
            tracing::error!(error = %e, "audit write failed");
        }
    };
    record(Event::daemon(
        EventKind::WatchdogStarted,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "dry_run_forced": opts.dry_run,
            "resumed_after_seq": resume.last_seq,
            "torn_tail_bytes": resume.torn_bytes,
        }),
    ));
    if resume.torn_bytes > 0 {
        tracing::warn!(bytes = resume.torn_bytes, path = %path.display(),
            "the audit trail ended in a torn record (a crash mid-write); it is kept and the chain continues after it");
    }

    let report = policy::load(&opts.policies);
    for (file, diags) in &report.rejected {
        for d in diags {
            tracing::error!("{d}");
        }
        record(Event::daemon(
            EventKind::PolicyRejected,
            json!({"file": file.display().to_string(),
                   "errors": diags.iter().map(ToString::to_string).collect::<Vec<_>>()}),
        ));
    }
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    if report.policies.is_empty() {
        tracing::error!("no valid policy could be loaded");
        record(Event::daemon(
            EventKind::WatchdogStopped,
            json!({"reason": "no valid policy"}),
        ));
        let _ = audit.sync();
        return Ok(RunEnd::NoValidPolicy);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    // reqwest's TLS uses the process-wide rustls provider; ring is the one fred already brings.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outboxes =
        crate::notify::spawn_all(&report.policies, &dir, &audit, resume.last_seq, &stop_rx);
    let mut tasks = Vec::new();
    for p in report.policies {
        record(Event {
            instance: Some(p.instance.clone()),
            policy: Some(p.content_hash.clone()),
            ..Event::daemon(
                EventKind::PolicyLoaded,
                json!({"file": p.source.display().to_string(), "policy_hash": p.content_hash,
                       "endpoint": p.redis.endpoint.to_string()}),
            )
        });
        let mut dog = Watchdog::new(p.clone(), opts.dry_run, audit.clone(), stop_rx.clone());
        if let Some(history) = histories.get(&p.instance)
            && let Some(id) = dog.resume(history)
        {
            tracing::warn!(instance = %p.instance, incident = %id,
                "resuming an incident that was in flight when busyguard last stopped");
        }
        tasks.push(tokio::spawn(dog.run()));
    }
    let syncer = {
        let audit = audit.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = audit.sync() {
                    tracing::error!(error = %e, "audit sync failed");
                }
            }
        })
    };

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                // logrotate (`create` + postrotate `systemctl reload`) moved the trail away.
                match audit.reopen() {
                    Ok(_) => tracing::info!(path = %path.display(), "SIGHUP: audit trail reopened"),
                    Err(e) => tracing::error!(error = %e, path = %path.display(), "SIGHUP: cannot reopen the audit trail; still writing the old file"),
                }
            }
        }
    }
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let all = futures_join(tasks);
    if tokio::time::timeout(STOP_LIMIT, all).await.is_err() {
        tracing::warn!("some watchdogs did not stop within {STOP_LIMIT:?}");
    }
    // Pending notifications get a bounded chance; the cursors make the rest go out next start.
    if tokio::time::timeout(STOP_LIMIT, futures_join(outboxes))
        .await
        .is_err()
    {
        tracing::warn!(
            "some notifications were still being delivered at stop; they resume at the next start"
        );
    }
    syncer.abort();
    record(Event::daemon(
        EventKind::WatchdogStopped,
        json!({"reason": "signal"}),
    ));
    let _ = audit.sync();
    Ok(RunEnd::Stopped)
}

/// Wait for every task (a panicked one is logged, not propagated).
async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "a watchdog task failed");
        }
    }
}
