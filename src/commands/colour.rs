//! Colour for people at a terminal: the state words of `ps` and `status` (healthy green; busy,
//! asking, failing over, hang and the refusals red; down, unreachable, loading, fault, a pause
//! and a hold yellow). Only when stdout is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>); pipes, files and `--json` never get escape codes.
//!
//! It runs after server text was escaped for the terminal (`model::text::for_terminal`), so the
//! only escape codes on the screen are these, and it colours a word only where busyguard writes
//! one of its own columns: after two spaces, before two spaces or the end of the line.

use std::io::IsTerminal;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// The words coloured, and how.
const WORDS: [(&str, &str); 14] = [
    ("healthy", GREEN),
    ("reachable", GREEN),
    ("busy", RED),
    ("asking", RED),
    ("failing_over", RED),
    ("hang", RED),
    ("UNREACHABLE", RED),
    ("REFUSES", RED),
    ("down", YELLOW),
    ("unreachable", YELLOW),
    ("loading", YELLOW),
    ("fault", YELLOW),
    ("PAUSED", YELLOW),
    ("HELD", YELLOW),
];

/// Whether this process's stdout should get colour.
pub fn wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

/// `text` with busyguard's own state words coloured, when `on`.
pub fn paint(text: &str, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let mut painted = body.to_string();
        for (word, colour) in WORDS {
            for (before, after) in [("  ", "  "), ("  ", " "), ("  ", "")] {
                let find = format!("{before}{word}{after}");
                let ends = after.is_empty();
                if (ends && painted.ends_with(&find)) || (!ends && painted.contains(&find)) {
                    let with = format!("{before}{colour}{word}{RESET}{after}");
                    painted = match ends {
                        true => format!("{}{with}", &painted[..painted.len() - find.len()]),
                        false => painted.replacen(&find, &with, 1),
                    };
                    break;
                }
            }
        }
        out.push_str(&painted);
        out.push_str(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_busyguards_own_columns_are_coloured() {
        let text = "cache  busy  incident x  busy for 2s\nother  healthy\n";
        let painted = paint(text, true);
        assert!(
            painted.starts_with(&format!("cache  {RED}busy{RESET}  incident")),
            "{painted:?}"
        );
        assert!(
            painted.contains(&format!("other  {GREEN}healthy{RESET}\n")),
            "{painted:?}"
        );
        // The second `busy` (in "busy for") is text, not a column.
        assert_eq!(painted.matches(RED).count(), 1, "{painted:?}");
        assert_eq!(paint(text, false), text);
    }
}
