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

mod history;
mod record;
mod verify;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::event::Event;

pub use history::{History, history};
pub use record::Record;
pub use verify::{Broken, Intact, verify};

/// `prev` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records other than `*_sent` reach the disk at least this often (the daemon calls `sync`).
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

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
            ts: crate::clock::now_rfc3339(),
            seq,
            prev: std::mem::take(&mut tail.prev),
            version: env!("CARGO_PKG_VERSION").to_string(),
            event: event.clone(),
        };
        let mut line = record.to_line();
        let hash = hex::encode(Sha256::digest(&line));
        line.push(b'\n');
        tail.file.write_all(&line)?;
        tail.seq = seq;
        tail.prev = hash;
        tail.unsynced = true;
        // Only an announced action syncs here, on the path to its command. The rest is synced
        // by the daemon's once-a-second `sync`, off this path: a `busy_detected` opening an
        // incident after a quiet second must not pay for a disk flush before its kill.
        if event.kind().announces_an_action() {
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
        .rev()
        .find_map(|l| Some((l, Record::parse(l).ok()?)));
    let (seq, prev) = match (last, carry) {
        (Some((line, record)), _) if complete > 0 => {
            (record.seq, hex::encode(Sha256::digest(line)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::detail::WatchdogStopped;
    use serde_json::Value;

    fn event() -> Event {
        Event {
            instance: Some("i".into()),
            policy: Some("p".into()),
            ..Event::daemon(WatchdogStopped::Daemon {
                reason: "test".into(),
            })
        }
    }

    #[test]
    fn chain_resumes_after_reopen_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (log, resume) = AuditLog::open(&path).unwrap();
        assert_eq!(resume, Resume::default());
        log.append(&event()).unwrap();
        log.append(&event()).unwrap();
        drop(log);
        let (log, resume) = AuditLog::open(&path).unwrap();
        assert_eq!(resume.last_seq, 2);
        assert_eq!(log.append(&event()).unwrap(), 3);
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
        log.append(&event()).unwrap();
        std::fs::rename(&path, &old).unwrap();
        log.reopen().unwrap();
        assert_eq!(log.append(&event()).unwrap(), 2);
        let both = verify(&[old.clone(), path.clone()]).unwrap();
        assert_eq!(both.records, 2);
        assert!(
            verify(&[path]).is_err(),
            "the new file alone does not start at the genesis"
        );
    }
}
