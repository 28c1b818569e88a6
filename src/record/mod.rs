//! One call records an event everywhere it goes: a log line, the metrics, and the audit trail
//! (from which the notifiers deliver it). The watchdogs, the daemon and the notifiers all record
//! through it, so what is logged, counted and kept cannot disagree.

pub mod health;
pub mod metrics;
pub mod process;

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::event::{Event, Severity};
use metrics::Metrics;

/// Where events go.
#[derive(Clone)]
pub struct Recorder {
    pub audit: Arc<AuditLog>,
    pub metrics: Arc<Metrics>,
}

impl Recorder {
    /// Log, count and append `event`; returns its `seq`, or the trail's error (already logged).
    pub fn record(&self, event: &Event) -> std::io::Result<u64> {
        log_event(event);
        self.metrics.record(event);
        self.audit.append(event).inspect_err(|e| {
            self.metrics.trail_write_failed();
            tracing::error!(error = %e, path = %self.audit.path().display(), event = event.kind().name(),
                "audit write failed: the record is lost (kills still go, shutdowns do not)");
        })
    }

    /// Record several events in order. Each is tried even after one failed (so the trail's next
    /// `trail_fault` names every record lost); returns the first error.
    pub fn record_all(&self, events: &[Event]) -> std::io::Result<()> {
        let mut first = Ok(());
        for event in events {
            if let Err(e) = self.record(event)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// One log line per event, at the level its severity calls for: a shutdown, a withheld or failed
/// action is an ERROR (`journalctl -p err` shows them), an unkillable script, a fault or an
/// unreachable server a WARN. The message is short and human (`unkillable: UNKILLABLE Sorry
/// ...`); the detail goes along for JSON lines (`daemon::logs` leaves it out of text ones).
fn log_event(event: &Event) {
    let instance = event.instance.as_deref().unwrap_or("-");
    let incident = event.incident.as_deref().unwrap_or("-");
    let detail = event.detail.to_value();
    let name = event.kind().name();
    let dry_run = event.dry_run;
    let said = event
        .detail
        .explanation()
        .filter(|e| !e.is_empty())
        .or_else(|| event.detail.command().map(str::to_string));
    let message = match said {
        Some(why) => format!(
            "{name}: {}",
            crate::model::text::cut(&why, LOG_MESSAGE_CHARS)
        ),
        None => name.to_string(),
    };
    match event.severity() {
        Severity::Critical => {
            tracing::error!(event = name, %instance, %incident, dry_run, %detail, "{message}")
        }
        Severity::Error | Severity::Warning => {
            tracing::warn!(event = name, %instance, %incident, dry_run, %detail, "{message}")
        }
        Severity::Info => {
            tracing::info!(event = name, %instance, %incident, dry_run, %detail, "{message}")
        }
    }
}

/// How much of an event's explanation a log line's message carries (the trail has all of it).
const LOG_MESSAGE_CHARS: usize = 200;
