//! The commands and signals that change a server. Each is sent exactly once, on the probe's own
//! connection (where BUSY was just seen), and never retried: its outcome goes back to the engine.

use std::time::{Duration, Instant};

use crate::engine::{KillCommand, KillReply, LEGACY_SHUTDOWN, ShutdownCommand, ShutdownOutcome};
use crate::model::kinds::BusyKind;
use crate::policy::Endpoint;
use crate::probe::{Connection, Outcome};

/// Poll a future once: its outcome if it is ready at once, else `None` (it stays pinned for
/// the caller to await).
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// How long a server may take to stop accepting connections after closing ours on SHUTDOWN.
const SHUTDOWN_CONFIRM_LIMIT: Duration = Duration::from_secs(10);

/// Send SCRIPT KILL or FUNCTION KILL; `sent` runs once the command is on its way (the trail's
/// flush goes then, never ahead of the kill).
pub async fn kill_then(conn: &Connection, command: KillCommand, sent: impl FnOnce()) -> KillReply {
    let words = command.words();
    let reply = conn.call(&words);
    tokio::pin!(reply);
    // Polling once writes the command to fred's connection task; the flush is started after.
    let first = futures_poll_once(&mut reply).await;
    sent();
    let outcome = match first {
        Some(outcome) => outcome,
        None => reply.await,
    };
    match outcome {
        Outcome::Reply(_) => KillReply::Ok,
        Outcome::ErrorReply(e) => KillReply::from_error(&e),
        Outcome::Lost(e) => KillReply::Lost(e),
    }
}

/// Send the shutdown (after `SHUTDOWN ABORT` where a plain shutdown may be pending; its BUSY
/// answer turns an unknown version's shutdown into the 6.x form). Success is
/// the connection closing with no reply and the server then refusing connections; any reply is
/// a failure.
pub async fn shutdown(
    conn: &Connection,
    command: &ShutdownCommand,
    endpoint: &Endpoint,
) -> ShutdownOutcome {
    let mut words: &[&'static str] = &command.words;
    if command.abort_first {
        // `-ERR No shutdown in progress.` is the usual answer, and harmless.
        match conn.call(&["SHUTDOWN", "ABORT"]).await {
            Outcome::Lost(e) => {
                return ShutdownOutcome::Failed(format!(
                    "connection lost before the shutdown: {e}"
                ));
            }
            // A 7.0+ server takes SHUTDOWN while busy; BUSY here means 6.x.
            Outcome::ErrorReply(e)
                if command.legacy_fallback && BusyKind::from_error(&e).is_some() =>
            {
                words = &LEGACY_SHUTDOWN;
            }
            _ => {}
        }
    }
    let sent = Instant::now();
    match conn.call(words).await {
        Outcome::ErrorReply(e) => ShutdownOutcome::Refused(e),
        Outcome::Reply(v) => ShutdownOutcome::Failed(format!("unexpected reply {v:?}")),
        Outcome::Lost(_) => match wait_refused(endpoint, SHUTDOWN_CONFIRM_LIMIT).await {
            true => ShutdownOutcome::Confirmed {
                elapsed_ms: sent.elapsed().as_millis() as u64,
                command: Some(words.join(" ")),
            },
            false => ShutdownOutcome::Failed(
                "the connection closed but the server still accepts connections".into(),
            ),
        },
    }
}

/// True once a connection to `endpoint` is refused (or its socket file is gone).
pub async fn wait_refused(endpoint: &Endpoint, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let refused = match endpoint {
            Endpoint::Tcp { host, port, .. } => {
                tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .is_err()
            }
            Endpoint::Unix { path } => tokio::net::UnixStream::connect(path).await.is_err(),
        };
        if refused {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Start time (field 22 of /proc/PID/stat, clock ticks since boot) of a local process.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// SIGKILL a local pid, only if it is still the process the snapshot saw (same start time).
pub fn sigkill(pid: u32, start_ticks: u64) -> Result<(), String> {
    match process_start_ticks(pid) {
        Some(t) if t == start_ticks => {}
        Some(_) => {
            return Err(format!(
                "pid {pid} now belongs to another process: not signalled"
            ));
        }
        None => return Err(format!("pid {pid} is gone")),
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("kill({pid}, SIGKILL): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_start_time_is_readable() {
        assert!(process_start_ticks(std::process::id()).is_some());
    }
}
