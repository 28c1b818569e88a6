//! The real `busyguard run` as a child process, with its own state dir, and readers for the
//! audit trail it writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{busyguard_bin, wait_for};

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    /// `--state-dir`: `dir` unless the test puts it elsewhere (a small disk).
    state: PathBuf,
    pub audit: PathBuf,
    /// Policy files and extra flags, to start it again the same way.
    policies: Vec<PathBuf>,
    extra: Vec<String>,
    /// Extra environment (NOTIFY_SOCKET, JOURNAL_STREAM ...).
    pub env: Vec<(String, String)>,
    /// A program the daemon runs under (`unshare --user ...`, which execs it: the same pid).
    pub wrapper: Vec<String>,
    /// `RLIMIT_NOFILE` (soft and hard) to start it with.
    pub open_files: Option<u64>,
}

impl Daemon {
    /// Write `policy` (YAML) to the state dir and run the daemon on it.
    pub fn start(policy: &str, extra: &[&str]) -> Daemon {
        let dir = super::state_dir();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, policy).unwrap();
        Daemon::start_with(dir, &[file], extra)
    }

    pub fn start_with(dir: tempfile::TempDir, policies: &[PathBuf], extra: &[&str]) -> Daemon {
        let mut daemon = Daemon::prepare(dir, policies, extra);
        daemon.spawn();
        daemon
    }

    /// Everything but the process: set `env` then call `spawn`.
    pub fn prepare(dir: tempfile::TempDir, policies: &[PathBuf], extra: &[&str]) -> Daemon {
        let audit = dir.path().join("audit.jsonl");
        Daemon {
            child: None,
            state: dir.path().to_path_buf(),
            dir,
            audit,
            policies: policies.to_vec(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            wrapper: Vec::new(),
            open_files: None,
        }
    }

    /// Start the process (again), appending to the same stderr log.
    pub fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .unwrap();
        let mut cmd = match self.wrapper.split_first() {
            None => Command::new(busyguard_bin()),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(busyguard_bin());
                cmd
            }
        };
        if let Some(n) = self.open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        cmd.arg("run")
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--policies");
        cmd.args(&self.policies).args(&self.extra);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn busyguard");
        self.child = Some(child);
    }

    /// SIGKILL, as a crash or the OOM killer would: no chance to write anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Keep the state (and so the trail) in `dir` instead of the test's folder.
    pub fn set_state_dir(&mut self, dir: &std::path::Path) {
        self.state = dir.to_path_buf();
        self.audit = dir.join("audit.jsonl");
    }

    /// The running process's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Send a signal (SIGHUP for a reload).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().expect("running").id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    }

    pub fn records(&self) -> Vec<Value> {
        read_trail(&self.audit)
    }

    /// The records of one event kind, in trail order.
    pub fn records_of(&self, event: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// The event names of one incident's records, in order (its `watchdog_stopped` left out).
    pub fn incident_events(&self, id: &Value) -> Vec<String> {
        self.records()
            .iter()
            .filter(|r| r["incident"] == *id && r["event"] != "watchdog_stopped")
            .map(|r| r["event"].as_str().unwrap().to_string())
            .collect()
    }

    /// Event names of the instances' records, in order.
    pub fn events(&self) -> Vec<String> {
        self.records()
            .iter()
            .filter(|r| !r["instance"].is_null())
            .map(|r| r["event"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The first record with this event name, waiting up to `limit` for it.
    pub fn wait_event(&self, event: &str, limit: Duration) -> Value {
        self.wait_record(limit, |r| r["event"] == event)
            .unwrap_or_else(|| {
                panic!(
                    "no `{event}` within {limit:?}; trail: {:#?}\nstderr: {}",
                    self.events(),
                    self.stderr()
                )
            })
    }

    pub fn wait_record(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        wait_trail(&self.audit, limit, pred)
    }

    /// SIGTERM and wait for the exit.
    /// `busyguard status --json` on this daemon's policy: its one instance's report.
    pub fn status(&self) -> Value {
        let (_, out) = super::busyguard(
            &["status", "--json"],
            &[&self.dir.path().join("policy.yaml")],
        );
        let status: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        status["instances"][0].clone()
    }

    /// `busyguard status` in human form on this daemon's policy.
    pub fn status_text(&self) -> String {
        super::busyguard(&["status"], &[&self.dir.path().join("policy.yaml")]).1
    }

    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// systemd's side of its notification protocol: a datagram socket the daemon is pointed at
/// (`NOTIFY_SOCKET`), read one notification at a time.
pub struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Bound in `dir`; a read waits at most `wait`.
    pub fn bind(dir: &std::path::Path, wait: Duration) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(wait)).unwrap();
        NotifySocket { socket, path }
    }

    /// The environment variable that points the daemon here.
    pub fn env(&self) -> (String, String) {
        ("NOTIFY_SOCKET".into(), self.path.display().to_string())
    }

    /// The next notification, or None when none came within the wait.
    pub fn try_next(&self) -> Option<String> {
        let mut buf = [0u8; 2048];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The next notification; it must come within the wait.
    pub fn next(&self) -> String {
        self.try_next().expect("a notification within the wait")
    }

    /// The next notification that is not `WATCHDOG=1`.
    pub fn next_but_watchdog(&self) -> String {
        loop {
            let got = self.next();
            if got != "WATCHDOG=1" {
                return got;
            }
        }
    }
}

/// The records of an audit trail file (none while it does not exist yet).
pub fn read_trail(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The first record of the trail at `path` that `pred` accepts, waiting up to `limit`.
pub fn wait_trail(path: &Path, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let mut found = None;
    wait_for(limit, || {
        found = read_trail(path).into_iter().find(|r| pred(r));
        found.is_some()
    });
    found
}
