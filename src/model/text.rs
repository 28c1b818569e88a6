//! Text shortened for a record, a log line or a notification, in one way everywhere: server
//! replies and user data (SLOWLOG arguments) are cut, never copied whole; and made safe for a
//! terminal, since a server (or a script's caller) writes what it likes into them.

/// Text cut to `max` characters, with `...` when something was cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(max).collect::<String>())
    }
}

/// `text` with its control characters (escape sequences among them: a server's reply can hold
/// any byte) written as `\u{..}`, so that printing it to a terminal prints it, and does not
/// drive the terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, |_| false)
}

/// A whole output for a terminal (`status`, `ps`): [`printable`] but for its line breaks and
/// tabs, so that what a server wrote anywhere in it is shown, not obeyed.
pub fn for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, |c| c == '\n' || c == '\t')
}

fn escaped(text: &str, keep: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    let escape = |c: char| c.is_control() && !keep(c);
    if !text.chars().any(escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| match escape(c) {
                true => c.escape_unicode().to_string(),
                false => c.to_string(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            printable("BUSY \x1b[2J\x1b]0;pwned\x07 ok"),
            "BUSY \\u{1b}[2J\\u{1b}]0;pwned\\u{7} ok"
        );
        assert_eq!(printable("plain é text"), "plain é text");
        assert_eq!(
            for_terminal("a\tb\nc\x1b[2J\u{9b}"),
            "a\tb\nc\\u{1b}[2J\\u{9b}"
        );
    }
}
