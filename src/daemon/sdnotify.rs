//! systemd's notification protocol, spoken directly: one datagram to `$NOTIFY_SOCKET` per state
//! change (`READY=1` with `STATUS=`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`). Outside
//! systemd the socket is unset and every call is a no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Send `state` (e.g. `"READY=1"`) to systemd, if it is listening.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().to_string();
    let addr = match path.strip_prefix('@') {
        // An abstract socket: '@' stands for the leading NUL byte.
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// `READY=1` with the one line `systemctl status` shows (`Status:`): what is supervised and
/// which policy files were refused, so a reload that rejected a file is visible there.
pub fn ready(status: &str) {
    let line: String = status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    notify(&format!("READY=1\nSTATUS={line}"));
}

/// `RELOADING=1` also carries the monotonic time systemd's `notify-reload` wants.
pub fn reloading() {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0);
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_none_or(|p| p == std::process::id());
    (for_us && usec > 0).then(|| Duration::from_micros(usec))
}
