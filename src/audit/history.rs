//! What the trail says of each instance when the daemon starts: the incident left open by an
//! earlier run (as a typed [`OpenIncident`] for the engine, which reads no JSON) and when
//! shutdowns were decided (so `limits` hold across a restart).
//!
//! An incident counts as open only when nothing recorded after it says otherwise: no
//! `recovered`, and no later record of that instance outside it (another incident, or a record
//! made while no incident was open). Lifecycle records (started, stopped, policy loaded or
//! rejected) say nothing about the server and do not count.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::Record;
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
}

/// Read the trail at `path` back into each instance's [`History`].
pub fn history(path: &Path) -> std::io::Result<HashMap<String, History>> {
    let mut open: HashMap<String, Vec<Record>> = HashMap::new();
    let mut shutdowns: HashMap<String, Vec<u64>> = HashMap::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(file).split(b'\n') {
        let Ok(record) = Record::parse(&line?) else {
            continue;
        };
        let Some(instance) = record.event.instance.clone() else {
            continue;
        };
        if record.kind() == EventKind::ShutdownSent
            && let Some(t) = record.unix_ms()
        {
            shutdowns.entry(instance.clone()).or_default().push(t);
        }
        if is_lifecycle(record.kind()) {
            continue;
        }
        let records = open.entry(instance).or_default();
        let same = records.first().map(|r| &r.event.incident) == Some(&record.event.incident);
        if !same {
            records.clear();
        }
        if record.event.incident.is_some() && record.kind() != EventKind::Recovered {
            records.push(record);
        } else {
            records.clear();
        }
    }
    let mut out: HashMap<String, History> = HashMap::new();
    for (instance, records) in open {
        out.entry(instance).or_default().open_incident = open_incident(&records);
    }
    for (instance, times) in shutdowns {
        out.entry(instance).or_default().shutdowns = times;
    }
    Ok(out)
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
