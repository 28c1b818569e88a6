//! Where each RESP frame ends, found as the bytes go by and without keeping them: the relay
//! (see [`super::relay`]) bounds what a peer may send by the size of one top-level frame, and
//! counts the requests a client sent and the replies that came back.
//!
//! RESP2 and RESP3 alike: simple lines (`+ - : , ( # _`), blobs with a length (`$ ! =`),
//! aggregates (`* ~ >` of n elements, `%` of n pairs), attributes (`|`, which come before the
//! element they describe and are not one themselves), and the streamed forms (`$?` with `;`
//! chunks, `*? ~? %? >?` closed by `.`). A client's inline command (fred sends `HELLO 3` so)
//! is one line.

/// Who writes the stream being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Commands: arrays, or inline lines.
    Client,
    /// Replies and pushes.
    Server,
}

/// A top-level frame that ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its size in bytes.
    pub bytes: usize,
    /// A push (`>`): no request is answered by it.
    pub push: bool,
}

/// Why the stream is not what it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    /// One top-level frame passed the bound (its bytes so far).
    TooLarge(usize),
    /// Aggregates nested deeper than [`MAX_DEPTH`]: a client's recursive decoder would run out
    /// of stack on such a reply (10,000 levels fit in 40 KB), so it is cut as an oversized one.
    TooDeep,
    /// Not RESP (a type byte, a length or an end that cannot be).
    NotResp(String),
}

#[derive(Clone, Copy, Debug)]
enum Open {
    /// Elements still expected; `attribute` when the aggregate is an attribute (its end is not
    /// an element of its parent).
    Count { left: u64, attribute: bool },
    /// A streamed aggregate: elements until `.`.
    Streamed,
    /// A streamed string: `;` chunks until `;0`.
    Chunks,
}

/// How many bytes of a header line are kept: the type byte and a length.
const HEAD: usize = 24;

/// How deep aggregates may nest in one frame. Redis's own replies nest a few levels (CLUSTER
/// SLOTS and FUNCTION STATS three or four, COMMAND DOCS six); busyguard asks nothing deeper.
pub const MAX_DEPTH: usize = 32;

/// The reader of one direction of one connection.
pub struct Frames {
    side: Side,
    /// The bound on one top-level frame.
    limit: usize,
    /// Bytes of the top-level frame read so far, and whether it is a push.
    current: usize,
    push: bool,
    open: Vec<Open>,
    /// Bytes of a blob (or chunk) and its `\r\n` still to come; 0: a header line is read.
    body_left: u64,
    /// The header line so far (its first [`HEAD`] bytes).
    head: [u8; HEAD],
    head_len: usize,
}

impl Frames {
    pub fn new(side: Side, limit: usize) -> Frames {
        Frames {
            side,
            limit,
            current: 0,
            push: false,
            open: Vec::new(),
            body_left: 0,
            head: [0; HEAD],
            head_len: 0,
        }
    }

    /// Read `bytes`; the frames that ended in them are pushed onto `ended`.
    pub fn feed(&mut self, mut bytes: &[u8], ended: &mut Vec<Frame>) -> Result<(), Broken> {
        while !bytes.is_empty() {
            let taken = if self.body_left > 0 {
                let n = (self.body_left.min(bytes.len() as u64)) as usize;
                self.body_left -= n as u64;
                self.count(n)?;
                if self.body_left == 0 && !matches!(self.open.last(), Some(Open::Chunks)) {
                    self.element(ended);
                }
                n
            } else {
                match memchr::memchr(b'\n', bytes) {
                    None => {
                        self.keep_head(bytes);
                        self.count(bytes.len())?;
                        bytes.len()
                    }
                    Some(i) => {
                        self.keep_head(&bytes[..i]);
                        self.count(i + 1)?;
                        self.header(ended)?;
                        i + 1
                    }
                }
            };
            bytes = &bytes[taken..];
        }
        Ok(())
    }

    fn count(&mut self, n: usize) -> Result<(), Broken> {
        self.current += n;
        match self.current > self.limit {
            true => Err(Broken::TooLarge(self.current)),
            false => Ok(()),
        }
    }

    fn keep_head(&mut self, bytes: &[u8]) {
        let room = HEAD - self.head_len;
        let n = room.min(bytes.len());
        self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
        self.head_len += n;
    }

    /// A whole header line was read.
    fn header(&mut self, ended: &mut Vec<Frame>) -> Result<(), Broken> {
        let line = &self.head[..self.head_len];
        let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
        self.head_len = 0;
        let Some((&kind, rest)) = line.split_first() else {
            return self.inline_or(ended, "an empty line");
        };
        // A header at the top level begins the frame's element (an attribute before it
        // included: the element after it sets this again).
        if self.open.is_empty() {
            self.push = kind == b'>';
        }
        let streamed = rest == b"?";
        let length = || -> Result<i64, Broken> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .filter(|n| *n >= -1)
                .ok_or_else(|| Broken::NotResp(format!("`{}` is no length", show(&line))))
        };
        match kind {
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => self.element(ended),
            b'$' | b'!' | b'=' if streamed => self.nest(Open::Chunks)?,
            b'$' | b'!' | b'=' => match length()? {
                -1 => self.element(ended),
                n => self.body_left = n as u64 + 2,
            },
            b';' if matches!(self.open.last(), Some(Open::Chunks)) => match length()? {
                0 => {
                    self.open.pop();
                    self.element(ended);
                }
                n => self.body_left = n as u64 + 2,
            },
            b'*' | b'~' | b'>' | b'%' | b'|' if streamed && kind != b'|' => {
                self.nest(Open::Streamed)?
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = length()?;
                let left = match kind {
                    b'%' | b'|' => n.max(0) as u64 * 2,
                    _ => n.max(0) as u64,
                };
                match (left, kind) {
                    // An empty attribute describes the element that follows: nothing ends.
                    (0, b'|') => {}
                    (0, _) => self.element(ended),
                    _ => self.nest(Open::Count {
                        left,
                        attribute: kind == b'|',
                    })?,
                }
            }
            b'.' if matches!(self.open.last(), Some(Open::Streamed)) => {
                self.open.pop();
                self.element(ended);
            }
            _ => return self.inline_or(ended, "an unknown type byte"),
        }
        Ok(())
    }

    /// An aggregate (or a streamed string) begins, within [`MAX_DEPTH`].
    fn nest(&mut self, open: Open) -> Result<(), Broken> {
        if self.open.len() >= MAX_DEPTH {
            return Err(Broken::TooDeep);
        }
        self.open.push(open);
        Ok(())
    }

    /// A line that is no RESP header: a client's inline command at the top level, else a
    /// broken stream.
    fn inline_or(&mut self, ended: &mut Vec<Frame>, what: &str) -> Result<(), Broken> {
        match (self.side, self.open.is_empty()) {
            (Side::Client, true) => {
                self.element(ended);
                Ok(())
            }
            _ => Err(Broken::NotResp(format!(
                "{what} where a reply should begin"
            ))),
        }
    }

    /// One element ended: its aggregates may end with it, and the top-level frame.
    fn element(&mut self, ended: &mut Vec<Frame>) {
        loop {
            match self.open.last_mut() {
                None => {
                    ended.push(Frame {
                        bytes: self.current,
                        push: self.push,
                    });
                    self.current = 0;
                    self.push = false;
                    return;
                }
                Some(Open::Count { left, attribute }) => {
                    *left -= 1;
                    if *left > 0 {
                        return;
                    }
                    let attribute = *attribute;
                    self.open.pop();
                    if attribute {
                        return;
                    }
                }
                Some(Open::Streamed | Open::Chunks) => return,
            }
        }
    }
}

/// A header line for an error message: printable, short.
fn show(line: &[u8]) -> String {
    crate::model::text::printable(&String::from_utf8_lossy(line)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(side: Side, limit: usize, chunks: &[&[u8]]) -> Result<Vec<Frame>, Broken> {
        let mut f = Frames::new(side, limit);
        let mut ended = Vec::new();
        for c in chunks {
            f.feed(c, &mut ended)?;
        }
        Ok(ended)
    }

    fn sizes(side: Side, stream: &[u8]) -> Vec<usize> {
        // Byte by byte and whole: the same frames.
        let one: Vec<&[u8]> = stream.chunks(1).collect();
        let a = frames(side, usize::MAX, &one).unwrap();
        let b = frames(side, usize::MAX, &[stream]).unwrap();
        assert_eq!(a, b);
        a.iter().map(|f| f.bytes).collect()
    }

    #[test]
    fn every_reply_type_ends_where_it_should() {
        let replies: &[&[u8]] = &[
            b"+PONG\r\n",
            b"-BUSY Redis is busy running a script.\r\n",
            b":42\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"*2\r\n$3\r\nfoo\r\n:1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n_\r\n",
            b"~1\r\n#t\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"!3\r\nERR\r\n",
            b",1.5\r\n",
            b"(12345678901234567890\r\n",
            b"|1\r\n+ttl\r\n:3\r\n$2\r\nok\r\n",
            b"$?\r\n;3\r\nabc\r\n;2\r\nde\r\n;0\r\n",
            b"*?\r\n:1\r\n*1\r\n:2\r\n.\r\n",
            b"%?\r\n+k\r\n+v\r\n.\r\n",
            b"*1\r\n|1\r\n+a\r\n+b\r\n:7\r\n",
        ];
        let stream: Vec<u8> = replies.concat();
        let want: Vec<usize> = replies.iter().map(|r| r.len()).collect();
        assert_eq!(sizes(Side::Server, &stream), want);
    }

    #[test]
    fn a_push_is_told_and_a_client_may_send_inline_commands() {
        let f = frames(Side::Server, 1 << 20, &[b">2\r\n+a\r\n+b\r\n+OK\r\n"]).unwrap();
        assert_eq!(f.iter().map(|f| f.push).collect::<Vec<_>>(), [true, false]);
        assert_eq!(
            sizes(Side::Client, b"HELLO 3 AUTH u p\r\n*1\r\n$4\r\nPING\r\n"),
            [18, 14]
        );
        assert!(matches!(
            frames(Side::Server, 1 << 20, &[b"HELLO 3\r\n"]),
            Err(Broken::NotResp(_))
        ));
    }

    #[test]
    fn a_frame_past_the_bound_is_cut_however_it_is_declared() {
        // A 2 GB bulk string declared: cut at the bound, not at the declaration.
        let mut f = Frames::new(Side::Server, 1024);
        let mut ended = Vec::new();
        f.feed(b"$2000000000\r\n", &mut ended).unwrap();
        let body = vec![b'x'; 4096];
        assert_eq!(f.feed(&body, &mut ended), Err(Broken::TooLarge(13 + 4096)));
        // An endless aggregate of small elements, likewise.
        let mut f = Frames::new(Side::Server, 1024);
        f.feed(b"*1000000000\r\n", &mut ended).unwrap();
        let many = b":1\r\n".repeat(300);
        assert!(matches!(
            f.feed(&many, &mut ended),
            Err(Broken::TooLarge(_))
        ));
        // An endless line too.
        let mut f = Frames::new(Side::Server, 1024);
        assert!(matches!(
            f.feed(&[b'+'; 2048], &mut ended),
            Err(Broken::TooLarge(_))
        ));
        assert!(ended.is_empty());
        // Frames under the bound, one after another, each counted from zero.
        let small = b"$1000\r\n"
            .iter()
            .chain(&[b'y'; 1000])
            .chain(b"\r\n")
            .copied();
        let small: Vec<u8> = small.collect();
        assert_eq!(
            frames(Side::Server, 1024, &[&small, &small, &small])
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn a_reply_nested_past_the_bound_is_cut_and_one_within_it_passes() {
        // 10,000 levels in 40 KB: well inside the byte bound, cut at the depth bound.
        let deep = b"*1\r\n".repeat(10_000);
        assert_eq!(
            frames(Side::Server, 4 << 20, &[&deep]),
            Err(Broken::TooDeep)
        );
        // Streamed and mapped aggregates count alike.
        let deep_maps = b"%1\r\n+k\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(
            frames(Side::Server, 4 << 20, &[&deep_maps]),
            Err(Broken::TooDeep)
        );
        // Exactly the bound: one frame.
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":1\r\n");
        assert_eq!(sizes(Side::Server, &ok), [ok.len()]);
    }

    #[test]
    fn a_length_that_cannot_be_is_not_resp() {
        for bad in [&b"$abc\r\n"[..], b"*-5\r\n", b";3\r\nabc\r\n", b".\r\n"] {
            assert!(
                matches!(
                    frames(Side::Server, 1 << 20, &[bad]),
                    Err(Broken::NotResp(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
