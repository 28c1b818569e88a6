//! The audit trail: one JSON object per line, appended, never rewritten, each line carrying the
//! SHA-256 of the previous line's exact bytes (`prev`), so any change, deletion, insertion or
//! reordering breaks the chain at a line `verify` can name.
//!
//! Every record is written with one `write` of the whole line, on the runtime thread (a page
//! cache copy); nothing here flushes to disk on a watchdog's path. [`AuditLog::sync`] does, off
//! the runtime thread: the watchdog awaits it before a shutdown or a signal leaves (a restarted
//! daemon must never send those twice), runs it right after a kill has left (a kill is harmless
//! and idempotent, and a stalled flush must not hold it back), and the daemon runs it once a
//! second for the rest.
//!
//! Faults. A record that cannot be written (a full disk, an I/O error) is counted as lost; a
//! partial line it left is cut back to the line boundary (or, if even that fails, ended and
//! reported like a crash's torn record), so the chain verifies once space returns; the first
//! record written after that is a `trail_fault` naming what was lost. Every failure is logged,
//! counted (`busyguard_trail_write_failures_total`), and told to the notifiers directly
//! ([`AuditLog::faults`]), since the trail cannot carry it. Each append also checks that the path
//! still names the open file: a deleted or replaced trail is reopened and the chain goes on.
//!
//! Rotation: `reopen` (on SIGHUP) opens the path anew after logrotate moved the old file away
//! (`create`, never `copytruncate`, which would rewrite what was written). The chain and `seq`
//! go on across files: the first record of the new file carries the last hash of the old one,
//! and `verify` checks a sequence of files as one chain. Finding where a file's chain stands
//! reads it backwards from its end ([`backwards`]), whatever its size.

mod backwards;
pub mod follow;
mod history;
mod record;
mod verify;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::event::detail::TrailFault;
use crate::event::{Event, EventKind};

pub use history::history;
pub use record::Record;
pub use verify::{Broken, Intact, verify};

/// `prev` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records are synced at least this often (the daemon calls `sync`).
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// An open trail, shared by every watchdog.
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Tail>,
    /// The last `seq` written: notification tasks wait on it instead of polling the file.
    appended: tokio::sync::watch::Sender<u64>,
    /// The trail's current write failure (`None` once records are written again), for the
    /// notifiers to tell receivers directly.
    faults: tokio::sync::watch::Sender<Option<String>>,
}

/// Where the chain stands, and what could not be written.
struct Tail {
    file: File,
    /// (device, inode) of the open file, to notice a deleted or replaced trail.
    identity: (u64, u64),
    seq: u64,
    prev: String,
    unsynced: bool,
    /// Kinds of the records lost since the last one written.
    lost: Vec<EventKind>,
    /// Bytes of a record cut short by a failed write that could not be cut back.
    torn: usize,
    /// The first error of the current fault.
    error: Option<String>,
    /// The path named another file (or none): reported in the next record.
    reopened: Option<String>,
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
                identity: identity(&file)?,
                file,
                seq,
                prev,
                unsynced: false,
                lost: Vec::new(),
                torn: 0,
                error: None,
                reopened: None,
            }),
            appended: tokio::sync::watch::Sender::new(seq),
            faults: tokio::sync::watch::Sender::new(None),
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

    /// Told when the trail starts failing (the error) and when it works again (`None`).
    pub fn faults(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.faults.subscribe()
    }

    /// Open the path anew (after rotation moved the file away), carrying the chain over.
    pub fn reopen(&self) -> std::io::Result<Resume> {
        let mut tail = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = tail.file.sync_data();
        reopen_tail(&self.path, &mut tail)
    }

    /// Append one record; returns its `seq`. Not synced: see [`AuditLog::sync`].
    pub fn append(&self, event: &Event) -> std::io::Result<u64> {
        let mut tail = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if tail.identity_changed(&self.path) {
            let why = match std::fs::metadata(&self.path) {
                Err(_) => "the trail's file was deleted while busyguard wrote it",
                Ok(_) => "the trail's path names another file than the one busyguard wrote",
            };
            tracing::error!(path = %self.path.display(), "{why}; reopening it, the chain goes on");
            let _ = tail.file.sync_data();
            if reopen_tail(&self.path, &mut tail).is_ok() {
                tail.reopened = Some(why.to_string());
            }
        }
        let result = self
            .write_pending(&mut tail)
            .and_then(|_| self.write(&mut tail, event));
        match &result {
            Ok(seq) => {
                if tail.error.take().is_some() {
                    self.faults.send_replace(None);
                }
                drop(tail);
                self.appended.send_replace(*seq);
            }
            Err(e) => {
                tail.lost.push(event.kind());
                if tail.error.is_none() {
                    let error = e.to_string();
                    tail.error = Some(error.clone());
                    self.faults.send_replace(Some(error));
                }
            }
        }
        result
    }

    /// Before the next record: end a torn line, and say what was lost or reopened.
    fn write_pending(&self, tail: &mut Tail) -> std::io::Result<()> {
        if tail.torn > 0 {
            tail.file.write_all(b"\n")?;
        }
        let fault = if !tail.lost.is_empty() || tail.torn > 0 {
            Some(TrailFault::Gap {
                lost_records: tail.lost.len() as u64,
                lost_events: tail.lost.clone(),
                torn_bytes: tail.torn,
                error: tail.error.clone().unwrap_or_default(),
            })
        } else {
            tail.reopened.clone().map(|why| TrailFault::Reopened {
                path: self.path.display().to_string(),
                why,
            })
        };
        if let Some(fault) = fault {
            self.write(tail, &Event::daemon(fault))?;
            tail.lost.clear();
            tail.torn = 0;
            tail.reopened = None;
        }
        Ok(())
    }

    /// Write one record as one line. A failed write leaves no partial line if it can help it.
    fn write(&self, tail: &mut Tail, event: &Event) -> std::io::Result<u64> {
        let seq = tail.seq + 1;
        let record = Record {
            ts: crate::model::clock::now_rfc3339(),
            seq,
            prev: tail.prev.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            event: event.clone(),
        };
        let mut line = record.to_line();
        let hash = hex::encode(Sha256::digest(&line));
        line.push(b'\n');
        let before = tail.file.metadata().map(|m| m.len());
        let mut written = 0;
        while written < line.len() {
            match tail.file.write(&line[written..]) {
                Ok(0) => {
                    return Err(tail.cut_back(
                        before,
                        written,
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(tail.cut_back(before, written, e)),
            }
        }
        tail.seq = seq;
        tail.prev = hash;
        tail.unsynced = true;
        Ok(seq)
    }

    /// Flush what was written since the last flush. The `fdatasync` runs on a duplicate of the
    /// descriptor outside the lock, so an append never waits behind it; call it off the runtime
    /// thread (`spawn_blocking`).
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

impl Tail {
    /// The open file is no longer the one the path names.
    fn identity_changed(&self, path: &Path) -> bool {
        match std::fs::metadata(path) {
            Ok(m) => (m.dev(), m.ino()) != self.identity,
            Err(_) => true,
        }
    }

    /// After a failed write of `written` bytes: cut the file back to its length `before`, so the
    /// partial line is gone; if that fails, remember the torn bytes (ended and reported by the
    /// next record). Returns the write's error.
    fn cut_back(
        &mut self,
        before: std::io::Result<u64>,
        written: usize,
        error: std::io::Error,
    ) -> std::io::Error {
        if written == 0 {
            return error;
        }
        let cut = before.and_then(|len| self.file.set_len(len));
        if cut.is_err() {
            self.torn += written;
        }
        error
    }
}

fn identity(file: &File) -> std::io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// Open the path anew, carrying `tail`'s chain into it.
fn reopen_tail(path: &Path, tail: &mut Tail) -> std::io::Result<Resume> {
    let (file, seq, prev, resume) = open_tail(path, Some((tail.seq, tail.prev.clone())))?;
    tail.identity = identity(&file)?;
    tail.file = file;
    tail.seq = seq;
    tail.prev = prev;
    Ok(resume)
}

/// The `seq` of the newest record of the trail at `path` written before `unix_ms` (0 if none),
/// read backwards from the end: where a notifier whose cursor cannot be trusted starts again.
pub fn last_seq_before(path: &Path, unix_ms: u64) -> std::io::Result<u64> {
    let mut lines = backwards::Backwards::open(path)?;
    while let Some(line) = lines.next_line()? {
        if let Ok(record) = Record::parse(&line)
            && record.unix_ms().is_some_and(|t| t < unix_ms)
        {
            return Ok(record.seq);
        }
    }
    Ok(0)
}

/// The `slow_script` warnings of `instance` since `unix_ms`, by script: (script, how often,
/// longest ms), most frequent first. Read backwards from the end of the trail.
pub fn slow_scripts_since(
    path: &Path,
    instance: &str,
    unix_ms: u64,
) -> std::io::Result<Vec<(String, u32, u64)>> {
    let mut lines = backwards::Backwards::open(path)?;
    let mut by_script: Vec<(String, u32, u64)> = Vec::new();
    while let Some(line) = lines.next_line()? {
        let Ok(record) = Record::parse(&line) else {
            continue;
        };
        if record.unix_ms().is_some_and(|t| t < unix_ms) {
            break;
        }
        let crate::event::Detail::SlowScript(s) = &record.event.detail else {
            continue;
        };
        if record.event.instance.as_deref() != Some(instance) {
            continue;
        }
        match by_script.iter_mut().find(|(name, _, _)| *name == s.script) {
            Some(entry) => {
                entry.1 += 1 + s.repeats_since_last;
                entry.2 = entry.2.max(s.duration_ms);
            }
            None => by_script.push((s.script.clone(), 1 + s.repeats_since_last, s.duration_ms)),
        }
    }
    by_script.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
    Ok(by_script)
}

/// Open `path` for appending and find where its chain stands, reading backwards from its end.
/// An empty (new) file continues `carry` (the chain of the file it replaces), or starts at the
/// genesis.
fn open_tail(
    path: &Path,
    carry: Option<(u64, String)>,
) -> std::io::Result<(File, u64, String, Resume)> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let mut lines = backwards::Backwards::open(path)?;
    let torn_bytes = lines.next_line()?.map_or(0, |l| l.len());
    let mut last = None;
    while let Some(line) = lines.next_line()? {
        if let Ok(record) = Record::parse(&line) {
            last = Some((record.seq, hex::encode(Sha256::digest(&line))));
            break;
        }
    }
    let (seq, prev) = match (last, carry) {
        (Some(found), _) => found,
        (None, Some(carried)) => carried,
        (None, None) => (0, GENESIS.to_string()),
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
