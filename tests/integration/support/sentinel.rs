//! A real redis-sentinel process for the tests and the bench: one sentinel, quorum 1, in its
//! own temporary folder, watching one test server under the master name `m`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Conn, RedisServer, Reply, wait_for};

const LONG: Duration = Duration::from_secs(20);

/// A primary holding 100 keys, its replica in sync, and a sentinel (marking it down after
/// `down_after` ms) that knows both.
pub fn watched_pair(down_after: u64) -> (RedisServer, RedisServer, Sentinel) {
    let primary = RedisServer::start(super::ServerOptions::default());
    let replica = primary.start_replica(super::ServerOptions::default());
    primary.fill(100);
    assert!(wait_for(LONG, || replica.holds_keys(100)));
    let sentinel = Sentinel::start(&primary, down_after);
    assert!(wait_for(LONG, || sentinel.field("num-slaves").as_deref()
        == Some("1")));
    (primary, replica, sentinel)
}

/// A redis-sentinel process monitoring one server.
pub struct Sentinel {
    child: Child,
    pub port: u16,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// A sentinel (quorum 1) monitoring `server` as `m`, marking it down after `down_after` ms;
    /// returns once it sees the server as a healthy master.
    pub fn start(server: &RedisServer, down_after: u64) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let socket = dir.path().join("sentinel.sock");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(&conf, format!(
            "port {port}\nbind 127.0.0.1\nunixsocket {}\ndir {}\nlogfile sentinel.log\n\
             sentinel monitor m 127.0.0.1 {} 1\nsentinel down-after-milliseconds m {down_after}\nsentinel failover-timeout m 600000\n",
            socket.display(), dir.path().display(), server.port)).unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel");
        let s = Sentinel {
            child,
            port,
            socket,
            _dir: dir,
        };
        assert!(wait_for(LONG, || s.flags().as_deref() == Some("master")
            && s.last_ok_ping_ms() < 1500));
        s
    }

    fn master(&self) -> Option<Vec<Reply>> {
        let mut c = Conn::open(&self.socket).ok()?;
        match c.call(&["SENTINEL", "MASTER", "m"]).ok()? {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Its address for a policy's `topology.sentinel.urls`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Serve `server` as `m` from now on (as after a failover that promoted it), once the
    /// sentinel knows its run id.
    pub fn serve(&self, server: &RedisServer) {
        let mut admin = Conn::open(&self.socket).unwrap();
        admin.call(&["SENTINEL", "REMOVE", "m"]).unwrap();
        let port = server.port.to_string();
        admin
            .call(&["SENTINEL", "MONITOR", "m", "127.0.0.1", &port, "1"])
            .unwrap();
        assert!(wait_for(LONG, || self
            .field("runid")
            .is_some_and(|r| !r.is_empty())));
    }

    /// Whether another client (busyguard's Sentinel feed) has asked it `SENTINEL MASTER` on a
    /// connection it keeps.
    pub fn asked_by_another_client(&self) -> bool {
        let Ok(mut c) = Conn::open(&self.socket) else {
            return false;
        };
        c.call(&["CLIENT", "LIST"])
            .ok()
            .and_then(|r| r.text().map(|t| t.contains("cmd=sentinel|master")))
            .unwrap_or(false)
    }

    /// What it logged (`Executing user requested FAILOVER of 'm'` when asked for one).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("sentinel.log")).unwrap_or_default()
    }

    /// A field of `SENTINEL MASTER m`.
    pub fn field(&self, name: &str) -> Option<String> {
        let items = self.master()?;
        items
            .chunks(2)
            .find(|p| p[0].text() == Some(name))
            .and_then(|p| p[1].text().map(str::to_string))
    }

    pub fn flags(&self) -> Option<String> {
        self.field("flags")
    }

    pub fn last_ok_ping_ms(&self) -> u64 {
        self.field("last-ok-ping-reply")
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
