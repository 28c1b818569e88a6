//! A file's lines from the last to the first, read in fixed chunks from the end: finding where a
//! trail stands, and what it says of the recent past, costs the same for a 1 GB trail as for a
//! small one, in time and in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much is read at a time.
const CHUNK: usize = 64 * 1024;

pub struct Backwards {
    file: File,
    /// Where the bytes not yet read end (they are `[0, pos)`).
    pos: u64,
    /// Bytes read but not yet returned; they end where the last returned line began.
    buf: Vec<u8>,
    done: bool,
}

impl Backwards {
    pub fn open(path: &Path) -> std::io::Result<Backwards> {
        let file = File::open(path)?;
        let pos = file.metadata()?.len();
        Ok(Backwards {
            file,
            pos,
            buf: Vec::new(),
            done: false,
        })
    }

    /// The next line towards the start, without its newline. The first call returns what
    /// follows the last newline: empty for a file that ends with one, else a torn line.
    pub fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = memchr::memrchr(b'\n', &self.buf) {
                let line = self.buf.split_off(i + 1);
                self.buf.truncate(i);
                return Ok(Some(line));
            }
            if self.pos == 0 {
                if self.done {
                    return Ok(None);
                }
                self.done = true;
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            let len = CHUNK.min(self.pos as usize);
            self.pos -= len as u64;
            let mut chunk = vec![0; len];
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.file.read_exact(&mut chunk)?;
            chunk.extend_from_slice(&self.buf);
            self.buf = chunk;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, text).unwrap();
        let mut b = Backwards::open(&path).unwrap();
        let mut out = Vec::new();
        while let Some(l) = b.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn lines_come_last_first_with_the_torn_tail_first() {
        assert_eq!(
            all(b"a\nbb\n"),
            [b"".to_vec(), b"bb".to_vec(), b"a".to_vec()]
        );
        assert_eq!(
            all(b"a\nbb\ntor"),
            [b"tor".to_vec(), b"bb".to_vec(), b"a".to_vec()]
        );
        assert_eq!(all(b""), [b"".to_vec()]);
    }

    #[test]
    fn lines_longer_than_a_chunk_come_whole() {
        let long = vec![b'x'; CHUNK * 2 + 7];
        let mut text = b"first\n".to_vec();
        text.extend_from_slice(&long);
        text.extend_from_slice(b"\nlast\n");
        let lines = all(&text);
        assert_eq!(lines[1], b"last");
        assert_eq!(lines[2], long);
        assert_eq!(lines[3], b"first");
        assert_eq!(lines.len(), 4);
    }
}
