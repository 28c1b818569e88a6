//! Which EVAL runs, from the server's own log (`redis.log_file`): the one place a busy server
//! names an EVAL. Redis 7.0.1+ and Valkey write, once, as a script first passes the threshold
//! and before any client is answered BUSY:
//!
//! ```text
//! 1234:M 02 Dec 2026 01:55:33.123 # Slow script detected: still in execution after 200 milliseconds. You can try killing the script using the SCRIPT KILL command. Script name is: f_<sha1>.
//! ```
//!
//! Redis 6.2 writes `Lua slow script detected: ... Script SHA1 is: <sha1>`, Redis 7.0.0 no name
//! at all, and Valkey 8.1+ may write the same message as logfmt (`message="Slow script ..."`).
//!
//! The log is read from where it ended at the last healthy answer (so a line from an earlier
//! script is never taken for this one's), at most [`READ_LIMIT`] bytes, and only the file the
//! policy names: a path the server announced (`CONFIG GET logfile`) is not opened.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// The most of the log read at once: the newest bytes since the last healthy answer.
pub const READ_LIMIT: u64 = 256 * 1024;

/// The server's log, and where it ended when the server last answered healthy.
#[derive(Debug)]
pub struct ServerLog {
    path: PathBuf,
    healthy_end: Option<u64>,
}

impl ServerLog {
    pub fn new(path: PathBuf) -> ServerLog {
        ServerLog {
            path,
            healthy_end: None,
        }
    }

    /// The server answered healthy: what its log holds now is from before any script to come.
    pub fn mark_healthy(&mut self) {
        self.healthy_end = std::fs::metadata(&self.path).ok().map(|m| m.len());
    }

    /// The SHA1 of the EVAL that went BUSY, from the lines written since the last healthy
    /// answer; `Err` says why it is not known (no such line, the log unreadable).
    pub fn running_eval(&self) -> Result<String, String> {
        let shown = self.path.display();
        let mut file = std::fs::File::open(&self.path)
            .map_err(|e| format!("the server's log {shown} cannot be read: {e}"))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A log shorter than it was was rotated: everything in it is new.
        let from = match self.healthy_end {
            Some(end) if end <= len => end,
            Some(_) => 0,
            None => return Err("the server's log was not seen before this script".into()),
        }
        .max(len.saturating_sub(READ_LIMIT));
        file.seek(SeekFrom::Start(from))
            .map_err(|e| format!("the server's log {shown}: {e}"))?;
        let mut text = Vec::new();
        file.take(READ_LIMIT)
            .read_to_end(&mut text)
            .map_err(|e| format!("the server's log {shown}: {e}"))?;
        let text = String::from_utf8_lossy(&text);
        text.lines()
            .rev()
            .find_map(script_named)
            .ok_or_else(|| format!("no `Slow script detected` line naming the script in {shown} since the last healthy answer (Redis 7.0.0 names none; is `loglevel` warning or lower?)"))
    }
}

/// The SHA1 a slow-script line names (`f_<sha1>` or `<sha1>`), lower case.
fn script_named(line: &str) -> Option<String> {
    if !line.contains("low script detected") {
        return None;
    }
    let (_, rest) = line
        .split_once("Script name is: ")
        .or_else(|| line.split_once("Script SHA1 is: "))?;
    let name = rest.strip_prefix("f_").unwrap_or(rest);
    let sha: String = name.chars().take_while(char::is_ascii_hexdigit).collect();
    (sha.len() == 40).then(|| sha.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "94b1e6a8b4b4f7d6b8f4c3b2a19e8d7c6b5a4f3e";

    #[test]
    fn each_servers_line_names_the_sha() {
        for line in [
            format!(
                "1:M 02 Dec 2026 01:55:33.123 # Slow script detected: still in execution after 200 milliseconds. You can try killing the script using the SCRIPT KILL command. Script name is: f_{SHA}."
            ),
            format!(
                "1:M 02 Dec 2026 01:55:33.123 # Lua slow script detected: still in execution after 200 milliseconds. You can try killing the script using the SCRIPT KILL command. Script SHA1 is: {SHA}"
            ),
            format!(
                "pid=1 role=master level=warning message=\"Slow script detected: still in execution after 200 milliseconds. You can try killing the script using the SCRIPT KILL command. Script name is: {SHA}.\""
            ),
        ] {
            assert_eq!(script_named(&line).as_deref(), Some(SHA), "{line}");
        }
        assert_eq!(
            script_named("1:M # Slow script detected: still in execution after 200 milliseconds."),
            None
        );
        assert_eq!(script_named("Script name is: nightly"), None);
    }

    #[test]
    fn only_lines_since_the_last_healthy_answer_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redis.log");
        let old = format!(
            "# Slow script detected: ... Script name is: f_{}.\n",
            "a".repeat(40)
        );
        std::fs::write(&path, &old).unwrap();
        let mut log = ServerLog::new(path.clone());
        assert!(log.running_eval().is_err(), "never seen healthy: unknown");
        log.mark_healthy();
        assert!(
            log.running_eval().is_err(),
            "the old line is not this script's"
        );
        std::fs::write(
            &path,
            format!("{old}# Slow script detected: ... Script name is: f_{SHA}.\n"),
        )
        .unwrap();
        assert_eq!(log.running_eval().unwrap(), SHA);
        let missing = ServerLog::new(dir.path().join("nope.log"));
        assert!(
            missing
                .running_eval()
                .unwrap_err()
                .contains("cannot be read")
        );
    }
}
