//! One line of the audit trail as a value: [`Record`] is what [`super::AuditLog`] writes and
//! what resume, `verify`, `show`, the notifiers and the tests read back. The contract's fields
//! come first, in the contract's order, then busyguard's own (`policy`, `version`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Detail, Event, EventKind};

/// A record of the trail.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub seq: u64,
    /// SHA-256 (hex) of the previous line's exact bytes.
    pub prev: String,
    /// The busyguard version that wrote it.
    pub version: String,
    pub event: Event,
}

/// The line as serialized, borrowing from a [`Record`].
#[derive(Serialize)]
struct Line<'a> {
    ts: &'a str,
    seq: u64,
    instance: Option<&'a str>,
    incident: Option<&'a str>,
    event: EventKind,
    dry_run: bool,
    prev: &'a str,
    detail: Value,
    policy: Option<&'a str>,
    version: &'a str,
}

/// The line as read, before its detail is typed by its kind.
#[derive(Deserialize)]
struct RawLine {
    ts: String,
    seq: u64,
    instance: Option<String>,
    incident: Option<String>,
    event: EventKind,
    #[serde(default)]
    dry_run: bool,
    prev: String,
    #[serde(default)]
    detail: Value,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    version: String,
}

impl Record {
    /// The exact bytes of the line, without its newline.
    pub fn to_line(&self) -> Vec<u8> {
        let e = &self.event;
        let line = Line {
            ts: &self.ts,
            seq: self.seq,
            instance: e.instance.as_deref(),
            incident: e.incident.as_deref(),
            event: e.kind(),
            dry_run: e.dry_run,
            prev: &self.prev,
            detail: e.detail.to_value(),
            policy: e.policy.as_deref(),
            version: &self.version,
        };
        serde_json::to_vec(&line).expect("a record always serializes")
    }

    /// Read one line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Record, serde_json::Error> {
        let raw: RawLine = serde_json::from_slice(line)?;
        Ok(Record {
            ts: raw.ts,
            seq: raw.seq,
            prev: raw.prev,
            version: raw.version,
            event: Event {
                instance: raw.instance,
                incident: raw.incident,
                dry_run: raw.dry_run,
                policy: raw.policy,
                detail: Detail::from_value(raw.event, raw.detail)?,
            },
        })
    }

    pub fn kind(&self) -> EventKind {
        self.event.kind()
    }

    /// `ts` as Unix milliseconds.
    pub fn unix_ms(&self) -> Option<u64> {
        let t =
            time::OffsetDateTime::parse(&self.ts, &time::format_description::well_known::Rfc3339)
                .ok()?;
        u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of trails written before records were typed reads back and is written again
    /// byte for byte.
    #[test]
    fn trails_written_before_typed_records_round_trip_byte_for_byte() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trails");
        let mut kinds = std::collections::BTreeSet::new();
        let mut lines = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let Ok(record) = Record::parse(line.as_bytes()) else {
                    // A torn record, kept as the crash left it.
                    assert!(
                        serde_json::from_str::<Value>(line).is_err(),
                        "{path:?}:{}",
                        n + 1
                    );
                    continue;
                };
                kinds.insert(record.kind().name());
                let again = String::from_utf8(record.to_line()).unwrap();
                assert_eq!(again, line, "{}:{}", path.display(), n + 1);
                lines += 1;
            }
        }
        assert!(lines > 100, "{lines}");
        assert_eq!(kinds.len(), 17, "{kinds:?}");
    }

    /// The shapes the fixtures do not hold, as the code before typed records wrote them.
    #[test]
    fn rarer_shapes_round_trip() {
        for (event, detail) in [
            (
                "action_failed",
                r#"{"action":"shutdown","note":"not retried: a shutdown is sent at most once","reply":"ERR Errors trying to SHUTDOWN. Check logs."}"#,
            ),
            (
                "action_failed",
                r#"{"action":"signal","error":"pid 7 is gone"}"#,
            ),
            (
                "action_failed",
                r#"{"budget_left_ms":null,"command":"SCRIPT KILL","reply":"NOTBUSY No scripts in execution right now.","reply_ms":0,"then":"notify"}"#,
            ),
            (
                "probe_fault",
                r#"{"threshold_ms":0,"warning":"busy-reply-threshold is 0"}"#,
            ),
        ] {
            let line = format!(
                r#"{{"ts":"2026-11-26T22:58:03.123Z","seq":1,"instance":"i","incident":null,"event":"{event}","dry_run":false,"prev":"0","detail":{detail},"policy":"p","version":"0.1.0"}}"#
            );
            let record = Record::parse(line.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(record.to_line()).unwrap(), line);
        }
    }
}
