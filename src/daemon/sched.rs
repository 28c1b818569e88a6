//! The scheduling a watchdog needs. On a host whose cores are all busy (the runaway script
//! burns one, other work the rest) a thread that wakes for a BUSY reply waits for a core behind
//! every runnable neighbour: the kill lands tens of milliseconds late. keepalived runs its
//! checkers at real-time priority for this reason, as systemd its own watchdog.
//!
//! busyguard's main thread runs the watchdogs (probes, decisions, kills, shutdowns, the trail's
//! appends) and nothing else: it asks for `SCHED_FIFO` at [`PRIORITY`] with
//! `SCHED_RESET_ON_FORK`, so every thread it starts after (notifications, the trail's flushes,
//! name lookups) runs at normal priority. The thread is mostly idle (a wake-up per probe, a few
//! microseconds each), and the kernel's real-time throttling (`sched_rt_runtime_us`, 95% of a
//! core by default) bounds it even if a fault made it spin. Under the unit the service manager
//! sets it (`CPUSchedulingPolicy=fifo`, `CPUSchedulingResetOnFork=yes`); elsewhere busyguard
//! asks for it, which takes root or `CAP_SYS_NICE`, and says what it got.

/// The real-time priority asked for: above ordinary work (which has none), below the kernel's
/// own threads (50) and any audio or watchdog daemon that asks for more.
pub const PRIORITY: i32 = 10;

/// `SCHED_RESET_ON_FORK` (sched(7)): threads and processes this one starts do not inherit its
/// real-time policy.
const RESET_ON_FORK: i32 = 0x4000_0000;

/// Ask for real-time scheduling for the calling thread (`sched_setscheduler(0, ...)` is per
/// thread on Linux), unless it has it already; say what it has.
pub fn favour_this_thread() -> String {
    // SAFETY: sched_getscheduler reads the calling thread's policy; no memory is shared.
    let got = unsafe { libc::sched_getscheduler(0) };
    let current = got & !RESET_ON_FORK;
    if got >= 0 && (current == libc::SCHED_FIFO || current == libc::SCHED_RR) {
        return match got & RESET_ON_FORK {
            0 => "the watchdogs' thread runs at real-time priority, as it was started (the unit's \
                  CPUSchedulingPolicy=), and so does every thread it starts (notifications, disk \
                  flushes): set CPUSchedulingResetOnFork=yes to keep those at normal priority"
                .into(),
            _ => "the watchdogs' thread runs at real-time priority, as it was started (the unit's \
                  CPUSchedulingPolicy=); notifications and disk flushes at normal priority"
                .into(),
        };
    }
    let param = libc::sched_param {
        sched_priority: PRIORITY,
    };
    // SAFETY: `param` outlives the call, which only reads it.
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | RESET_ON_FORK, &param) };
    if set == 0 {
        return format!(
            "the watchdogs' thread runs at real-time priority (SCHED_FIFO {PRIORITY}; notifications \
             and disk flushes at normal priority)"
        );
    }
    let error = std::io::Error::last_os_error();
    format!(
        "normal scheduling: real-time priority was refused ({error}); on a host whose cores are \
         all busy a kill may wait for one. Run busyguard under its unit (CPUSchedulingPolicy=fifo), \
         as root, or with CAP_SYS_NICE"
    )
}
