//! One SLOWLOG entry, as the server logged it, and what names the script in it. SLOWLOG
//! arguments are user data (a script's body, its keys and values): whatever is kept of them is
//! cut here, in one way.

use crate::model::text::cut;

/// SLOWLOG commands that run scripts.
pub const SCRIPT_COMMANDS: &[&str] = &[
    "EVAL",
    "EVALSHA",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL",
    "FCALL_RO",
];

/// How much of a script's first line names it (SLOWLOG arguments are user data).
pub const SCRIPT_CHARS: usize = 64;
/// Characters kept of each SLOWLOG argument (the script body included) in a record.
pub const MAX_ARG_CHARS: usize = 64;
/// SLOWLOG arguments kept in a record (the command name included).
pub const MAX_ARGS: usize = 8;

/// One SLOWLOG entry, as the server logged it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlowEntry {
    pub id: u64,
    pub at_unix_s: u64,
    pub duration_us: u64,
    /// The command and its arguments (the server cuts long ones).
    pub args: Vec<String>,
    pub client_addr: String,
    pub client_name: String,
}

impl SlowEntry {
    /// The script command (`EVAL`, `FCALL` ...) and what names the script: the function's name,
    /// the SHA, or the first line of the body; `None` for any other command.
    pub fn script(&self) -> Option<(String, String)> {
        let command = self.args.first()?.to_ascii_uppercase();
        if !SCRIPT_COMMANDS.contains(&command.as_str()) {
            return None;
        }
        let named = self.args.get(1).map_or("", String::as_str);
        let first_line = named
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        Some((command, cut(first_line, SCRIPT_CHARS)))
    }
}

/// Arguments as a record may keep them: the first [`MAX_ARGS`], each cut to [`MAX_ARG_CHARS`].
pub fn cut_args<'a>(args: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    args.into_iter()
        .take(MAX_ARGS)
        .map(|a| cut(a, MAX_ARG_CHARS))
        .collect()
}
