//! `busyguard audit show`: the incidents of a trail as timelines an operator can paste into a
//! post-mortem: relative times, actions, outcomes, time to recovery.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Print every incident (or only `only`) of the trail at `path`.
pub fn show(path: &Path, only: Option<&str>, out: &mut impl Write) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    // Incidents in order of first appearance, each with its records.
    let mut incidents: Vec<(String, Vec<Value>)> = Vec::new();
    for line in BufReader::new(file).lines() {
        let Ok(record) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        let Some(id) = record["incident"].as_str().map(str::to_string) else {
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
        let start = records.first().and_then(timestamp);
        let instance = records[0]["instance"].as_str().unwrap_or("-");
        let first_ts = records[0]["ts"].as_str().unwrap_or("");
        writeln!(out, "incident {id}  instance {instance}  opened {first_ts}")?;
        for r in records {
            let rel = match (start, timestamp(r)) {
                (Some(a), Some(b)) => format!("+{}ms", (b - a).whole_milliseconds()),
                _ => "?".into(),
            };
            let dry = if r["dry_run"] == true {
                " (dry run: not sent)"
            } else {
                ""
            };
            writeln!(
                out,
                "  {rel:>9}  {:<19} {}{dry}",
                r["event"].as_str().unwrap_or("?"),
                summary(r)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn timestamp(record: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(record["ts"].as_str()?, &Rfc3339).ok()
}

/// The one line that says what a record means.
fn summary(r: &Value) -> String {
    let d = &r["detail"];
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    let ms = |k: &str| d[k].as_u64().map_or(String::new(), |v| format!("{v}ms"));
    match r["event"].as_str().unwrap_or("") {
        "busy_detected" => format!(
            "{} busy, threshold {}: {}",
            s("busy_kind"),
            ms("threshold_ms"),
            short(&s("reply"))
        ),
        "kill_sent" => s("command"),
        "killed" => format!(
            "{} took effect, {} after the first BUSY",
            s("command"),
            ms("since_first_busy_ms")
        ),
        "unkillable" => format!(
            "{}; budget left {}, then {}",
            short(&s("reply")),
            ms("budget_left_ms"),
            s("then")
        ),
        "shutdown_sent" => format!(
            "{} after {} of BUSY",
            s("command"),
            ms("since_first_busy_ms")
        ),
        "shutdown_confirmed" => format!("server down {} after the command", ms("confirm_ms")),
        "escalation_withheld" => s("reason"),
        "hang_detected" => format!("no reply for {}", ms("silent_ms")),
        "signal_sent" => format!("{} to pid {}", s("signal"), d["pid"]),
        "unreachable" => s("reason"),
        "recovered" => format!("{}; incident lasted {}", s("how"), ms("duration_ms")),
        "action_failed" => format!("{}{}", s("command"), short(&s("reply"))),
        _ => String::new(),
    }
}

fn short(text: &str) -> String {
    const MAX: usize = 70;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}
