//! What the trail says of each instance when the daemon starts: the incident left open by an
//! earlier run (as a typed [`OpenIncident`] for the engine, which reads no JSON) and when
//! shutdowns were decided (so `limits` hold across a restart).
//!
//! An incident counts as open only when nothing recorded after it says otherwise: no
//! `recovered` (or `incident_superseded`), and no later record of that instance outside it
//! (another incident, or a record made while no incident was open). Lifecycle records (started,
//! stopped, policy loaded or rejected, notification failures) say nothing about the server and do
//! not count. The trail is read backwards, across rotated files, only as far as needed.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::Record;
use super::backwards::Backwards;
use crate::engine::{OpenIncident, ResumedShutdown};
use crate::event::{Detail, EventKind};

/// What the trail says of one instance.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct History {
    /// The incident still open when the trail was last written.
    pub open_incident: Option<OpenIncident>,
    /// Unix ms of every `shutdown_sent` (dry-run decisions too: a dry run shows what enforce
    /// would do, limits included).
    pub shutdowns: Vec<u64>,
    /// The (run id, SLOWLOG id) of the newest `slow_script`: where early warnings go on.
    pub slowlog_cursor: Option<(Option<String>, u64)>,
    /// The pause in force when the trail was last written: (until Unix ms, by, reason).
    pub pause: Option<(u64, String, String)>,
}

/// Read the trail at `path`, and the files rotation moved away beside it, back into each
/// instance's [`History`]: backwards from the end, until `window` (the longest `limits.per`, or
/// more) is covered and every incident still open has been read back to its start. Time and
/// memory depend on that window, not on the trail's size.
pub fn history(path: &Path, window: Duration) -> std::io::Result<HashMap<String, History>> {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let horizon = crate::clock::unix_ms().saturating_sub(window_ms);
    let mut scans: HashMap<String, Scan> = HashMap::new();
    let mut shutdowns: HashMap<String, Vec<u64>> = HashMap::new();
    let mut cursors: HashMap<String, (Option<String>, u64)> = HashMap::new();
    let mut pauses: HashMap<String, Option<(u64, String, String)>> = HashMap::new();
    'files: for file in trail_files(path)? {
        let mut lines = match Backwards::open(&file) {
            Ok(lines) => lines,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        lines.next_line()?; // what follows the last newline: empty, or a torn record
        while let Some(line) = lines.next_line()? {
            let Ok(record) = Record::parse(&line) else {
                continue;
            };
            let at = record.unix_ms().unwrap_or(0);
            if at < horizon && scans.values().all(|s| s.complete) {
                break 'files;
            }
            let Some(instance) = record.event.instance.clone() else {
                continue;
            };
            if record.kind() == EventKind::ShutdownSent && at >= horizon {
                shutdowns.entry(instance.clone()).or_default().push(at);
            }
            if let Detail::OperatorCommand(c) = &record.event.detail
                && matches!(c.command.as_str(), "pause" | "resume" | "pause_expired")
            {
                pauses.entry(instance.clone()).or_insert_with(|| {
                    (c.command == "pause").then(|| {
                        (
                            c.until_unix_ms.unwrap_or(0),
                            c.by_user.clone(),
                            c.reason.clone(),
                        )
                    })
                });
            }
            if let Detail::SlowScript(s) = &record.event.detail {
                cursors
                    .entry(instance.clone())
                    .or_insert_with(|| (s.run_id.clone(), s.slowlog_id));
            }
            if !is_lifecycle(record.kind()) {
                scans.entry(instance).or_default().take(record);
            }
        }
    }
    let mut out: HashMap<String, History> = HashMap::new();
    for (instance, scan) in scans {
        let mut records = scan.open;
        records.reverse();
        out.entry(instance).or_default().open_incident = open_incident(&records);
    }
    for (instance, mut times) in shutdowns {
        times.reverse();
        out.entry(instance).or_default().shutdowns = times;
    }
    for (instance, cursor) in cursors {
        out.entry(instance).or_default().slowlog_cursor = Some(cursor);
    }
    for (instance, pause) in pauses {
        out.entry(instance).or_default().pause = pause;
    }
    Ok(out)
}

/// One instance's records, read from the newest back.
#[derive(Default)]
struct Scan {
    /// The newest record of the instance has been read.
    decided: bool,
    /// The records of the incident the newest record belongs to, if it is open (newest first).
    open: Vec<Record>,
    /// Nothing more is needed: no incident open, or the open one read back to its start.
    complete: bool,
}

impl Scan {
    fn take(&mut self, record: Record) {
        if self.complete {
            return;
        }
        if !self.decided {
            self.decided = true;
            let closes = matches!(
                record.kind(),
                EventKind::Recovered | EventKind::IncidentSuperseded
            );
            match record.event.incident.is_some() && !closes {
                true => self.open.push(record),
                false => self.complete = true,
            }
        } else if self.open.first().map(|r| &r.event.incident) == Some(&record.event.incident) {
            self.open.push(record);
        } else {
            self.complete = true;
        }
    }
}

/// The trail and the files rotation moved away beside it (`audit.jsonl.1`,
/// `audit.jsonl-20261127`; compressed ones cannot be read back and are passed over), newest
/// first.
fn trail_files(path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = vec![path.to_path_buf()];
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(files);
    };
    let mut rotated: Vec<(std::time::SystemTime, std::path::PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some(rest) = file.strip_prefix(name) else {
            continue;
        };
        let compressed = [".gz", ".bz2", ".xz", ".zst"]
            .iter()
            .any(|c| file.ends_with(c));
        if (rest.starts_with('.') || rest.starts_with('-')) && !compressed {
            let modified = entry.metadata().and_then(|m| m.modified());
            rotated.push((modified.unwrap_or(std::time::UNIX_EPOCH), entry.path()));
        }
    }
    rotated.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    files.extend(rotated.into_iter().map(|(_, p)| p));
    Ok(files)
}

/// Records that say nothing about the server's state.
fn is_lifecycle(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::WatchdogStarted
            | EventKind::WatchdogStopped
            | EventKind::PolicyLoaded
            | EventKind::PolicyRejected
            | EventKind::NotifyFailed
            | EventKind::SlowScript
            | EventKind::TrailFault
            | EventKind::OperatorCommand
    )
}

/// The typed open incident from its records, in order.
fn open_incident(records: &[Record]) -> Option<OpenIncident> {
    let first = records.first()?;
    let mut inc = OpenIncident {
        id: first.event.incident.clone()?,
        opened_unix_ms: first.unix_ms()?,
        ..OpenIncident::default()
    };
    for r in records {
        match &r.event.detail {
            Detail::BusyDetected(d) => {
                inc.busy = Some((d.busy_kind, r.unix_ms()?));
            }
            Detail::HangDetected(_) => inc.hang_reported = true,
            Detail::Unreachable(_) => inc.unreachable_reported = true,
            Detail::ShutdownSent(_) => {
                inc.shutdown = Some(match r.event.dry_run {
                    true => ResumedShutdown::Decided,
                    false => ResumedShutdown::Sent,
                })
            }
            Detail::ShutdownConfirmed(_) => inc.shutdown = Some(ResumedShutdown::Confirmed),
            _ => {}
        }
        // The snapshot the incident's first decision rested on, placed at the time it was taken.
        if inc.snapshot.is_none()
            && let Some(inputs) = r.event.detail.inputs()
            && let (Some(s), Some(age), Some(at)) =
                (&inputs.snapshot, inputs.snapshot_age_ms, r.unix_ms())
        {
            inc.snapshot = Some((s.clone(), at.saturating_sub(age)));
        }
    }
    Some(inc)
}
