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
//!
//! A script can write the same line itself (`redis.log(redis.LOG_WARNING, "Slow script
//! detected: ... Script name is: f_<a trusted sha>.")`): in the log it looks exactly like the
//! server's. The server writes its own line once per script, when the threshold passes. So the
//! log names the script only when every slow-script line written since the last healthy answer
//! names the same one: a forged line and the server's true one disagree, and a disagreement is
//! no name at all (the record says the log disagreed; the instance's ladder applies).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// The most of the log read at once: the newest bytes since the last healthy answer.
pub const READ_LIMIT: u64 = 256 * 1024;

/// The server's log, and where it ended when the server last answered healthy.
#[derive(Debug)]
pub struct ServerLog {
    path: PathBuf,
    healthy_end: Option<u64>,
    /// Where it ended when the probe now outstanding was sent.
    at_probe: Option<u64>,
}

impl ServerLog {
    pub fn new(path: PathBuf) -> ServerLog {
        ServerLog {
            path,
            healthy_end: None,
            at_probe: None,
        }
    }

    /// A probe is about to be sent: where the log ends now.
    pub fn before_probe(&mut self) {
        self.at_probe = self.len();
    }

    /// The probe sent last was answered healthy: what the log held when it was sent is from
    /// before any script to come. Where it ends by the time the answer is read may already
    /// hold a line of the next script (which starts the instant the server answered), and a
    /// script that wrote a line at once could otherwise hide it behind the mark.
    pub fn mark_healthy(&mut self) {
        self.healthy_end = self.at_probe.take().or_else(|| self.len());
    }

    fn len(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|m| m.len())
    }

    /// The SHA1 of the EVAL that went BUSY, from the lines written since the last healthy
    /// answer, when they all name the same one; `Err` says why it is not known (no such line,
    /// lines that disagree, the log unreadable).
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
        agreed(text.lines().filter_map(slow_script_line)).map_err(|why| match why {
            None => format!("no `Slow script detected` line naming the script in {shown} since the last healthy answer (Redis 7.0.0 names none; is `loglevel` warning or lower?)"),
            Some(names) => format!(
                "the server's log disagreed: {} `Slow script detected` lines since the last healthy answer name {} (a script can write such a line itself with redis.log; the server writes one per script): no line is believed",
                names.len(),
                names.iter().map(|n| n.as_deref().unwrap_or("no script")).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// The one script every slow-script line names (each line's name, `None` for a line naming
/// none); `Err(None)` when there is no line, `Err(Some(names))` when they disagree.
fn agreed(
    lines: impl Iterator<Item = Option<String>>,
) -> Result<String, Option<Vec<Option<String>>>> {
    let names: Vec<Option<String>> = lines.collect();
    match names.first() {
        None => Err(None),
        Some(Some(first)) if names.iter().all(|n| n.as_ref() == Some(first)) => Ok(first.clone()),
        Some(None) if names.len() == 1 => Err(None),
        Some(_) => Err(Some(names)),
    }
}

/// A slow-script line (the server's, or one a script wrote to look like it), with the SHA1 it
/// names (`None`: it names none, as Redis 7.0.0's).
fn slow_script_line(line: &str) -> Option<Option<String>> {
    line.contains("low script detected")
        .then(|| script_named(line))
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

    /// #34.2: a line a script wrote itself (naming a trusted SHA) beside the server's own
    /// (naming the forger): they disagree, and no name is believed.
    #[test]
    fn lines_that_disagree_name_no_script() {
        let line = |sha: &str| {
            format!(
                "1:M 02 Dec 2026 01:55:33.123 # Slow script detected: still in execution after 200 milliseconds. You can try killing the script using the SCRIPT KILL command. Script name is: f_{sha}."
            )
        };
        let forger = "f".repeat(40);
        let names = |lines: &[String]| agreed(lines.iter().filter_map(|l| slow_script_line(l)));
        assert_eq!(names(&[line(SHA)]), Ok(SHA.to_string()));
        assert_eq!(names(&[line(SHA), line(SHA)]), Ok(SHA.to_string()));
        // Forged before the server's line, and after it.
        for lines in [[line(SHA), line(&forger)], [line(&forger), line(SHA)]] {
            let Err(Some(seen)) = names(&lines) else {
                panic!("believed: {lines:?}")
            };
            assert_eq!(seen.len(), 2);
        }
        // A server that names none (7.0.0) beside a forged line naming one: no name either.
        let unnamed = "1:M 02 Dec 2026 01:55:33.123 # Slow script detected: still in execution after 200 milliseconds.".to_string();
        assert!(matches!(names(&[line(SHA), unnamed.clone()]), Err(Some(_))));
        assert_eq!(names(&[unnamed]), Err(None));
        assert_eq!(names(&[]), Err(None));
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
