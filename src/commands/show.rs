//! `busyguard audit show`: the incidents of a trail as timelines an operator can paste into a
//! post-mortem (relative times, actions, outcomes, time to recovery), as one line each
//! (`--summary`) or as JSON (`--json`), or every record of any kind a line each (`--all`),
//! filtered by instance, incident or time, and followed live (`--follow`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use crate::audit::Record;
use crate::audit::follow::TrailReader;
use crate::event::Detail;
use crate::event::detail::ActionFailed;
use crate::model::text::cut;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How much of a server's reply a timeline line shows.
const REPLY_CHARS: usize = 70;

/// What `audit show` prints, and of what.
#[derive(Clone, Debug)]
pub struct ShowOptions {
    /// Trail files, oldest first (rotated ones before the current).
    pub files: Vec<PathBuf>,
    pub incident: Option<String>,
    pub instance: Option<String>,
    /// Only incidents opened at or after this Unix time (ms).
    pub since_unix_ms: Option<u64>,
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Each incident as a timeline.
    Timeline,
    /// One line per incident.
    Summary,
    /// One JSON object per incident, with its records as the trail holds them.
    Json,
    /// Every record, one line each: incidents, slow scripts, operator commands, rejected
    /// policies, the daemon's own.
    All,
}

/// What `show` found: whether it printed anything, and the instances the files name (so an
/// instance asked for and never seen is said to be unknown, not "no incidents").
#[derive(Debug, Default)]
pub struct Shown {
    pub printed: bool,
    pub instances: std::collections::BTreeSet<String>,
}

/// `--since`: a duration back from now (`2h`) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<u64, String> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(crate::model::clock::unix_ms().saturating_sub(d.as_millis() as u64));
    }
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("`{text}` is neither a duration (2h) nor an RFC 3339 time"))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())
}

impl ShowOptions {
    fn wants(&self, record: &Record) -> bool {
        self.instance
            .as_deref()
            .is_none_or(|i| record.event.instance.as_deref() == Some(i))
            && self
                .incident
                .as_deref()
                .is_none_or(|i| record.event.incident.as_deref() == Some(i))
    }
}

/// One record as a line of `--all` and `--follow`.
fn record_line(record: &Record) -> String {
    format!(
        "{}  {:<12} {:<28} {:<20} {}",
        record.ts,
        record.event.instance.as_deref().unwrap_or("(daemon)"),
        record.event.incident.as_deref().unwrap_or("-"),
        record.kind().name(),
        summary(&record.event.detail)
    )
}

/// Print the incidents of the files (or, `--all`, every record).
pub fn show(opts: &ShowOptions, out: &mut impl Write) -> std::io::Result<Shown> {
    let mut shown = Shown::default();
    // Incidents in order of first appearance, each with its records.
    let mut incidents: Vec<(String, Vec<Record>)> = Vec::new();
    for path in &opts.files {
        let file = std::fs::File::open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        for line in BufReader::new(file).split(b'\n') {
            let Ok(record) = Record::parse(&line?) else {
                continue;
            };
            if let Some(i) = record
                .event
                .instance
                .as_ref()
                .filter(|i| !shown.instances.contains(*i))
            {
                shown.instances.insert(i.clone());
            }
            if opts.format == Format::All {
                let recent = opts
                    .since_unix_ms
                    .is_none_or(|since| record.unix_ms().is_some_and(|t| t >= since));
                if recent && opts.wants(&record) {
                    writeln!(out, "{}", record_line(&record))?;
                    shown.printed = true;
                }
                continue;
            }
            let Some(id) = record.event.incident.clone() else {
                continue;
            };
            if !opts.wants(&record) {
                continue;
            }
            match incidents.iter_mut().find(|(i, _)| *i == id) {
                Some((_, records)) => records.push(record),
                None => incidents.push((id, vec![record])),
            }
        }
    }
    if let Some(since) = opts.since_unix_ms {
        incidents.retain(|(_, records)| records[0].unix_ms().is_some_and(|t| t >= since));
    }
    if opts.format == Format::All {
        return Ok(shown);
    }
    if incidents.is_empty() && opts.format != Format::Json {
        writeln!(out, "no incidents")?;
    }
    for (id, records) in &incidents {
        match opts.format {
            Format::Timeline | Format::All => timeline(id, records, out)?,
            Format::Summary => writeln!(out, "{}", summary_line(id, records))?,
            Format::Json => {
                let records: Vec<serde_json::Value> = records
                    .iter()
                    .filter_map(|r| serde_json::from_slice(&r.to_line()).ok())
                    .collect();
                let first = &records[0];
                let line = serde_json::json!({
                    "incident": id,
                    "instance": first["instance"],
                    "opened": first["ts"],
                    "records": records,
                });
                writeln!(out, "{line}")?;
            }
        }
    }
    shown.printed = !incidents.is_empty();
    Ok(shown)
}

/// Where `--follow` starts: the end of the last file, taken before the history is read (a
/// record written in between is printed twice rather than never).
pub fn start_following(opts: &ShowOptions) -> std::io::Result<TrailReader> {
    let current = opts.files.last().cloned().unwrap_or_default();
    let mut reader = TrailReader::new(&current);
    reader.read_new()?;
    Ok(reader)
}

/// After the history: every new record of interest, as the daemon writes it (the last file is
/// followed across rotation), until the process is stopped.
pub fn follow(
    opts: &ShowOptions,
    mut reader: TrailReader,
    out: &mut impl Write,
) -> std::io::Result<()> {
    loop {
        for r in reader.read_new()? {
            let any_record = opts.format == Format::All;
            if !opts.wants(&r.record) || (r.record.event.incident.is_none() && !any_record) {
                continue;
            }
            match opts.format {
                Format::Json => writeln!(out, "{}", r.line)?,
                _ => writeln!(out, "{}", record_line(&r.record))?,
            }
            out.flush()?;
        }
        // A terminal tail: the trail is a file, read again a few times a second.
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn timeline(id: &str, records: &[Record], out: &mut impl Write) -> std::io::Result<()> {
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
    writeln!(out)
}

/// One line: when, which instance, what happened, how it ended, how long it lasted.
fn summary_line(id: &str, records: &[Record]) -> String {
    let first = &records[0];
    let instance = first.event.instance.as_deref().unwrap_or("-");
    let cause = records
        .iter()
        .find_map(|r| match &r.event.detail {
            Detail::BusyDetected(d) => Some(format!("{} busy", d.busy_kind.name())),
            Detail::HangDetected(_) => Some("hang".to_string()),
            Detail::Unreachable(_) => Some("unreachable".to_string()),
            _ => None,
        })
        .unwrap_or_else(|| first.kind().name().to_string());
    let actions: Vec<String> = records
        .iter()
        .filter(|r| {
            r.kind().announces_an_action()
                || r.kind() == crate::event::EventKind::EscalationWithheld
        })
        // A dry-run decision is marked: nothing of it was sent.
        .map(|r| match r.event.dry_run {
            true => format!("{} (dry run)", r.kind().name()),
            false => r.kind().name().to_string(),
        })
        .collect();
    let end = records.iter().rev().find_map(|r| match &r.event.detail {
        Detail::Recovered(d) => Some(format!(
            "{} after {}",
            d.how.text(),
            crate::model::duration::human_ms(d.duration_ms)
        )),
        Detail::IncidentSuperseded(_) => Some("superseded".to_string()),
        _ => None,
    });
    format!(
        "{}  {instance}  {id}  {cause}  [{}]  {}",
        first.ts,
        actions.join(", "),
        end.unwrap_or_else(|| "open".into())
    )
}

/// A duration for people (`850ms`, `10s`, `1m37s`); empty when unknown.
fn ms(v: Option<u64>) -> String {
    v.map_or(String::new(), crate::model::duration::human_ms)
}

/// The one line that says what a record means.
pub(crate) fn summary(detail: &Detail) -> String {
    // Server text (BUSY and kill replies, SLOWLOG arguments) may hold escape sequences.
    crate::model::text::printable(&summary_raw(detail)).into_owned()
}

fn summary_raw(detail: &Detail) -> String {
    use Detail as D;
    match detail {
        D::BusyDetected(d) => format!(
            "{} busy, threshold {}: {}",
            d.busy_kind.name(),
            d.inputs
                .threshold_ms
                .map_or("unknown".into(), |t| format!("{t}ms")),
            cut(&d.reply, REPLY_CHARS)
        ),
        D::KillSent(d) => match &d.inputs.policy.script_rule {
            Some(rule) => format!("{} (script rule `{rule}`)", d.command),
            None => d.command.clone(),
        },
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
        D::RoleChanged(d) => format!("{} serves {} as the primary: {}", d.by, d.primary, d.note),
        D::FailoverRequested(d) => format!(
            "{} ({}) after {} of BUSY; {} replica(s) in sync; fallback {}",
            d.request,
            d.sent_to,
            ms(d.inputs.since_first_busy_ms),
            d.replicas.len(),
            d.fallback.name()
        ),
        D::FailoverCompleted(d) => format!(
            "{} is the primary now, {} after the request (seen by {})",
            d.new_primary,
            ms(Some(d.elapsed_ms)),
            d.seen_by
        ),
        D::FailoverFailed(d) => format!("{}; fallback {}", d.reason, d.fallback.name()),
        D::SplitBrain(d) => format!(
            "{} (after {} took over): {}",
            d.why,
            d.new_primary,
            d.fence
                .clone()
                .or_else(|| d.not_fenced.as_ref().map(|w| format!("not fenced: {w}")))
                .unwrap_or_default()
        ),
        D::TrailFault(_)
        | D::SlowScript(_)
        | D::OperatorCommand(_)
        | D::ApprovalRequested(_)
        | D::ProbeFault(_) => detail.explanation().unwrap_or_default(),
        D::NotifyFailed(_)
        | D::WatchdogStarted(_)
        | D::WatchdogStopped(_)
        | D::PolicyLoaded(_)
        | D::PolicyRejected(_) => String::new(),
    }
}
