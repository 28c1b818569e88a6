//! Following the trail as it grows (the notifiers' outbox, `audit show --follow`): the records
//! after a cursor, in order, following the file across rotation (the old file is read to its end through the handle already open, then
//! the new one from its start).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Record;

/// One record read back, with its exact line (for ids derived from it).
#[derive(Clone, Debug)]
pub struct TrailRecord {
    pub seq: u64,
    pub line: String,
    pub record: Record,
}

/// A reader of the trail (not the trail's own chain state, `audit`'s), positioned after the last complete line it returned.
pub struct TrailReader {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    /// (device, inode) of the open file, to notice rotation.
    identity: Option<(u64, u64)>,
    /// Bytes of a line whose end has not been written yet.
    partial: String,
}

impl TrailReader {
    pub fn new(path: &Path) -> TrailReader {
        TrailReader {
            path: path.to_path_buf(),
            reader: None,
            identity: None,
            partial: String::new(),
        }
    }

    /// Every complete record written since the last call (none if there are none yet).
    pub fn read_new(&mut self) -> std::io::Result<Vec<TrailRecord>> {
        if self.reader.is_none() && !self.open_current()? {
            return Ok(Vec::new());
        }
        let mut out = self.drain()?;
        // Nothing more in this file and the path now names another one: rotation.
        let current = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if current.is_some() && current != self.identity {
            self.partial.clear();
            if self.open_current()? {
                out.extend(self.drain()?);
            }
        }
        Ok(out)
    }

    fn open_current(&mut self) -> std::io::Result<bool> {
        match File::open(&self.path) {
            Ok(mut f) => {
                let meta = f.metadata()?;
                f.seek(SeekFrom::Start(0))?;
                self.identity = Some((meta.dev(), meta.ino()));
                self.reader = Some(BufReader::new(f));
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn drain(&mut self) -> std::io::Result<Vec<TrailRecord>> {
        let mut out = Vec::new();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(out);
        };
        loop {
            let mut chunk = String::new();
            if reader.read_line(&mut chunk)? == 0 {
                break;
            }
            self.partial.push_str(&chunk);
            if !self.partial.ends_with('\n') {
                break; // the writer is mid-line; the rest comes with the next read
            }
            let line = std::mem::take(&mut self.partial);
            let line = line.trim_end_matches('\n').to_string();
            if let Ok(record) = Record::parse(line.as_bytes()) {
                out.push(TrailRecord {
                    seq: record.seq,
                    line,
                    record,
                });
            }
        }
        Ok(out)
    }
}
