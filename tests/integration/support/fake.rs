//! A small fake RESP server for the few cases no real server can be made to show on demand: a
//! kill that is read and never answered (a partition, a process frozen right after its BUSY
//! reply), BUSY texts only modules write, and a reply without end. It answers exactly the bytes a test gives it;
//! everything else about busyguard's behaviour is tested against real servers.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake does with one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Write these bytes (a whole RESP reply, `\r\n` included).
    Raw(String),
    /// Read it and never answer.
    Silence,
    /// Write this header, then bytes without end (a 2 GB bulk string declared and streamed)
    /// until the reader goes.
    Endless(String),
}

impl Answer {
    pub fn error(line: &str) -> Answer {
        Answer::Raw(format!("-{line}\r\n"))
    }

    pub fn status(text: &str) -> Answer {
        Answer::Raw(format!("+{text}\r\n"))
    }

    pub fn bulk(text: &str) -> Answer {
        Answer::Raw(format!("${}\r\n{text}\r\n", text.len()))
    }
}

/// Every command received, with its connection's number.
type Seen = Arc<Mutex<Vec<(usize, Vec<String>)>>>;

/// How the fake answers: given the connection's number (0, 1, ...) and the command's words.
pub type Script = dyn Fn(usize, &[String]) -> Answer + Send + Sync;

/// A fake server on a free port of 127.0.0.1.
pub struct FakeRedis {
    pub port: u16,
    /// Every command received, with its connection's number.
    seen: Seen,
}

impl FakeRedis {
    /// Serve with `script`; HELLO, INFO and CONFIG GET get a healthy Redis 7.0 answer unless
    /// the script answers them first (it sees every command).
    pub fn start(
        script: impl Fn(usize, &[String]) -> Option<Answer> + Send + Sync + 'static,
    ) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let script: Arc<Script> =
            Arc::new(move |n, words: &[String]| script(n, words).unwrap_or_else(|| healthy(words)));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let (script, log) = (script.clone(), log.clone());
                std::thread::spawn(move || serve(n, stream, &*script, &log));
            }
        });
        FakeRedis { port, seen }
    }

    /// A policy for this fake, with `rest` appended (YAML).
    pub fn policy(&self, instance: &str, rest: &str) -> String {
        format!(
            "instance: {instance}\nredis:\n  url: redis://127.0.0.1:{}\nprobe:\n  interval: 50ms\n{rest}",
            self.port
        )
    }

    /// Commands received so far, as `(connection, "WORD WORD ...")`.
    pub fn commands(&self) -> Vec<(usize, String)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(n, w)| (*n, w.join(" ")))
            .collect()
    }

    /// How many connections were opened.
    pub fn connections(&self) -> usize {
        self.commands()
            .iter()
            .map(|(n, _)| n + 1)
            .max()
            .unwrap_or(0)
    }
}

/// What a healthy Redis 7.0 answers to the set-up and snapshot commands; `+OK` otherwise.
fn healthy(words: &[String]) -> Answer {
    let first = words
        .first()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    match first.as_str() {
        "HELLO" => Answer::Raw(
            "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
             $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
             $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
                .into(),
        ),
        "INFO" => Answer::bulk(
            "# Server\r\nredis_version:7.0.15\r\nrun_id:fake\r\nprocess_id:1\r\n\
             # Persistence\r\naof_enabled:1\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n",
        ),
        "CONFIG" => Answer::Raw("%1\r\n$20\r\nbusy-reply-threshold\r\n$3\r\n200\r\n".into()),
        "PING" => Answer::status("PONG"),
        _ => Answer::status("OK"),
    }
}

fn serve(n: usize, stream: TcpStream, script: &Script, seen: &Mutex<Vec<(usize, Vec<String>)>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(words) = read_command(&mut reader) {
        seen.lock().unwrap().push((n, words.clone()));
        match script(n, &words) {
            Answer::Raw(bytes) if writer.write_all(bytes.as_bytes()).is_err() => return,
            Answer::Endless(head) => {
                let chunk = vec![b'x'; 64 << 10];
                let _ = writer.write_all(head.as_bytes());
                while writer.write_all(&chunk).is_ok() {}
                return;
            }
            Answer::Raw(_) | Answer::Silence => {}
        }
    }
}

/// One command, as an array of bulk strings or inline (fred sends its `HELLO 3` inline).
fn read_command(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let Some(count) = line.trim_end().strip_prefix('*') else {
        return Some(line.split_whitespace().map(str::to_string).collect());
    };
    let count: usize = count.parse().ok()?;
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0; len + 2];
        reader.read_exact(&mut buf).ok()?;
        buf.truncate(len);
        words.push(String::from_utf8_lossy(&buf).into_owned());
    }
    Some(words)
}
