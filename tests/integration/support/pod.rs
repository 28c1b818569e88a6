//! A pod as kubelet would run it, with podman: Redis (Debian's redis-server in a root filesystem
//! of its own, restarted when it exits) and busyguard from the project's image
//! (`$BUSYGUARD_IMAGE`, the OCI archive scripts/image writes) in one pod, sharing its network, so
//! busyguard reaches Redis through localhost. scripts/test installs and configures podman
//! (`ensure_podman`) and builds the image before it runs these tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::daemon::{read_trail, wait_trail};
use super::{Conn, free_port, wait_for};

/// Where the image is, or why the pod tests cannot run.
pub fn image() -> String {
    std::env::var("BUSYGUARD_IMAGE").expect(
        "BUSYGUARD_IMAGE names the image's OCI archive: run these through scripts/test, which builds it",
    )
}

/// `podman ARGS`, its stdout; a failure panics with what podman said.
pub fn podman(args: &[&str]) -> String {
    let out = Command::new("podman")
        .args(args)
        .output()
        .expect("run podman");
    assert!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub struct Pod {
    name: String,
    pub redis_port: u16,
    pub metrics_port: u16,
    dir: tempfile::TempDir,
}

impl Pod {
    /// Start the pod: Redis with `busy-reply-threshold` 200 ms, and busyguard with its policy
    /// for instance `cache` (`redis.url` and the instance are given; `rest` is the rest of the
    /// policy), `extra` flags for `busyguard run`, and `hosts` added to the pod's /etc/hosts.
    pub fn start(rest: &str, extra: &[&str], hosts: &[(&str, &str)]) -> Pod {
        let dir = tempfile::Builder::new()
            .prefix("busyguard-pod-")
            .tempdir()
            .unwrap();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase();
        let (redis_port, metrics_port) = (free_port(), free_port());
        let rootfs = redis_rootfs(&dir.path().join("redis-root"));
        // Shared with the host: Redis's socket (the test's own connections) and busyguard's
        // trail, written as busyguard's user (uid 10002 in the image).
        for (sub, mode) in [("sock", 0o777), ("state", 0o700), ("policies", 0o755)] {
            let path = dir.path().join(sub);
            std::fs::create_dir(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        nix::unistd::chown(
            &dir.path().join("state"),
            Some(nix::unistd::Uid::from_raw(10002)),
            Some(nix::unistd::Gid::from_raw(10002)),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("policies/cache.yaml"),
            format!(
                "instance: cache\nredis:\n  url: redis://127.0.0.1:{redis_port}\nprobe:\n  interval: 50ms\n{rest}"
            ),
        )
        .unwrap();
        podman(&["pod", "create", "--name", &name, "--network", "host"]);
        let pod = Pod {
            name,
            redis_port,
            metrics_port,
            dir,
        };
        pod.start_redis(&rootfs);
        pod.start_busyguard(extra, hosts);
        pod.wait_snapshot();
        pod
    }

    fn container(&self, what: &str) -> String {
        format!("{}-{what}", self.name)
    }

    fn start_redis(&self, rootfs: &Path) {
        let sock = format!("{}:/sock", self.dir.path().join("sock").display());
        let port = self.redis_port.to_string();
        podman(&[
            "run",
            "-d",
            "--pod",
            &self.name,
            "--name",
            &self.container("redis"),
            "--restart",
            "always",
            "-v",
            &sock,
            "--rootfs",
            &rootfs.display().to_string(),
            "/usr/bin/redis-server",
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            "/sock/redis.sock",
            "--unixsocketperm",
            "777",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/tmp",
            "--busy-reply-threshold",
            "200",
        ]);
        assert!(
            wait_for(Duration::from_secs(20), || Conn::open(&self.redis_socket())
                .is_ok()),
            "redis did not start in its container: {}",
            self.logs("redis")
        );
    }

    /// busyguard, with `hosts` in its /etc/hosts (in a pod on the host's network, podman adds
    /// them to a container, not to the pod).
    fn start_busyguard(&self, extra: &[&str], hosts: &[(&str, &str)]) {
        let policies = format!(
            "{}:/etc/busyguard:ro",
            self.dir.path().join("policies").display()
        );
        let state = format!(
            "{}:/var/lib/busyguard",
            self.dir.path().join("state").display()
        );
        let metrics = format!("127.0.0.1:{}", self.metrics_port);
        let image = format!("oci-archive:{}", image());
        let name = self.container("busyguard");
        let mut args = vec![
            "run",
            "-d",
            "--pod",
            &self.name,
            "--name",
            &name,
            "--read-only",
            "-v",
            &policies,
            "-v",
            &state,
            // As the manifests in deploy/kubernetes/ grant it: real-time priority.
            "--cap-drop",
            "ALL",
            "--cap-add",
            "SYS_NICE",
        ];
        let added: Vec<String> = hosts.iter().map(|(h, ip)| format!("{h}:{ip}")).collect();
        for a in &added {
            args.extend(["--add-host", a.as_str()]);
        }
        args.extend([
            &image,
            "run",
            "--policies",
            "/etc/busyguard",
            "--state-dir",
            "/var/lib/busyguard",
            "--metrics",
            &metrics,
            "--log-format",
            "json",
        ]);
        args.extend_from_slice(extra);
        podman(&args);
        assert!(
            wait_for(Duration::from_secs(20), || self
                .records()
                .iter()
                .any(
                    |r| r["event"] == "snapshot_taken" || r["event"] == "watchdog_started"
                )),
            "busyguard did not start in its container: {}",
            self.logs("busyguard")
        );
    }

    /// busyguard's first healthy snapshot (SLOWLOG GET is its last command): what a shutdown
    /// rests on.
    fn wait_snapshot(&self) {
        let taken = || {
            self.conn()
                .call(&["INFO", "commandstats"])
                .ok()
                .and_then(|r| r.text().map(|t| t.contains("cmdstat_slowlog|get:calls=")))
                .unwrap_or(false)
        };
        assert!(
            wait_for(Duration::from_secs(20), taken),
            "busyguard never took its snapshot: {}",
            self.logs("busyguard")
        );
    }

    /// A container's logs (`redis` or `busyguard`).
    pub fn logs(&self, what: &str) -> String {
        let out = Command::new("podman")
            .args(["logs", &self.container(what)])
            .output()
            .expect("podman logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Redis's unix socket, as the host sees it.
    pub fn redis_socket(&self) -> PathBuf {
        self.dir.path().join("sock/redis.sock")
    }

    pub fn conn(&self) -> Conn {
        Conn::open(&self.redis_socket()).expect("connect to the pod's redis")
    }

    /// Send a signal to the Redis container (`STOP`, `CONT`).
    pub fn signal_redis(&self, signal: &str) {
        podman(&["kill", "--signal", signal, &self.container("redis")]);
    }

    /// Stop the pod as kubelet deletes one: SIGTERM to every container, SIGKILL after `grace`.
    pub fn stop(&self, grace: Duration) {
        podman(&[
            "pod",
            "stop",
            "--time",
            &grace.as_secs().to_string(),
            &self.name,
        ]);
    }

    /// The Redis container's exit code (137: SIGKILLed).
    pub fn redis_exit_code(&self) -> i64 {
        podman(&[
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &self.container("redis"),
        ])
        .parse()
        .unwrap_or(-1)
    }

    /// How often podman restarted the Redis container.
    pub fn redis_restarts(&self) -> u64 {
        podman(&[
            "inspect",
            "--format",
            "{{.RestartCount}}",
            &self.container("redis"),
        ])
        .parse()
        .unwrap_or(0)
    }

    /// busyguard's trail, read from the host.
    pub fn records(&self) -> Vec<Value> {
        read_trail(&self.trail())
    }

    fn trail(&self) -> PathBuf {
        self.dir.path().join("state/audit.jsonl")
    }

    /// The first record of `event`, waiting up to `limit` for it.
    pub fn wait_event(&self, event: &str, limit: Duration) -> Value {
        wait_trail(&self.trail(), limit, |r| r["event"] == event).unwrap_or_else(|| {
            panic!(
                "no `{event}` within {limit:?}: {:?}\nbusyguard: {}",
                self.records()
                    .iter()
                    .map(|r| r["event"].clone())
                    .collect::<Vec<_>>(),
                self.logs("busyguard")
            )
        })
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["pod", "rm", "--force", "--time", "0", &self.name])
            .output();
    }
}

/// A root filesystem for Debian's redis-server: the binary (named so that it runs as the
/// server) and the libraries it links, at their paths.
fn redis_rootfs(root: &Path) -> PathBuf {
    let binary = std::fs::canonicalize(
        which("redis-server").expect("redis-server is installed (scripts/test installs it)"),
    )
    .unwrap();
    let mut files = vec![(binary.clone(), PathBuf::from("usr/bin/redis-server"))];
    let ldd = Command::new("ldd").arg(&binary).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux... (0x...)`
        let path = line
            .split("=>")
            .last()
            .and_then(|p| p.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            files.push((PathBuf::from(path), PathBuf::from(&path[1..])));
        }
    }
    for (from, to) in files {
        let to = root.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir_all(root.join("sock")).unwrap();
    root.to_path_buf()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}
