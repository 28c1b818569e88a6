//! One writer per state dir. `busyguard run` holds an exclusive `flock` on
//! `<state-dir>/busyguard.lock` for as long as it runs, with its pid written in the file, so a
//! second copy (a manual debug run beside the service) refuses to start instead of sending a
//! second kill, keeping its own shutdown count and forking the trail's chain. The kernel drops the
//! lock when the holder dies, however it dies: a stale file never blocks a start.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The lock file's name in the state dir.
pub const LOCK_FILE: &str = "busyguard.lock";

/// Held for the life of the daemon; dropping it releases the lock.
#[derive(Debug)]
pub struct StateDirLock {
    _lock: Flock<File>,
}

/// Why the state dir could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it.
    Held { path: PathBuf, pid: Option<u32> },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path, pid } => {
                let holder = pid.map_or("another process".to_string(), |p| {
                    format!("busyguard pid {p}")
                });
                write!(
                    f,
                    "the state dir is in use by {holder} (lock {}); stop it first, or give this run its own --state-dir",
                    path.display()
                )
            }
            LockError::Io { path, error } => write!(f, "cannot lock {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for LockError {}

/// Take the state dir at `dir` for this process.
pub fn lock(dir: &Path) -> Result<StateDirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                path,
                pid: text.trim().parse().ok(),
            });
        }
        Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
    };
    // The holder's pid, for the refusal of the next one.
    let written = lock
        .set_len(0)
        .and_then(|_| lock.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(lock, "{}", std::process::id()));
    written.map_err(io)?;
    Ok(StateDirLock { _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process would.
        match lock(dir.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(held);
        assert!(lock(dir.path()).is_ok(), "released on drop");
    }
}
