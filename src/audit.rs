//! The audit trail: one JSON object per line, appended, never rewritten, each line carrying the
//! SHA-256 of the previous line's exact bytes (`prev`), so any change, deletion, insertion or
//! reordering breaks the chain at a line `verify` can name.
//!
//! Every record is written with a single `write` of the whole line. A record announcing an action
//! (`kill_sent`, `shutdown_sent`, `signal_sent`) is also `fdatasync`ed before `append` returns,
//! because the action leaves the process right after: the trail must hold it even if the host
//! dies a moment later. Other records are synced at least once a second.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::Event;

/// `prev` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records other than `*_sent` reach the disk at least this often.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The record as serialized: field order is the contract's.
#[derive(Serialize)]
struct Record<'a> {
    ts: String,
    seq: u64,
    instance: Option<&'a str>,
    incident: Option<&'a str>,
    event: &'static str,
    dry_run: bool,
    prev: &'a str,
    detail: &'a Map<String, Value>,
}

/// An open trail, shared by every watchdog.
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Tail>,
}

/// Where the chain stands.
struct Tail {
    file: File,
    seq: u64,
    prev: String,
    last_sync: Instant,
    unsynced: bool,
}

/// What `open` found at the end of an existing file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The `seq` of the last complete line (0 for a new file).
    pub last_seq: u64,
    /// Bytes after the last newline (a record torn by a crash), if any.
    pub torn_bytes: usize,
}

impl AuditLog {
    /// Open (or create) the trail at `path`, resuming the chain from its last complete line.
    /// A torn last line is left in place (the trail is never rewritten) and ended with a newline;
    /// `Resume` reports it so the caller records it.
    pub fn open(path: &Path) -> std::io::Result<(AuditLog, Resume)> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let torn_bytes = bytes.len() - complete;
        let (seq, prev) = match bytes[..complete.saturating_sub(1)]
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
        {
            Some(last) if complete > 0 => {
                let seq = serde_json::from_slice::<Value>(last)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(Value::as_u64))
                    .unwrap_or(0);
                (seq, hex::encode(Sha256::digest(last)))
            }
            _ => (0, GENESIS.to_string()),
        };
        if torn_bytes > 0 {
            file.write_all(b"\n")?;
        }
        let log = AuditLog {
            path: path.to_path_buf(),
            inner: Mutex::new(Tail {
                file,
                seq,
                prev,
                last_sync: Instant::now(),
                unsynced: false,
            }),
        };
        Ok((
            log,
            Resume {
                last_seq: seq,
                torn_bytes,
            },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record; returns its `seq`. Synced to disk before returning when the event
    /// announces an action.
    pub fn append(&self, event: &Event) -> std::io::Result<u64> {
        let mut tail = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let seq = tail.seq + 1;
        let record = Record {
            ts: now_rfc3339(),
            seq,
            instance: event.instance.as_deref(),
            incident: event.incident.as_deref(),
            event: event.kind.name(),
            dry_run: event.dry_run,
            prev: &tail.prev,
            detail: &event.detail,
        };
        let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        let hash = hex::encode(Sha256::digest(&line));
        line.push(b'\n');
        tail.file.write_all(&line)?;
        tail.seq = seq;
        tail.prev = hash;
        tail.unsynced = true;
        if event.kind.announces_an_action() || tail.last_sync.elapsed() >= SYNC_EVERY {
            tail.file.sync_data()?;
            tail.last_sync = Instant::now();
            tail.unsynced = false;
        }
        Ok(seq)
    }

    /// Sync what was written since the last sync (the daemon calls this every second).
    pub fn sync(&self) -> std::io::Result<()> {
        let mut tail = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if tail.unsynced {
            tail.file.sync_data()?;
            tail.last_sync = Instant::now();
            tail.unsynced = false;
        }
        Ok(())
    }
}

/// RFC 3339 UTC with milliseconds: `2026-11-26T22:58:03.123Z`.
pub fn now_rfc3339() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// Why a trail does not verify.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line number of the first bad line.
    pub line: usize,
    pub reason: String,
}

/// Check the chain of one trail file: each line's `prev` is the hash of the line before, and
/// `seq` counts up by one. Returns the number of records.
pub fn verify(path: &Path) -> Result<usize, Broken> {
    let file = File::open(path).map_err(|e| Broken {
        line: 0,
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    let mut prev = GENESIS.to_string();
    let mut last_seq: Option<u64> = None;
    let mut count = 0;
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| Broken {
            line: n,
            reason: e.to_string(),
        })?;
        let bad = |reason: String| Broken { line: n, reason };
        let record: Value =
            serde_json::from_slice(&line).map_err(|e| bad(format!("not a JSON record ({e})")))?;
        let got_prev = record.get("prev").and_then(Value::as_str).unwrap_or("");
        if got_prev != prev {
            return Err(bad(
                "`prev` does not match the hash of the line before: a line was changed, removed, inserted or moved".into(),
            ));
        }
        let seq = record.get("seq").and_then(Value::as_u64).unwrap_or(0);
        if let Some(last) = last_seq
            && seq != last + 1
        {
            return Err(bad(format!("`seq` {seq} does not follow {last}")));
        }
        last_seq = Some(seq);
        prev = hex::encode(Sha256::digest(&line));
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, into_map};

    fn event(kind: EventKind) -> Event {
        Event {
            kind,
            instance: Some("i".into()),
            incident: None,
            dry_run: false,
            detail: into_map(serde_json::json!({"n": 1})),
        }
    }

    #[test]
    fn chain_resumes_after_reopen_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (log, resume) = AuditLog::open(&path).unwrap();
        assert_eq!(resume, Resume::default());
        log.append(&event(EventKind::WatchdogStarted)).unwrap();
        log.append(&event(EventKind::KillSent)).unwrap();
        drop(log);
        let (log, resume) = AuditLog::open(&path).unwrap();
        assert_eq!(resume.last_seq, 2);
        assert_eq!(log.append(&event(EventKind::Killed)).unwrap(), 3);
        assert_eq!(verify(&path), Ok(3));
        let text = std::fs::read_to_string(&path).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["prev"], GENESIS);
        let keys: Vec<&str> = text
            .lines()
            .next()
            .unwrap()
            .split("\":")
            .map(|s| s.rsplit('"').next().unwrap())
            .collect();
        assert_eq!(
            &keys[..8],
            [
                "ts", "seq", "instance", "incident", "event", "dry_run", "prev", "detail"
            ]
        );
    }

    #[test]
    fn a_changed_line_breaks_the_chain_at_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (log, _) = AuditLog::open(&path).unwrap();
        for _ in 0..3 {
            log.append(&event(EventKind::BusyDetected)).unwrap();
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replacen("\"n\":1", "\"n\":2", 1);
        std::fs::write(&path, text).unwrap();
        assert_eq!(verify(&path).unwrap_err().line, 2);
    }
}
