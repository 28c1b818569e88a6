//! The real-Redis test harness: a `redis-server` per test in its own temporary folder (unix
//! socket and a free TCP port), runaway scripts run from their own threads, and cleanup on drop
//! (SIGKILL, and the kernel's parent-death signal should the test process itself die).

pub mod announced;
pub mod cluster;
pub mod daemon;
pub mod fake;
pub mod http;
pub mod pki;
pub mod pod;
pub mod proxy;
pub mod resp;
pub mod sentinel;
pub mod trail;

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use daemon::Daemon;
pub use resp::{Conn, Reply};

/// How long a server may take to start answering before the test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for a test server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `busy-reply-threshold` in milliseconds.
    pub threshold_ms: u64,
    /// Extra `directive value` lines for the config file.
    pub extra: Vec<String>,
    /// Another server build than Debian's `redis-server` on the PATH.
    pub build: Option<ServerBuild>,
    /// A Cluster node (`cluster-enabled yes`), on a port whose bus port (+10000) is free too.
    pub cluster: bool,
}

/// A server build other than the default.
#[derive(Clone, Debug)]
pub struct ServerBuild {
    pub binary: PathBuf,
    /// Redis 6.x: `lua-time-limit` instead of `busy-reply-threshold`, no `enable-debug-command`.
    pub legacy_6: bool,
}

impl ServerBuild {
    /// A build `scripts/test` provisioned into `$BUSYGUARD_SERVER_BUILDS/<name>/bin/`
    /// (`redis-6.2.14`, `valkey-9.1.2`; the compatibility suite names them all).
    pub fn named(name: &str) -> ServerBuild {
        let root = std::env::var_os("BUSYGUARD_SERVER_BUILDS").map(PathBuf::from).expect(
            "this test needs the provisioned server builds: run scripts/test (it sets BUSYGUARD_SERVER_BUILDS)",
        );
        let bin = root.join(name).join("bin");
        let binary = std::fs::read_dir(&bin)
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(Result::ok)
            .map(|e| e.path())
            .unwrap_or_else(|| panic!("no server in {}: run scripts/test", bin.display()));
        ServerBuild {
            binary,
            legacy_6: name.starts_with("redis-6."),
        }
    }

    pub fn redis_6_2() -> ServerBuild {
        ServerBuild::named("redis-6.2.14")
    }

    /// Redis and Valkey 7.0+ have functions (FCALL, FUNCTION KILL).
    pub fn has_functions(build: &Option<ServerBuild>) -> bool {
        !build.as_ref().is_some_and(|b| b.legacy_6)
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            threshold_ms: 200,
            extra: Vec::new(),
            build: None,
            cluster: false,
        }
    }
}

/// A running redis-server owned by one test.
pub struct RedisServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub port: u16,
    child: Option<Child>,
    options: ServerOptions,
}

impl RedisServer {
    pub fn start(options: ServerOptions) -> RedisServer {
        let mut dir = tempfile::Builder::new()
            .prefix("busyguard-redis-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("redis.sock");
        // A freed port can be taken by a parallel test before redis binds it: try a few.
        for _ in 0..5 {
            let port = match options.cluster {
                true => cluster::free_port(),
                false => free_port(),
            };
            let mut server = RedisServer {
                socket: socket.clone(),
                port,
                child: None,
                options: options.clone(),
                dir,
            };
            if server.spawn().is_ok() {
                return server;
            }
            dir = server.take_dir();
        }
        panic!("redis-server did not start after 5 attempts");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn config(&self) -> String {
        let mut lines = vec![
            format!("port {}", self.port),
            "bind 127.0.0.1".into(),
            format!("unixsocket {}", self.socket.display()),
            "unixsocketperm 700".into(),
            format!("dir {}", self.dir.path().display()),
            "logfile redis.log".into(),
            "save \"\"".into(),
            "appendonly no".into(),
        ];
        if self.options.build.as_ref().is_some_and(|b| b.legacy_6) {
            lines.push(format!("lua-time-limit {}", self.options.threshold_ms));
        } else {
            lines.push(format!(
                "busy-reply-threshold {}",
                self.options.threshold_ms
            ));
            lines.push("enable-debug-command yes".into());
        }
        if self.options.cluster {
            lines.extend(cluster::NODE_CONFIG.iter().map(|l| l.to_string()));
        }
        lines.extend(self.options.extra.iter().cloned());
        lines.join("\n") + "\n"
    }

    /// Start the process (again, after a shutdown) and wait until it answers PING.
    pub fn spawn(&mut self) -> Result<(), String> {
        let conf = self.dir.path().join("redis.conf");
        std::fs::write(&conf, self.config()).map_err(|e| e.to_string())?;
        let binary = match &self.options.build {
            Some(b) => b.binary.clone(),
            None => PathBuf::from("redis-server"),
        };
        let mut cmd = Command::new(&binary);
        cmd.arg(&conf).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the server
        // when the thread that started it dies, so a crashed test leaves no server behind.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {} ({e}): run scripts/test, or apt-get install redis-server",
                binary.display()
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "redis-server exited: {status}; log: {}",
                    self.log()
                ));
            }
            if let Ok(mut c) = Conn::open(&self.socket)
                && c.call(&["PING"]).ok() == Some(Reply::Status("PONG".into()))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server did not answer; log: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::open(&self.socket).expect("connect to test redis")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True once the process has exited (reaping it).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
        }
    }

    /// Wait until the process has exited, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// `INFO section` as a map of field to value.
    pub fn info(&self, section: &str) -> HashMap<String, String> {
        let reply = self.conn().call(&["INFO", section]).expect("INFO");
        parse_info(reply.text().expect("INFO text"))
    }

    /// `calls` of one command from INFO commandstats (`script|kill` for subcommands).
    /// Calls of `command` (`script|kill`) the server counted; 6.x counts subcommands under
    /// their command (`script`).
    pub fn command_calls(&self, command: &str) -> u64 {
        self.command_stat(command, "calls")
    }

    /// One field of `command`'s commandstats line (`calls`, `rejected_calls`: refused by the
    /// ACL, 7.0+).
    pub fn command_stat(&self, command: &str, field: &str) -> u64 {
        let command = match self.options.build.as_ref().is_some_and(|b| b.legacy_6) {
            true => command.split('|').next().unwrap_or(command),
            false => command,
        };
        let prefix = format!("{field}=");
        self.info("commandstats")
            .get(&format!("cmdstat_{command}"))
            .and_then(|v| v.split(',').find_map(|f| f.strip_prefix(prefix.as_str())))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Wait until PING gets a BUSY reply (the threshold passed), up to `limit`.
    pub fn wait_busy(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let reply = self.conn().call(&["PING"]).expect("PING");
            if let Some(e) = reply.error()
                && e.split(' ').next() == Some("BUSY")
            {
                return e.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "server never became BUSY: {reply:?}"
            );
        }
    }

    /// A policy for this server over its unix socket, with `rest` appended (YAML).
    /// `topology.replicas` naming `replicas` (a line under `topology:`): busyguard connects to
    /// no replica the policy does not list.
    pub fn listed(replicas: &[&RedisServer]) -> String {
        let addresses: Vec<String> = replicas
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.port))
            .collect();
        format!("  replicas: [{}]\n", addresses.join(", "))
    }

    pub fn policy(&self, instance: &str, rest: &str) -> String {
        format!(
            "instance: {instance}\nredis:\n  url: unix://{}\nprobe:\n  interval: 50ms\n{rest}",
            self.socket.display()
        )
    }

    /// Wait until a busyguard watchdog has taken its healthy snapshot (the server counted its
    /// last command, SLOWLOG GET), so the decisions of the test rest on real INFO values.
    pub fn wait_snapshot(&self) {
        self.wait_snapshot_past(0);
    }

    /// Wait for a snapshot past the `taken` ones the server counted already (a restarted
    /// busyguard's first: its healthy answer, which a destructive command rests on after a
    /// restart).
    pub fn wait_snapshot_past(&self, taken: u64) {
        // SLOWLOG GET is the snapshot's last command.
        assert!(
            wait_for(Duration::from_secs(10), || self
                .command_calls("slowlog|get")
                > taken),
            "busyguard never took its snapshot"
        );
    }

    /// A replica of this server (`options` plus `replicaof`), once its link is up and this
    /// server lists it online (a snapshot taken earlier, while it still waits for its first
    /// sync, would hold no replica in sync).
    pub fn start_replica(&self, mut options: ServerOptions) -> RedisServer {
        options
            .extra
            .push(format!("replicaof 127.0.0.1 {}", self.port));
        let replica = RedisServer::start(options);
        self.wait_replica_online(&replica);
        replica
    }

    /// Wait until `replica`'s link to this server is up and this server lists it online.
    pub fn wait_replica_online(&self, replica: &RedisServer) {
        let online = format!("port={},state=online", replica.port);
        assert!(
            wait_for(Duration::from_secs(20), || {
                replica
                    .info("replication")
                    .get("master_link_status")
                    .map(String::as_str)
                    == Some("up")
                    && self
                        .info("replication")
                        .values()
                        .any(|v| v.contains(&online))
            }),
            "the replica never came up"
        );
    }

    /// `SCRIPT LOAD` of `script`: its SHA1.
    pub fn script_load(&self, script: &str) -> String {
        self.conn()
            .call(&["SCRIPT", "LOAD", script])
            .unwrap()
            .text()
            .unwrap()
            .to_string()
    }

    /// A sorted set `key` of `n` members, for [`scripts::HEAVY_LOOP_MS`].
    pub fn sorted_set(&self, key: &str, n: usize) {
        let mut args = vec!["ZADD".to_string(), key.to_string()];
        for i in 0..n {
            args.push(i.to_string());
            args.push(format!("member-{i}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.conn().call(&args).unwrap();
    }

    /// Write `n` keys (`k0` ..) for a test to find again on another node.
    pub fn fill(&self, n: usize) {
        let mut conn = self.conn();
        for i in 0..n {
            conn.call(&["SET", &format!("k{i}"), "v"]).unwrap();
        }
    }

    /// True when db 0 holds exactly `n` keys.
    pub fn holds_keys(&self, n: usize) -> bool {
        self.info("keyspace")
            .get("db0")
            .is_some_and(|d| d.starts_with(&format!("keys={n},")))
    }

    /// Send a signal to the server process (SIGSTOP to make a replica lag).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid().expect("running") as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary with one replica that is frozen (SIGSTOP) and behind it: the setting in which a
/// plain `SHUTDOWN NOSAVE` waits for the replica during a busy script (Redis 7.0+).
pub fn lagging_replica_pair() -> (RedisServer, RedisServer) {
    lagging_replica_pair_of(None)
}

/// [`lagging_replica_pair`] on a given build (both servers).
pub fn lagging_replica_pair_of(build: Option<ServerBuild>) -> (RedisServer, RedisServer) {
    let primary = RedisServer::start(ServerOptions {
        build: build.clone(),
        ..Default::default()
    });
    let replica = primary.start_replica(ServerOptions {
        build,
        ..Default::default()
    });
    replica.signal(nix::sys::signal::Signal::SIGSTOP);
    for i in 0..100 {
        primary
            .conn()
            .call(&["SET", &format!("lag{i}"), "x"])
            .unwrap();
    }
    (primary, replica)
}

pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The remediation ladder most tests run: kill at once, then `then` after `wait` of an
/// unkillable script.
pub fn ladder(wait: &str, then: &str) -> String {
    format!("on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: {wait}\n    then: {then}\n")
}

/// Policy lines accepting the shutdown of a primary with replicas and no persistence (the test
/// servers have none): for tests of a shutdown with replicas attached.
pub const ACCEPT_EMPTY_RESTART: &str = "guards:\n  allow_empty_restart: true\n";

/// A fresh state dir, named so a leftover one says what it was.
pub fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("busyguard-state-")
        .tempdir()
        .unwrap()
}

/// A TCP port nothing listens on now (for a server, a metrics listener).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runaway scripts, as the callers in production would send them.
pub mod scripts {
    /// Never writes, never ends: SCRIPT KILL stops it.
    pub const READ_ONLY_LOOP: &str = "while true do end";
    /// Writes once, then never ends: UNKILLABLE.
    pub const WRITING_LOOP: &str = "redis.call('SET', KEYS[1], 'written') while true do end";
    /// Writes once, then spins for ARGV[1] milliseconds of wall time and ends (needs a server
    /// whose TIME moves inside scripts: 7.0 and earlier).
    pub const WRITE_THEN_SPIN_MS: &str = "redis.call('SET', KEYS[1], 'written') \
        local t = redis.call('TIME') local start = t[1] * 1000 + t[2] / 1000 \
        while true do t = redis.call('TIME') \
        if t[1] * 1000 + t[2] / 1000 - start >= tonumber(ARGV[1]) then return 'done' end end";
    /// Writes once, then loops on a heavy call (`ZRANGE` of the whole sorted set KEYS[2]) for
    /// ARGV[1] milliseconds: a busy server answers other clients only at its hook, every 100 000
    /// Lua instructions, which such a loop reaches only every few hundred milliseconds with 500
    /// members (every 60 to 100 ms with 100). Unkillable. See [`RedisServer::sorted_set`].
    pub const HEAVY_LOOP_MS: &str = "redis.call('SET', KEYS[1], 'written') \
        local t = redis.call('TIME') local start = t[1] * 1000 + t[2] / 1000 \
        while true do redis.call('ZRANGE', KEYS[2], 0, -1) t = redis.call('TIME') \
        if t[1] * 1000 + t[2] / 1000 - start >= tonumber(ARGV[1]) then return 'done' end end";
    /// Reads only and spins for ARGV[1] milliseconds: a legitimate slow script.
    pub const SPIN_MS: &str = "local t = redis.call('TIME') local start = t[1] * 1000 + t[2] / 1000 \
        while true do t = redis.call('TIME') \
        if t[1] * 1000 + t[2] / 1000 - start >= tonumber(ARGV[1]) then return 'done' end end";
    /// A library with a function that never ends.
    pub const SPIN_LIBRARY: &str = "#!lua name=busyguard_test\n\
        redis.register_function('spin', function(keys, args) while true do end end)";
    /// Functions for script rules: two that never end, and one that writes first.
    /// A runaway (`spin`, read-only) and a job that writes, then loops on a heavy call over the
    /// sorted set keys[2] (`compact`): its hooks come tens to hundreds of ms apart.
    pub const JOBS_LIBRARY: &str = "#!lua name=busyguard_jobs\n\
        redis.register_function('spin', function(keys, args) while true do end end)\n\
        redis.register_function('compact', function(keys, args) \
        redis.call('SET', keys[1], 'x') while true do redis.call('ZRANGE', keys[2], 0, -1) end end)\n\
        redis.register_function('scan_job', function(keys, args) \
        while true do redis.call('ZRANGE', keys[1], 0, -1) end end)";
    pub const RULED_LIBRARY: &str = "#!lua name=busyguard_rules\n\
        redis.register_function('spin', function(keys, args) while true do end end)\n\
        redis.register_function('nightly_compact', function(keys, args) while true do end end)\n\
        redis.register_function('migrate_users', function(keys, args) \
        redis.call('SET', keys[1], 'x') while true do end end)";
}

/// A client that runs one command on its own connection and thread, as an application would.
pub struct Caller {
    handle: JoinHandle<(std::io::Result<Reply>, Instant)>,
    pub started: Instant,
}

impl Caller {
    /// Start `args` on a new connection to `server` (returns once the command is written).
    pub fn start(server: &RedisServer, args: &[&str]) -> Caller {
        let mut conn = server.conn();
        conn.send(args).expect("send runaway command");
        let started = Instant::now();
        Caller {
            handle: std::thread::spawn(move || {
                let reply = conn.read();
                (reply, Instant::now())
            }),
            started,
        }
    }

    /// `EVAL script numkeys keys... args...`
    pub fn eval(server: &RedisServer, script: &str, keys: &[&str], args: &[&str]) -> Caller {
        let n = keys.len().to_string();
        let mut all = vec!["EVAL", script, n.as_str()];
        all.extend_from_slice(keys);
        all.extend_from_slice(args);
        Caller::start(server, &all)
    }

    /// The caller's reply (blocks until the command ends).
    pub fn reply(self) -> std::io::Result<Reply> {
        self.reply_timed().0
    }

    /// The reply and how long after the command was written it arrived.
    pub fn reply_timed(self) -> (std::io::Result<Reply>, Duration) {
        let started = self.started;
        let (reply, at) = self.handle.join().expect("caller thread");
        (reply, at.duration_since(started))
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Poll `cond` until it holds or `limit` passes; the condition wait tests use instead of sleep.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The rights busyguard's Redis user needs, exactly as the README documents them.
pub const BUSYGUARD_RIGHTS: &[&str] = &[
    "on",
    "resetkeys",
    "resetchannels",
    "-@all",
    "+ping",
    "+info",
    "+config|get",
    "+script|kill",
    "+function|kill",
    "+shutdown",
    "+slowlog|get",
    "+function|stats",
    "+multi",
    "+discard",
    "+acl|whoami",
];

/// What `then: failover` adds to [`BUSYGUARD_RIGHTS`], on every node (`+cluster|info` for
/// `status` in a Cluster).
pub const FAILOVER_RIGHTS: &[&str] = &["+role", "+replicaof", "+cluster|failover", "+cluster|info"];

/// Create the ACL user `busyguard` with `password` and the documented rights but `without`.
pub fn add_busyguard_user(server: &RedisServer, password: &str, without: &[&str]) {
    let pass = format!(">{password}");
    let mut args = vec!["ACL", "SETUSER", "busyguard"];
    // 6.x has no FUNCTION: its ACL refuses rights that name it.
    let functions = ServerBuild::has_functions(&server.options.build);
    args.extend(
        BUSYGUARD_RIGHTS
            .iter()
            .filter(|r| !without.contains(r) && (functions || !r.contains("function"))),
    );
    args.push(&pass);
    assert_eq!(
        server.conn().call(&args).unwrap(),
        Reply::Status("OK".into())
    );
}

/// A policy for the ACL user `busyguard` at `url`, its password in `password_file`.
pub fn acl_policy(url: &str, password_file: &std::path::Path) -> String {
    format!(
        "instance: acl\nredis:\n  url: {url}\n  username: busyguard\n  password_file: {}\nprobe:\n  interval: 50ms\n{}",
        password_file.display(),
        ladder("5s", "shutdown")
    )
}

/// A plain HTTP/1.0 GET of `path` on a local port: the whole answer, headers included.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// [`http_get`], read as its status code and body (the code 0 when there is no status line).
pub fn http_status(port: u16, path: &str) -> (u16, String) {
    let reply = http_get(port, path);
    let code = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// The `reason` a record's detail gives (why an escalation was withheld, why unreachable).
pub fn reason(record: &serde_json::Value) -> &str {
    record["detail"]["reason"].as_str().unwrap_or("")
}

/// Run the `busyguard` binary with `args` then `files`: exit code and stdout.
pub fn busyguard(args: &[&str], files: &[&Path]) -> (i32, String) {
    let out = std::process::Command::new(busyguard_bin())
        .args(args)
        .args(files)
        .output()
        .expect("run busyguard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The built `busyguard` binary: cargo names it for integration tests; from an example
/// (`target/<profile>/examples/x`) it is `target/<profile>/busyguard`.
pub fn busyguard_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_busyguard") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .expect("current exe")
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .join("busyguard"),
    }
}

/// The records of an unkillable script's incident that ends in a shutdown and a restart.
pub const UNKILLABLE_LADDER: [&str; 6] = [
    "busy_detected",
    "kill_sent",
    "unkillable",
    "shutdown_sent",
    "shutdown_confirmed",
    "recovered",
];

/// Run `busyguard ARGS --state-dir <the daemon's>`: exit code and stdout (stderr appended).
pub fn busyguard_ctl(daemon: &Daemon, args: &[&str]) -> (i32, String) {
    let out = Command::new(busyguard_bin())
        .args(args)
        .arg("--state-dir")
        .arg(daemon.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Run a read-only runaway loop on `server` and assert its caller is told it was killed.
pub fn run_killable_runaway(server: &RedisServer) {
    let reply = Caller::eval(server, scripts::READ_ONLY_LOOP, &[], &[])
        .reply()
        .unwrap();
    assert!(reply.killed_by_user(), "{reply:?}");
}

/// `caller`'s script was killed (its caller told so), and busyguard's `kill_sent` for it (the
/// trail's first).
pub fn first_kill(daemon: &Daemon, caller: Caller) -> serde_json::Value {
    let reply = caller.reply().unwrap();
    assert!(reply.killed_by_user(), "{reply:?}");
    daemon.wait_event("kill_sent", Duration::from_secs(20))
}

/// The peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
