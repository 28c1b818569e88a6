//! `busyguard audit verify`: the hash chain of one or more trail files, checked as one chain,
//! naming the first bad line and what happened to it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{GENESIS, Record};
use crate::event::Detail;
use crate::event::detail::{TrailFault, WatchdogStarted};

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
    record: Option<Record>,
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
                record: Record::parse(&bytes).ok(),
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
                .is_some_and(|n| match &n.event.detail {
                    Detail::WatchdogStarted(WatchdogStarted::Daemon {
                        torn_tail_bytes, ..
                    }) => *torn_tail_bytes == line.len,
                    Detail::TrailFault(TrailFault::Gap { torn_bytes, .. }) => {
                        *torn_bytes == line.len
                    }
                    _ => false,
                });
            if !reported {
                return Err(broken(
                    line,
                    "not a busyguard record, and no `watchdog_started` or `trail_fault` after it reports it torn"
                        .into(),
                ));
            }
            torn += 1;
            i += 1;
            continue;
        };
        let seq = record.seq;
        let expected = last_seq.map_or(seq, |s| s + 1);
        let prev_ok = record.prev == prev;
        if !prev_ok || seq != expected {
            let before = last_good.map(|j| &lines[j]);
            let moved = lines[i + 1..]
                .iter()
                .any(|l| l.record.as_ref().map(|r| r.seq) == Some(expected));
            // The line after an inserted one still chains to the line before the insertion.
            let inserted = !prev_ok
                && lines
                    .get(i + 1)
                    .and_then(|n| n.record.as_ref())
                    .is_some_and(|r| r.prev == prev);
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
