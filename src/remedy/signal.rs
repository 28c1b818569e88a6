//! SIGKILL to a hung local server (`on_hang.signal`), only while its pid still names the
//! process the healthy snapshot saw: the start time read from `/proc` guards against pid reuse.

use super::gate::Needs;
use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{Observation, SignalTarget};

impl Remedy for SignalTarget {
    const GATE: Gate = Gate::OnDisk;

    /// Its evidence (a hang on this run's own probe, and the process the snapshot saw) is
    /// checked as it is sent: the pid's start time.
    fn needs(&self) -> Needs<'_> {
        Needs::Nothing
    }

    fn not_sent(&self, reason: String, _missing: String) -> Observation {
        Observation::Signal(Err(reason))
    }

    async fn perform(&self, _: &Context<'_>, _: &impl Runtime) -> (Observation, bool) {
        (
            Observation::Signal(sigkill(self.pid, self.start_ticks)),
            false,
        )
    }

    fn unanswered(&self, why: String, _lost: bool) -> Observation {
        Observation::Signal(Err(why))
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
