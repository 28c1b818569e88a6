//! What the trail says of each instance when its watchdog starts: the incident left open by an
//! earlier run (as a typed [`OpenIncident`] for the engine, which reads no JSON), when shutdowns
//! were decided (so `limits` hold across a restart), and the state promised to survive a
//! restart (a pause in force, the SLOWLOG cursor).
//!
//! An incident counts as open only when nothing recorded after it says otherwise: no
//! `recovered` (or `incident_superseded`), and no later record of that instance outside it
//! (another incident, or a record made while no incident was open). Lifecycle records (started,
//! stopped, policy loaded or rejected, notification failures) say nothing about the server and do
//! not count.
//!
//! How far back. The trail is read backwards, across rotated files, for the instances asked
//! about only, until each is decided, whatever the age of its records: its newest server record
//! (is an incident open?), its newest pause or resume, its newest SLOWLOG cursor. The window
//! bounds only what the limits need (shutdowns within it) and how far back an open incident's
//! start is sought (the window before its newest record); it never decides whether a record is
//! looked at. Every `watchdog_started` sums up what its start carried over (`carried`), so an
//! instance is decided at its last start at the latest: time and memory follow the last run's
//! records, not the trail's size. An instance never started before (or last started by a
//! version that wrote no `carried`) is read back to the start of the readable trail, once.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::Record;
use super::backwards::Backwards;
use crate::engine::{History, OpenIncident, ResumedShutdown};
use crate::event::detail::WithheldAction;
use crate::event::detail::{CarriedHold, CarriedPause, SlowlogCursor, WatchdogStarted};
use crate::event::{Detail, EventKind};
use crate::model::takeover::Successor;

/// Read the trail at `path`, and the files rotation moved away beside it, back into the
/// [`History`] of each of `instances`, as of `now_unix_ms`: backwards from the end, until each
/// instance is decided (see the module's paragraph) and `window` (the longest `limits.per`, or
/// more) is covered for the limits.
pub fn history(
    path: &Path,
    instances: &[String],
    window: Duration,
    now_unix_ms: u64,
) -> std::io::Result<HashMap<String, History>> {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let horizon = now_unix_ms.saturating_sub(window_ms);
    let mut scans: HashMap<String, Scan> = instances
        .iter()
        .map(|i| (i.clone(), Scan::default()))
        .collect();
    let wanted = Wanted::new(instances);
    'files: for file in trail_files(path)? {
        let mut lines = match Backwards::open(&file) {
            Ok(lines) => lines,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        lines.next_line()?; // what follows the last newline: empty, or a torn record
        while let Some(line) = lines.next_line()? {
            if scans.values().all(Scan::decided) {
                // Decided: only the limits' window may still hold shutdowns.
                match Record::parse(&line) {
                    Ok(r) if r.unix_ms().unwrap_or(0) < horizon => break 'files,
                    _ => {}
                }
            }
            if !wanted.may_name(&line) {
                continue;
            }
            let Ok(record) = Record::parse(&line) else {
                continue;
            };
            let Some(scan) = record
                .event
                .instance
                .as_ref()
                .and_then(|i| scans.get_mut(i))
            else {
                continue;
            };
            let at = record.unix_ms().unwrap_or(0);
            // A shutdown the gate held back (its record written, the command not sent) is
            // said after it: read first, it keeps that shutdown from counting.
            if let Detail::EscalationWithheld(w) = &record.event.detail
                && w.withheld_action == Some(WithheldAction::Shutdown)
            {
                scan.unsent.push(record.event.incident.clone());
            }
            if record.kind() == EventKind::ShutdownSent && at >= horizon {
                let unsent = scan.unsent.iter().position(|i| *i == record.event.incident);
                match (unsent, record.event.dry_run) {
                    (Some(i), _) => {
                        scan.unsent.remove(i);
                    }
                    (None, true) => scan.rehearsals.push(at),
                    (None, false) => scan.shutdowns.push(at),
                }
            }
            scan.take(record, at, window_ms);
        }
    }
    Ok(scans
        .into_iter()
        .map(|(instance, scan)| (instance, scan.into_history()))
        .collect())
}

/// One instance's records, read from the newest back.
#[derive(Default)]
struct Scan {
    /// The newest server record of the instance has been read.
    newest_seen: bool,
    /// The records of the incident the newest server record belongs to, if it is open (newest
    /// first), and when its newest record was written.
    open: Vec<Record>,
    open_newest_ms: u64,
    /// No incident open, or the open one read back to its start (or as far as the window).
    incident_done: bool,
    /// The newest word on a pause (`None` until one is read): a pause, or none in force.
    pause: Option<Option<CarriedPause>>,
    /// The newest SLOWLOG cursor (`None` until one is read).
    cursor: Option<Option<SlowlogCursor>>,
    /// The newest word on a hold (a hold, its release, or the server healthy again).
    hold: Option<Option<CarriedHold>>,
    /// Unix ms of the enforced `shutdown_sent` records within the window, and of the dry-run
    /// ones, newest first.
    shutdowns: Vec<u64>,
    rehearsals: Vec<u64>,
    /// Incidents with a shutdown the gate held back, not yet matched to its `shutdown_sent`.
    unsent: Vec<Option<String>>,
}

impl Scan {
    /// Nothing older can change what this instance carries over.
    fn decided(&self) -> bool {
        self.incident_done && self.pause.is_some() && self.cursor.is_some() && self.hold.is_some()
    }

    fn take(&mut self, record: Record, at: u64, window_ms: u64) {
        match &record.event.detail {
            Detail::WatchdogStarted(WatchdogStarted::Instance {
                carried: Some(c), ..
            }) => {
                self.pause.get_or_insert_with(|| c.pause.clone());
                self.cursor.get_or_insert_with(|| c.slowlog_cursor.clone());
                self.hold.get_or_insert_with(|| c.hold.clone());
            }
            Detail::OperatorCommand(c) if matches!(c.command.as_str(), "hold" | "release") => {
                self.hold.get_or_insert_with(|| {
                    (c.command == "hold").then(|| CarriedHold {
                        by: c.by_user.clone(),
                        reason: c.reason.clone(),
                    })
                });
            }
            // A hold ends with the server healthy again.
            Detail::Recovered(_) => {
                self.hold.get_or_insert(None);
            }
            Detail::OperatorCommand(c)
                if matches!(c.command.as_str(), "pause" | "resume" | "pause_expired") =>
            {
                self.pause.get_or_insert_with(|| {
                    (c.command == "pause").then(|| CarriedPause {
                        until_unix_ms: c.until_unix_ms.unwrap_or(0),
                        by: c.by_user.clone(),
                        reason: c.reason.clone(),
                    })
                });
            }
            Detail::SlowScript(s) => {
                self.cursor.get_or_insert_with(|| {
                    Some(SlowlogCursor {
                        run_id: s.run_id.clone(),
                        slowlog_id: s.slowlog_id,
                    })
                });
            }
            _ => {}
        }
        if !is_lifecycle(record.kind()) {
            self.take_server_record(record, at, window_ms);
        }
    }

    /// A record of what the server did: the newest decides whether an incident is open.
    fn take_server_record(&mut self, record: Record, at: u64, window_ms: u64) {
        if self.incident_done {
            return;
        }
        if !self.newest_seen {
            self.newest_seen = true;
            let closes = matches!(
                record.kind(),
                EventKind::Recovered | EventKind::IncidentSuperseded
            );
            match record.event.incident.is_some() && !closes {
                true => {
                    self.open_newest_ms = at;
                    self.open.push(record);
                }
                false => self.incident_done = true,
            }
        } else if at < self.open_newest_ms.saturating_sub(window_ms) {
            // Its start is sought no further back than the window: what was read is kept.
            self.incident_done = true;
        } else if self.open.first().map(|r| &r.event.incident) == Some(&record.event.incident) {
            self.open.push(record);
        } else {
            self.incident_done = true;
        }
    }

    fn into_history(self) -> History {
        let mut records = self.open;
        records.reverse();
        let oldest_first = |mut list: Vec<u64>| {
            list.reverse();
            list
        };
        History {
            open_incident: open_incident(&records),
            shutdowns: oldest_first(self.shutdowns),
            rehearsals: oldest_first(self.rehearsals),
            slowlog_cursor: self.cursor.flatten(),
            pause: self.pause.flatten(),
            hold: self.hold.flatten(),
        }
    }
}

/// The instances asked about, as their records spell them, to pass over the lines of others
/// without parsing them.
struct Wanted {
    /// `"instance":<name as JSON>` for each.
    fields: Vec<Vec<u8>>,
}

/// A record names its instance within its first bytes (`ts`, `seq`, then `instance`).
const INSTANCE_WITHIN: usize = 96;

impl Wanted {
    fn new(instances: &[String]) -> Wanted {
        let fields = instances
            .iter()
            .map(|i| {
                let name = serde_json::to_string(i).expect("a string serializes");
                format!(",\"instance\":{name},").into_bytes()
            })
            .collect();
        Wanted { fields }
    }

    /// False only when the line surely names another instance (or none): a line not shaped as
    /// busyguard writes it is parsed to make sure.
    fn may_name(&self, line: &[u8]) -> bool {
        const FIELD: &[u8] = b",\"instance\":";
        let head = &line[..line.len().min(INSTANCE_WITHIN)];
        let Some(start) = memchr::memmem::find(head, FIELD) else {
            return true;
        };
        let rest = &line[start..];
        self.fields.iter().any(|f| rest.starts_with(f))
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
            Detail::RoleChanged(d) => {
                inc.successor = Some(Successor {
                    address: d.primary.clone(),
                    run_id: d.primary_run_id.clone(),
                    replid2: d.primary_replid2.clone().unwrap_or_default(),
                })
            }
            Detail::FailoverRequested(d) if !r.event.dry_run => {
                inc.failover_in_flight = Some((d.via, r.unix_ms()?));
            }
            Detail::FailoverFailed(_) => inc.failover_in_flight = None,
            Detail::FailoverCompleted(d) => {
                inc.failover_in_flight = None;
                inc.successor = Some(Successor {
                    address: d.new_primary.clone(),
                    run_id: d.new_primary_run_id.clone().unwrap_or_default(),
                    replid2: d.new_primary_replid2.clone().unwrap_or_default(),
                });
            }
            // Handled: fenced, or said not to be.
            Detail::SplitBrain(_) => inc.successor = None,
            _ => {}
        }
        if let Some(successor) = r.event.detail.inputs().and_then(|i| i.successor.clone()) {
            inc.successor = Some(successor);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::event::detail::{Carried, OperatorCommand, WatchdogStarted};

    const DAY_MS: u64 = 24 * 3_600_000;
    /// Any date: nothing here depends on today's.
    const T0: u64 = 1_500_000_000_000;

    fn event(detail: impl Into<Detail>) -> Event {
        Event {
            instance: Some("i".into()),
            incident: None,
            dry_run: false,
            policy: Some("p".into()),
            detail: detail.into(),
        }
    }

    fn pause(until_unix_ms: u64, reason: &str) -> Event {
        event(OperatorCommand {
            command: "pause".into(),
            by_user: "ops".into(),
            by_uid: Some(1000),
            reason: reason.into(),
            until: None,
            until_unix_ms: Some(until_unix_ms),
        })
    }

    fn started(carried: Option<Carried>) -> Event {
        event(WatchdogStarted::Instance {
            resumed_incident: None,
            endpoint: "redis://127.0.0.1:6379".into(),
            policy_file: "/etc/busyguard/i.yaml".into(),
            policy_hash: "p".into(),
            dry_run: false,
            probe_interval_ms: 100,
            carried,
        })
    }

    /// The history of `i` in a trail of these (time, event) records, read at `now`.
    fn read(records: &[(u64, Event)], now: u64) -> History {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut text = Vec::new();
        for (seq, (at, e)) in records.iter().enumerate() {
            let record = Record {
                ts: crate::model::clock::rfc3339(*at),
                seq: seq as u64 + 1,
                prev: String::new(),
                version: String::new(),
                event: e.clone(),
            };
            text.extend(record.to_line());
            text.push(b'\n');
        }
        std::fs::write(&path, text).unwrap();
        let window = Duration::from_millis(DAY_MS);
        history(&path, &["i".to_string()], window, now)
            .unwrap()
            .remove("i")
            .unwrap()
    }

    /// A pause made days ago for longer than that is still the newest word on it, whatever the
    /// window.
    #[test]
    fn a_pause_older_than_the_window_is_read() {
        let h = read(
            &[(T0, pause(T0 + 30 * DAY_MS, "migration"))],
            T0 + 5 * DAY_MS,
        );
        let p = h.pause.expect("the pause");
        assert_eq!(
            (p.until_unix_ms, p.reason.as_str()),
            (T0 + 30 * DAY_MS, "migration")
        );
    }

    /// A start's `carried` sums up what lies before it: an older pause it did not carry (it had
    /// expired, or was resumed) is not read back into force.
    #[test]
    fn a_watchdog_start_decides_what_lies_before_it() {
        let records = [
            (T0, pause(T0 + 30 * DAY_MS, "old")),
            (T0 + DAY_MS, started(Some(Carried::default()))),
        ];
        assert_eq!(read(&records, T0 + 2 * DAY_MS).pause, None);
        // A start by an earlier version carried nothing it can say: read on past it.
        let records = [
            (T0, pause(T0 + 30 * DAY_MS, "old")),
            (T0 + DAY_MS, started(None)),
        ];
        assert!(read(&records, T0 + 2 * DAY_MS).pause.is_some());
        // What came after the start is newer than what it carried.
        let records = [
            (T0, started(Some(Carried::default()))),
            (T0 + DAY_MS, pause(T0 + 30 * DAY_MS, "new")),
        ];
        assert_eq!(read(&records, T0 + 2 * DAY_MS).pause.unwrap().reason, "new");
    }

    #[test]
    fn lines_of_other_instances_are_passed_over_without_parsing() {
        let wanted = Wanted::new(&["cache-01".to_string()]);
        let line = |instance: &str| {
            format!(
                r#"{{"ts":"2026-01-01T00:00:00.000Z","seq":12345678,"instance":{instance},"incident":null}}"#
            )
            .into_bytes()
        };
        assert!(wanted.may_name(&line(r#""cache-01""#)));
        assert!(!wanted.may_name(&line(r#""cache-011""#)));
        assert!(!wanted.may_name(&line("null")));
        // Not shaped as busyguard writes: parsed to make sure.
        assert!(wanted.may_name(br#"{"instance":"x"}"#));
    }
}
