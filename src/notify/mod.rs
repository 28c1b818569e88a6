//! Notifications, delivered at least once and never in the way.
//!
//! The audit trail is the outbox: every receiver has its own task that reads the trail from its
//! cursor (`<state-dir>/notify/<instance>.<n>.<kind>.cursor`, the last `seq` it is done with) and
//! delivers its instance's records in order, one at a time, so a resolve never overtakes its
//! trigger. The watchdogs only append to the trail; a receiver that hangs, refuses or rate-limits
//! delays nobody but itself. A restart resumes from the cursor (an event may then be sent twice,
//! with the same webhook id); a new receiver starts at the end of the trail.
//!
//! Failures: 5xx, 408, timeouts and refused connections are retried with exponential backoff and
//! jitter; 429 waits for `Retry-After`; other 4xx (and 3xx: redirects are not followed) are
//! permanent. An event given up (permanent, or older than the receiver's `max_age`) is recorded
//! as `notify_failed` in the trail.

pub mod formats;
mod quiet;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::follow::{TrailReader, TrailRecord};
use crate::event::Event;
use crate::event::detail::{NotifyFailed, TrailFault};
use crate::policy::{Policy, Receiver, ReceiverKind};
use crate::record::Recorder;
use formats::{accepted, request, wanted};
use quiet::Quiet;

/// Time allowed to open a connection to a receiver.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for a whole request, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay; doubled each time up to `BACKOFF_MAX`, with ±20% jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The most of a receiver's answer busyguard reads (for the log line of a refusal).
const BODY_LIMIT: usize = 4 * 1024;
/// Re-read the trail at least this often even without a wake-up (e.g. a write by another
/// process).
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// Start one delivery task per receiver of `policy`. `start_seq` is where a receiver with no
/// cursor yet begins (the end of the trail). On `stop` a task delivers what it has already read
/// and returns; the daemon bounds that with a timeout.
pub fn spawn_for(
    policy: &Policy,
    state_dir: &Path,
    recorder: &Recorder,
    dry_run: bool,
    start_seq: u64,
    stop: &watch::Receiver<bool>,
    runtime: &tokio::runtime::Handle,
) -> Vec<tokio::task::JoinHandle<()>> {
    let dir = state_dir.join("notify");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(error = %e, dir = %dir.display(), "cannot create the notification state folder: no notifications");
        return Vec::new();
    }
    let mut tasks = Vec::new();
    for (n, receiver) in policy.notify.iter().enumerate() {
        let name = format!("{}.{n}.{}", policy.instance, receiver.kind.name());
        recorder.metrics.register_receiver(&name);
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(receiver = %name, error = %e.without_url(), "cannot build an HTTP client");
                continue;
            }
        };
        let outbox = Outbox {
            cursor_path: dir.join(format!("{name}.cursor")),
            name,
            instance: policy.instance.clone(),
            policy_hash: policy.content_hash.clone(),
            receiver: receiver.clone(),
            trail: recorder.audit.path().to_path_buf(),
            recorder: recorder.clone(),
            client,
            appended: recorder.audit.subscribe(),
            faults: recorder.audit.faults(),
            context: formats::Context {
                host: host(),
                runbook_url: policy.runbook_url.clone(),
                server: None,
            },
            paged: formats::Paged::default(),
            dry_run: dry_run || policy.mode == crate::policy::Mode::DryRun,
            stop: stop.clone(),
        };
        tasks.push(runtime.spawn(outbox.run(start_seq)));
    }
    tasks
}

/// One receiver's delivery task.
struct Outbox {
    /// `<instance>.<n>.<kind>`: in logs (never the URL) and the cursor's file name.
    name: String,
    instance: String,
    policy_hash: String,
    receiver: Receiver,
    cursor_path: PathBuf,
    trail: PathBuf,
    recorder: Recorder,
    client: reqwest::Client,
    /// Bumped by the trail on every append.
    appended: watch::Receiver<u64>,
    /// The trail's write failures, told to the receiver directly (the trail cannot carry them).
    faults: watch::Receiver<Option<String>>,
    stop: watch::Receiver<bool>,
    /// The host and runbook messages name.
    context: formats::Context,
    /// The highest severity paged per dedup key (PagerDuty).
    paged: formats::Paged,
    /// The instance runs in dry-run (its policy's mode, or `--dry-run`).
    dry_run: bool,
}

impl Outbox {
    async fn run(mut self, start_seq: u64) {
        let mut seen = self.load_cursor(start_seq);
        let mut cursor = seen;
        let mut tail = TrailReader::new(&self.trail);
        let mut quiet = Quiet::new(quiet::Rules {
            quiet_ms: self.receiver.quiet.as_millis() as u64,
            grace_ms: self.receiver.unreachable_grace.as_millis() as u64,
            pages: matches!(self.receiver.kind, ReceiverKind::PagerDuty { .. }),
            collapse: matches!(self.receiver.kind, ReceiverKind::Slack { .. }),
        });
        loop {
            let records = match tail.read_new() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(receiver = %self.name, error = %e, "cannot read the audit trail");
                    Vec::new()
                }
            };
            for r in records {
                if r.seq <= seen {
                    continue;
                }
                seen = r.seq;
                if self.wants(&r) {
                    // The server, as the last record that named it said: every message names it.
                    if let Some(server) = formats::server_identity(&r.record) {
                        self.context.server = Some(server);
                    }
                    for now in quiet.take(r) {
                        self.deliver(&now).await;
                    }
                }
            }
            for due in quiet.due(crate::model::clock::unix_ms()) {
                self.deliver(&due).await;
            }
            // Never past a record still held: a restart delivers it (at least once).
            let done = quiet.oldest_held_seq().map_or(seen, |held| held - 1);
            if done != cursor {
                cursor = done;
                self.store_cursor(cursor);
            }
            if *self.stop.borrow() {
                return;
            }
            let next_due = quiet.next_due().map(|at| {
                let wait = at.saturating_sub(crate::model::clock::unix_ms());
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            tokio::select! {
                _ = self.appended.changed() => {}
                _ = self.faults.changed() => {
                    let fault = self.faults.borrow_and_update().clone();
                    if let Some(error) = fault {
                        self.tell_fault(error).await;
                    }
                }
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(tokio::time::Instant::now)), if next_due.is_some() => {}
                _ = tokio::time::sleep(IDLE_RECHECK) => {}
                _ = self.stop.changed() => {}
            }
        }
    }

    /// The cursor, checked against the trail. One that cannot be right (unreadable, or beyond
    /// the trail's last record: a trail replaced or restored) is not trusted to skip anything:
    /// the records of the receiver's last `max_age` are delivered again (at least once beats
    /// never), and the log says so.
    fn load_cursor(&self, start_seq: u64) -> u64 {
        let last = self.recorder.audit.last_seq();
        let why = match std::fs::read_to_string(&self.cursor_path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(cursor) if cursor <= last => return cursor,
                Ok(cursor) => format!("cursor {cursor} is beyond the trail's last record {last}"),
                Err(_) => format!(
                    "cursor file holds `{}`, not a record number",
                    crate::model::text::cut(text.trim(), 40)
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.store_cursor(start_seq);
                return start_seq;
            }
            Err(e) => format!("cursor file cannot be read ({e})"),
        };
        let since =
            crate::model::clock::unix_ms().saturating_sub(self.receiver.max_age.as_millis() as u64);
        let replay = crate::audit::last_seq_before(&self.trail, since).unwrap_or(0);
        tracing::warn!(receiver = %self.name, cursor = %self.cursor_path.display(), replay_after = replay,
            "{why}: delivering again every record after seq {replay} (those of the last max_age)");
        self.store_cursor(replay);
        replay
    }

    /// Tell the receiver, directly, that the trail cannot be written: a record built here and
    /// never in the trail (`seq` 0), delivered like any other.
    async fn tell_fault(&mut self, error: String) {
        let record = crate::audit::Record {
            ts: crate::model::clock::now_rfc3339(),
            seq: 0,
            prev: String::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            event: Event {
                instance: Some(self.instance.clone()),
                incident: None,
                dry_run: false,
                policy: Some(self.policy_hash.clone()),
                detail: TrailFault::Failing {
                    path: self.trail.display().to_string(),
                    error,
                }
                .into(),
            },
        };
        let line = String::from_utf8_lossy(&record.to_line()).into_owned();
        let fault = TrailRecord {
            seq: 0,
            line,
            record,
        };
        if self.wants(&fault) {
            self.deliver(&fault).await;
        }
    }

    fn wants(&self, r: &TrailRecord) -> bool {
        let pages = matches!(self.receiver.kind, ReceiverKind::PagerDuty { .. });
        // A staging dry run never pages (not even its BUSY), unless the receiver asks for it.
        let dry_run = r.record.event.dry_run || self.dry_run;
        if pages && dry_run && !self.receiver.page_dry_run {
            return false;
        }
        r.record.event.instance.as_deref() == Some(self.instance.as_str())
            && wanted(&self.receiver.filter, &r.record)
            && formats::takes(&self.receiver.kind, &r.record)
    }

    /// Deliver one record, retrying until it is taken, refused for good, too old, or the
    /// daemon stops.
    async fn deliver(&mut self, r: &TrailRecord) {
        let event = r.record.kind().name();
        let happened = r
            .record
            .unix_ms()
            .unwrap_or_else(crate::model::clock::unix_ms);
        let give_up_at = happened + self.receiver.max_age.as_millis() as u64;
        let mut backoff = BACKOFF_FIRST;
        let mut attempts = 0u32;
        // PagerDuty: the body as decided at the first attempt (`Paged` remembers what it sent).
        let mut paged: Option<String> = None;
        loop {
            let now = crate::model::clock::unix_ms();
            if now >= give_up_at {
                return self.give_up(
                    r,
                    attempts,
                    "older than max_age without a successful delivery",
                );
            }
            let Some(mut req) = request(
                &self.receiver.kind,
                &r.record,
                &r.line,
                now / 1000,
                &self.context,
            ) else {
                return;
            };
            // One dedup key's severity never goes down before its resolve, and a trigger goes
            // only when it raises it.
            if let ReceiverKind::PagerDuty { .. } = self.receiver.kind {
                if paged.is_none() {
                    match self.paged.raise(&r.record, req.body.clone()) {
                        Some(body) => paged = Some(body),
                        None => return,
                    }
                }
                req.body = paged.clone().unwrap_or_default();
            }
            attempts += 1;
            let mut builder = self.client.post(&req.url).body(req.body);
            for (k, v) in &req.headers {
                builder = builder.header(k, v);
            }
            // No attempt outlives the event's max_age.
            let left = Duration::from_millis(give_up_at.saturating_sub(now));
            let sent = tokio::time::timeout(left, send(builder))
                .await
                .unwrap_or_else(|_| Err("no answer before max_age".into()));
            let wait = match sent {
                Ok((status, _, _)) if accepted(status) => {
                    tracing::info!(receiver = %self.name, %event, seq = r.seq, attempts, "notification delivered");
                    self.recorder.metrics.notification(&self.name, "delivered");
                    return;
                }
                Ok((429, _, retry_after)) => {
                    tracing::warn!(receiver = %self.name, %event, seq = r.seq, attempts, "receiver rate-limits (429)");
                    // The receiver's own wait is a floor: never shortened by jitter.
                    retry_after.unwrap_or_else(|| jitter(backoff))
                }
                Ok((status, _, _)) if status == 408 || status >= 500 => {
                    tracing::warn!(receiver = %self.name, %event, seq = r.seq, attempts, status, "receiver failed; will retry");
                    jitter(backoff)
                }
                Ok((status, body, _)) => {
                    let why = format!(
                        "HTTP {status}: permanent ({})",
                        crate::model::text::cut(&body, 200)
                    );
                    return self.give_up(r, attempts, &why);
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.name, %event, seq = r.seq, attempts, error = %e, "receiver unreachable; will retry");
                    jitter(backoff)
                }
            };
            self.recorder.metrics.notification(&self.name, "retried");
            backoff = (backoff * 2).min(BACKOFF_MAX);
            let left =
                Duration::from_millis(give_up_at.saturating_sub(crate::model::clock::unix_ms()));
            tokio::time::sleep(wait.min(left)).await;
        }
    }

    fn give_up(&mut self, r: &TrailRecord, attempts: u32, why: &str) {
        // A trigger that never arrived: the next one of its incident must go, whatever its
        // severity.
        self.paged.forget(&r.record);
        tracing::error!(receiver = %self.name, seq = r.seq, attempts, reason = %why, "notification given up");
        self.recorder.metrics.notification(&self.name, "given_up");
        let event = Event {
            instance: Some(self.instance.clone()),
            incident: r.record.event.incident.clone(),
            dry_run: r.record.event.dry_run,
            policy: Some(self.policy_hash.clone()),
            detail: NotifyFailed {
                receiver: self.name.clone(),
                kind: self.receiver.kind.name().to_string(),
                event: r.record.kind(),
                seq: r.seq,
                attempts,
                reason: why.to_string(),
            }
            .into(),
        };
        let _ = self.recorder.record(&event);
    }

    /// Write the cursor (a temporary file renamed over the old one, so it is never torn).
    fn store_cursor(&self, seq: u64) {
        let tmp = self.cursor_path.with_extension("cursor.tmp");
        let written = std::fs::write(&tmp, format!("{seq}\n"))
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &self.cursor_path));
        if let Err(e) = written {
            tracing::error!(receiver = %self.name, error = %e, "cannot store the delivery cursor");
        }
    }
}

/// Send, and read status, the first [`BODY_LIMIT`] bytes of the body and `Retry-After`
/// (seconds). A receiver can answer anything: busyguard never reads more, and a 2xx is a
/// success whatever its body does after that. Errors never name the URL.
async fn send(builder: reqwest::RequestBuilder) -> Result<(u16, String, Option<Duration>), String> {
    let mut resp = builder
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while body.len() < BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            // The status has arrived: what the body does after it does not change it.
            Err(_) => break,
        }
    }
    body.truncate(BODY_LIMIT);
    Ok((
        status,
        String::from_utf8_lossy(&body).into_owned(),
        retry_after,
    ))
}

/// This host's name, as messages say where busyguard runs.
fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// ±20% so that receivers recovering together are not hit in lockstep.
fn jitter(d: Duration) -> Duration {
    let factor = 0.8 + (crate::model::clock::subsec_nanos() % 1000) as f64 / 2500.0;
    d.mul_f64(factor)
}
