//! What restarts a local Redis when it stops: the systemd unit its process runs in (from
//! `/proc/PID/cgroup`) and that unit's `Restart=` and `RestartUSec=` (`systemctl show`). Debian's
//! `redis-server.service` restarts within 100 ms: a primary busyguard shuts down is back, still
//! a primary, long before Sentinel's down-after or a Cluster's node-timeout could fail it over,
//! and without persistence it is back empty. `status` warns of it.

use std::time::Duration;

/// A systemd unit's restart settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Supervisor {
    pub unit: String,
    /// `Restart=`: `no`, `always`, `on-failure`, ...
    pub restart: String,
    /// `RestartSec=`: how long after the stop.
    pub delay: Duration,
}

impl Supervisor {
    /// The unit that runs local process `pid`, and its restart settings, when systemd can say.
    pub fn of_process(pid: u32) -> Option<Supervisor> {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let unit = unit_of(&cgroup)?;
        let out = std::process::Command::new("systemctl")
            .args(["show", &unit, "-p", "Restart", "-p", "RestartUSec"])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        parse_show(&unit, &String::from_utf8_lossy(&out.stdout))
    }

    /// Whether it restarts the server after busyguard's SHUTDOWN (a clean exit, status 0:
    /// `always` and `on-success` do; `on-failure` and the like do not).
    pub fn restarts_after_shutdown(&self) -> bool {
        matches!(self.restart.as_str(), "always" | "on-success")
    }
}

/// The `.service` a process runs in, from its `/proc/PID/cgroup` (v2 `0::/...` or v1
/// `name=systemd:/...`).
pub fn unit_of(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter(|l| l.starts_with("0::") || l.contains("name=systemd:"))
        .flat_map(|l| l.rsplit_once(':').map(|(_, path)| path).into_iter())
        .flat_map(|path| path.split('/'))
        .find(|part| part.ends_with(".service"))
        .map(str::to_string)
}

/// `Restart=always\nRestartUSec=100ms` as settings.
pub fn parse_show(unit: &str, text: &str) -> Option<Supervisor> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::trim)
    };
    let delay = match field("RestartUSec")? {
        "0" => Duration::ZERO,
        d => humantime::parse_duration(&d.replace(' ', "")).ok()?,
    };
    Some(Supervisor {
        unit: unit.to_string(),
        restart: field("Restart")?.to_string(),
        delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_comes_from_the_cgroup_v1_or_v2() {
        let v2 = "0::/system.slice/redis-server.service\n";
        assert_eq!(unit_of(v2).as_deref(), Some("redis-server.service"));
        let v1 = "12:pids:/system.slice/x.service\n1:name=systemd:/system.slice/redis-server@main.service\n";
        assert_eq!(unit_of(v1).as_deref(), Some("redis-server@main.service"));
        assert_eq!(
            unit_of("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
    }

    #[test]
    fn debians_unit_restarts_after_a_shutdown_within_100ms() {
        let s = parse_show(
            "redis-server.service",
            "Restart=always\nRestartUSec=100ms\n",
        )
        .unwrap();
        assert!(s.restarts_after_shutdown());
        assert_eq!(s.delay, Duration::from_millis(100));
        let s = parse_show("r.service", "Restart=on-failure\nRestartUSec=1min 30s\n").unwrap();
        assert!(!s.restarts_after_shutdown());
        assert_eq!(s.delay, Duration::from_secs(90));
    }
}
