//! A "replica" any client can announce (#27): it registers with a real primary the way an
//! attacker allowed REPLCONF and PSYNC would (`REPLCONF listening-port`, `PSYNC ? -1`, then
//! `REPLCONF ACK` claiming to be caught up), so the primary's INFO lists it as an online
//! replica; on its announced port a [`FakeRedis`] answers as the primary that took over (ROLE
//! `master`, the real primary's replication ID as its `master_replid2`) and counts every
//! connection busyguard would open to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::RedisServer;
use super::fake::{Answer, FakeRedis};

pub struct AnnouncedReplica {
    /// Where it claims to listen, and what it answers there.
    pub listener: FakeRedis,
    /// The primary's replication ID, learned from `+FULLRESYNC`.
    pub replid: String,
    _link: TcpStream,
}

impl AnnouncedReplica {
    /// Register with `primary` (over TCP) as a replica at the fake's port.
    pub fn register(primary: &RedisServer) -> AnnouncedReplica {
        let replid: Arc<Mutex<String>> = Arc::default();
        let told = replid.clone();
        let listener = FakeRedis::start(move |_, words| {
            let first = words.first()?.to_ascii_uppercase();
            let replid = told.lock().unwrap().clone();
            match first.as_str() {
                "ROLE" => Some(Answer::Raw(
                    "*3\r\n$6\r\nmaster\r\n:99999999\r\n*0\r\n".into(),
                )),
                "INFO" => Some(Answer::bulk(&format!(
                    "# Server\r\nredis_version:7.0.15\r\nrun_id:{}\r\n# Replication\r\nrole:master\r\nmaster_replid:{}\r\nmaster_replid2:{replid}\r\nmaster_repl_offset:99999999\r\n",
                    "f".repeat(40),
                    "e".repeat(40)
                ))),
                _ => None,
            }
        });
        let mut link = TcpStream::connect(("127.0.0.1", primary.port)).unwrap();
        link.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(link.try_clone().unwrap());
        let mut ask = |words: &[&str]| {
            let mut out = format!("*{}\r\n", words.len());
            for w in words {
                out.push_str(&format!("${}\r\n{w}\r\n", w.len()));
            }
            link.write_all(out.as_bytes()).unwrap();
            // A primary waiting to start the transfer writes bare newlines to keep the link.
            let mut line = String::new();
            while line.trim().is_empty() {
                line.clear();
                assert!(reader.read_line(&mut line).unwrap() > 0, "closed");
            }
            line
        };
        let port = listener.port.to_string();
        assert!(ask(&["REPLCONF", "listening-port", &port]).starts_with("+OK"));
        assert!(ask(&["REPLCONF", "capa", "eof", "capa", "psync2"]).starts_with("+OK"));
        let full = ask(&["PSYNC", "?", "-1"]);
        let id = full
            .strip_prefix("+FULLRESYNC ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("PSYNC: {full}"))
            .to_string();
        *replid.lock().unwrap() = id.clone();
        // Drain whatever the primary streams (the RDB, then its commands and pings).
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        });
        // Claim to be caught up (far ahead, in fact), as often as a real replica acks.
        let mut acks = link.try_clone().unwrap();
        std::thread::spawn(move || {
            let ack = "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$8\r\n99999999\r\n";
            while acks.write_all(ack.as_bytes()).is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        AnnouncedReplica {
            listener,
            replid: id,
            _link: link,
        }
    }

    /// Whether `primary`'s INFO lists it as an online replica.
    pub fn listed_online_by(&self, primary: &RedisServer) -> bool {
        let needle = format!("port={},state=online", self.listener.port);
        primary
            .info("replication")
            .values()
            .any(|v| v.contains(&needle))
    }
}
