//! The audit trail: one JSON object per line, appended, never rewritten, each line carrying the
//! SHA-256 of the previous line's exact bytes (`prev`), so any change, deletion, insertion or
//! reordering breaks the chain at a line `verify` can name.
//!
//! Every record is written with a single `write` of the whole line. A record announcing an action
//! (`kill_sent`, `shutdown_sent`, `signal_sent`) is also `fdatasync`ed before `append` returns,
//! because the action leaves the process right after: the trail must hold it even if the host
//! dies a moment later. Other records are synced at least once a second by the daemon's
//! [`AuditLog::sync`], which runs off the probe path.
//!
//! Rotation: `reopen` (on SIGHUP) opens the path anew after logrotate moved the old file away
//! (`create`, never `copytruncate`, which would rewrite what was written). The chain and `seq`
//! go on across files: the first record of the new file carries the last hash of the old one,
//! and `verify` checks a sequence of files as one chain.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::Event;

/// `prev` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records other than `*_sent` reach the disk at least this often (the daemon calls `sync`).
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The record as serialized: the contract's fields in its order, then busyguard's own.
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
    /// SHA-256 of the policy file the record was decided under.
    policy: Option<&'a str>,
    /// busyguard's version.
    version: &'static str,
}

/// An open trail, shared by every watchdog.
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Tail>,
    /// The last `seq` written: notification tasks wait on it instead of polling the file.
    appended: tokio::sync::watch::Sender<u64>,
}

/// Where the chain stands.
struct Tail {
    file: File,
    seq: u64,
    prev: String,
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
    /// `Resume` reports it, and the caller's next record (`watchdog_started`) must say so.
    pub fn open(path: &Path) -> std::io::Result<(AuditLog, Resume)> {
        let (file, seq, prev, resume) = open_tail(path, None)?;
        let log = AuditLog {
            path: path.to_path_buf(),
            inner: Mutex::new(Tail {
                file,
                seq,
                prev,
                unsynced: false,
            }),
            appended: tokio::sync::watch::Sender::new(seq),
        };
        Ok((log, resume))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `seq` of the last record written.
    pub fn last_seq(&self) -> u64 {
        *self.appended.borrow()
    }

    /// Told the `seq` of every record appended from now on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Open the path anew (after rotation moved the file away), carrying the chain over.
    pub fn reopen(&self) -> std::io::Result<Resume> {
        let mut tail = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        tail.file.sync_data()?;
        let (file, seq, prev, resume) = open_tail(&self.path, Some((tail.seq, tail.prev.clone())))?;
        tail.file = file;
        tail.seq = seq;
        tail.prev = prev;
        Ok(resume)
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
            policy: event.policy.as_deref(),
            version: env!("CARGO_PKG_VERSION"),
        };
        let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        let hash = hex::encode(Sha256::digest(&line));
        line.push(b'\n');
        tail.file.write_all(&line)?;
        tail.seq = seq;
        tail.prev = hash;
        tail.unsynced = true;
        // Only an announced action syncs here, on the path to its command. The rest is synced
        // by the daemon's once-a-second `sync`, off this path: a `busy_detected` opening an
        // incident after a quiet second must not pay for a disk flush before its kill.
        if event.kind.announces_an_action() {
            tail.file.sync_data()?;
            tail.unsynced = false;
        }
        drop(tail);
        self.appended.send_replace(seq);
        Ok(seq)
    }

    /// Sync what was written since the last sync (the daemon calls this every second). The
    /// `fdatasync` runs on a duplicate of the descriptor outside the lock, so an append (a
    /// `kill_sent` about to leave) never waits behind it.
    pub fn sync(&self) -> std::io::Result<()> {
        let file = {
            let mut tail = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if !tail.unsynced {
                return Ok(());
            }
            tail.unsynced = false;
            tail.file.try_clone()?
        };
        file.sync_data()
    }
}

/// Open `path` for appending and find where its chain stands. An empty (new) file continues
/// `carry` (the chain of the file it replaces), or starts at the genesis.
fn open_tail(
    path: &Path,
    carry: Option<(u64, String)>,
) -> std::io::Result<(File, u64, String, Resume)> {
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
    let last = bytes[..complete.saturating_sub(1)]
        .split(|b| *b == b'\n')
        .rfind(|l| serde_json::from_slice::<Value>(l).is_ok());
    let (seq, prev) = match (last, carry) {
        (Some(last), _) if complete > 0 => {
            let seq = serde_json::from_slice::<Value>(last)
                .ok()
                .and_then(|v| v["seq"].as_u64())
                .unwrap_or(0);
            (seq, hex::encode(Sha256::digest(last)))
        }
        (_, Some(carried)) => carried,
        _ => (0, GENESIS.to_string()),
    };
    if torn_bytes > 0 {
        file.write_all(b"\n")?;
    }
    Ok((
        file,
        seq,
        prev,
        Resume {
            last_seq: seq,
            torn_bytes,
        },
    ))
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

/// A record's `ts` as Unix milliseconds.
pub fn ts_unix_ms(record: &Value) -> Option<u64> {
    let ts = record["ts"].as_str()?;
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Why a trail does not verify.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken {
    pub file: PathBuf,
    /// 1-based line number of the first bad line in `file`.
    pub line: usize,
    pub reason: String,
}

/// What an intact trail holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Intact {
    pub records: usize,
    /// Torn records (a crash mid-write) that a following `watchdog_started` reported.
    pub torn: usize,
    /// Hash of the last line: anchor it elsewhere to protect the end of the trail too.
    pub head: String,
}

/// One parsed line of a trail.
struct Line {
    file: usize,
    number: usize,
    hash: String,
    record: Option<Value>,
    len: usize,
}

/// Check the chain of one or more trail files, oldest first, as one chain: each line's `prev`
/// is the hash of the line before and `seq` counts up by one. Names the first bad line: for a
/// changed line, that line (its hash no longer matches the next line's `prev`); for a deleted
/// one, the line after the gap; for an inserted one, the insertion; for lines moved, the first
/// line out of place.
pub fn verify(files: &[PathBuf]) -> Result<Intact, Broken> {
    let mut lines: Vec<Line> = Vec::new();
    for (f, path) in files.iter().enumerate() {
        let file = File::open(path).map_err(|e| Broken {
            file: path.clone(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        for (i, bytes) in BufReader::new(file).split(b'\n').enumerate() {
            let bytes = bytes.map_err(|e| Broken {
                file: path.clone(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            lines.push(Line {
                file: f,
                number: i + 1,
                hash: hex::encode(Sha256::digest(&bytes)),
                record: serde_json::from_slice(&bytes).ok(),
                len: bytes.len(),
            });
        }
    }
    let broken = |l: &Line, reason: String| Broken {
        file: files[l.file].clone(),
        line: l.number,
        reason,
    };
    let mut prev = GENESIS.to_string();
    let mut last_seq: Option<u64> = None;
    let mut last_good: Option<usize> = None;
    let (mut records, mut torn) = (0, 0);
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let Some(record) = &line.record else {
            // A torn record is accepted only when the next record reports it.
            let reported = lines
                .get(i + 1)
                .and_then(|n| n.record.as_ref())
                .is_some_and(|n| {
                    n["event"] == "watchdog_started"
                        && n["detail"]["torn_tail_bytes"].as_u64() == Some(line.len as u64)
                });
            if !reported {
                return Err(broken(
                    line,
                    "not a JSON record, and no `watchdog_started` after it reports it torn".into(),
                ));
            }
            torn += 1;
            i += 1;
            continue;
        };
        let seq = record["seq"].as_u64().unwrap_or(0);
        let expected = last_seq.map_or(seq, |s| s + 1);
        let prev_ok = record["prev"].as_str() == Some(prev.as_str());
        if !prev_ok || seq != expected {
            let before = last_good.map(|j| &lines[j]);
            let moved = lines[i + 1..]
                .iter()
                .any(|l| l.record.as_ref().and_then(|r| r["seq"].as_u64()) == Some(expected));
            // The line after an inserted one still chains to the line before the insertion.
            let inserted = !prev_ok
                && lines
                    .get(i + 1)
                    .and_then(|n| n.record.as_ref())
                    .and_then(|r| r["prev"].as_str())
                    == Some(prev.as_str());
            if inserted && !(seq > expected && moved) {
                return Err(broken(
                    line,
                    "this line was inserted: the next line chains to the one before it".into(),
                ));
            }
            return Err(match (prev_ok, seq.cmp(&expected), before) {
                (false, std::cmp::Ordering::Equal, Some(b)) => broken(
                    b,
                    "this line was changed: its hash no longer matches the next line's `prev`"
                        .into(),
                ),
                (_, std::cmp::Ordering::Less, Some(b)) if seq + 1 == expected => broken(
                    b,
                    "this line was inserted: the next line carries the same `seq`".into(),
                ),
                (_, std::cmp::Ordering::Greater, _) if moved => broken(
                    line,
                    format!("lines were moved: `seq` {seq} stands where {expected} belongs"),
                ),
                (_, std::cmp::Ordering::Greater, _) => broken(
                    line,
                    format!(
                        "a record is missing before this line: `seq` {seq} follows {}",
                        expected - 1
                    ),
                ),
                _ => broken(
                    line,
                    format!("the chain breaks here (`seq` {seq}, expected {expected})"),
                ),
            });
        }
        prev = line.hash.clone();
        last_seq = Some(seq);
        last_good = Some(i);
        records += 1;
        i += 1;
    }
    Ok(Intact {
        records,
        torn,
        head: prev,
    })
}

/// What the trail says of one instance: the incident still open when it was last written, and
/// when shutdowns were decided (for `limits` across a restart).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct History {
    /// The records of the last incident that has no `recovered`, in order.
    pub open_incident: Vec<Value>,
    /// Unix ms of every `shutdown_sent`.
    pub shutdowns: Vec<u64>,
}

/// Read the trail at `path` back into each instance's [`History`].
pub fn history(path: &Path) -> std::io::Result<HashMap<String, History>> {
    let mut out: HashMap<String, History> = HashMap::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(file).lines() {
        let Ok(record) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        let Some(instance) = record["instance"].as_str() else {
            continue;
        };
        let h = out.entry(instance.to_string()).or_default();
        if record["event"] == "shutdown_sent"
            && let Some(t) = ts_unix_ms(&record)
        {
            h.shutdowns.push(t);
        }
        let Some(incident) = record["incident"].as_str() else {
            continue;
        };
        let same = h.open_incident.first().map(|r| r["incident"].as_str()) == Some(Some(incident));
        if !same {
            h.open_incident.clear();
        }
        if record["event"] == "recovered" {
            h.open_incident.clear();
        } else if !matches!(
            record["event"].as_str(),
            Some("watchdog_stopped" | "watchdog_started")
        ) {
            h.open_incident.push(record);
        }
    }
    Ok(out)
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
            policy: Some("p".into()),
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
        assert_eq!(verify(std::slice::from_ref(&path)).unwrap().records, 3);
        let text = std::fs::read_to_string(&path).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["policy"], "p");
        assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));
        let keys: Vec<&str> = first
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "ts", "seq", "instance", "incident", "event", "dry_run", "prev", "detail",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert!(text.starts_with("{\"ts\":"), "contract field order");
    }

    #[test]
    fn rotation_continues_the_chain_into_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let old = dir.path().join("audit.jsonl.1");
        let (log, _) = AuditLog::open(&path).unwrap();
        log.append(&event(EventKind::BusyDetected)).unwrap();
        std::fs::rename(&path, &old).unwrap();
        log.reopen().unwrap();
        assert_eq!(log.append(&event(EventKind::Recovered)).unwrap(), 2);
        let both = verify(&[old.clone(), path.clone()]).unwrap();
        assert_eq!(both.records, 2);
        assert!(
            verify(&[path]).is_err(),
            "the new file alone does not start at the genesis"
        );
    }
}
