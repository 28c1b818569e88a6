//! `busyguard audit show`: the incidents of a trail as timelines an operator can paste into a
//! post-mortem: relative times, actions, outcomes, time to recovery.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::audit::Record;
use crate::event::Detail;
use crate::event::detail::ActionFailed;
use crate::text::cut;

/// How much of a server's reply a timeline line shows.
const REPLY_CHARS: usize = 70;

/// Print every incident (or only `only`) of the trail at `path`.
pub fn show(path: &Path, only: Option<&str>, out: &mut impl Write) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    // Incidents in order of first appearance, each with its records.
    let mut incidents: Vec<(String, Vec<Record>)> = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        let Ok(record) = Record::parse(&line?) else {
            continue;
        };
        let Some(id) = record.event.incident.clone() else {
            continue;
        };
        if only.is_some_and(|o| o != id) {
            continue;
        }
        match incidents.iter_mut().find(|(i, _)| *i == id) {
            Some((_, records)) => records.push(record),
            None => incidents.push((id, vec![record])),
        }
    }
    if incidents.is_empty() {
        writeln!(out, "no incidents")?;
    }
    for (id, records) in &incidents {
        let start = records.first().and_then(Record::unix_ms);
        let instance = records[0].event.instance.as_deref().unwrap_or("-");
        writeln!(
            out,
            "incident {id}  instance {instance}  opened {}",
            records[0].ts
        )?;
        for r in records {
            let rel = match (start, r.unix_ms()) {
                (Some(a), Some(b)) => format!("+{}ms", b as i128 - a as i128),
                _ => "?".into(),
            };
            let dry = if r.event.dry_run {
                " (dry run: not sent)"
            } else {
                ""
            };
            writeln!(
                out,
                "  {rel:>9}  {:<19} {}{dry}",
                r.kind().name(),
                summary(&r.event.detail)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn ms(v: Option<u64>) -> String {
    v.map_or(String::new(), |v| format!("{v}ms"))
}

/// The one line that says what a record means.
pub(crate) fn summary(detail: &Detail) -> String {
    use Detail as D;
    match detail {
        D::BusyDetected(d) => format!(
            "{} busy, threshold {}: {}",
            d.busy_kind.name(),
            ms(d.inputs.threshold_ms),
            cut(&d.reply, REPLY_CHARS)
        ),
        D::KillSent(d) => d.command.clone(),
        D::Killed(d) => format!(
            "{} took effect, {} after the first BUSY",
            d.command,
            ms(d.since_first_busy_ms)
        ),
        D::Unkillable(d) => format!(
            "{}; budget left {}, then {}",
            cut(&d.reply, REPLY_CHARS),
            ms(d.budget_left_ms),
            d.then.name()
        ),
        D::ShutdownSent(d) => format!(
            "{} after {} of BUSY",
            d.command,
            ms(d.inputs.since_first_busy_ms)
        ),
        D::ShutdownConfirmed(d) => {
            format!("server down {} after the command", ms(Some(d.confirm_ms)))
        }
        D::EscalationWithheld(d) => d.reason.clone(),
        D::HangDetected(d) => format!("no reply for {}", ms(Some(d.silent_ms))),
        D::SignalSent(d) => format!("{} to pid {}", d.signal, d.pid),
        D::Unreachable(d) => d.reason.clone(),
        D::Recovered(d) => format!(
            "{}; incident lasted {}",
            d.how.text(),
            ms(Some(d.duration_ms))
        ),
        D::ActionFailed(ActionFailed::Kill(d)) => {
            format!("{}{}", d.command, cut(&d.reply, REPLY_CHARS))
        }
        D::ActionFailed(ActionFailed::Shutdown { reply, .. }) => cut(reply, REPLY_CHARS),
        D::ActionFailed(ActionFailed::Signal { error, .. }) => error.clone(),
        D::IncidentSuperseded(d) => d.reason.clone(),
        D::TrailFault(_) | D::SlowScript(_) | D::OperatorCommand(_) | D::ApprovalRequested(_) => {
            detail.explanation().unwrap_or_default()
        }
        D::ProbeFault(_)
        | D::NotifyFailed(_)
        | D::WatchdogStarted(_)
        | D::WatchdogStopped(_)
        | D::PolicyLoaded(_)
        | D::PolicyRejected(_) => String::new(),
    }
}
