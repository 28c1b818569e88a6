//! Text shortened for a record, a log line or a notification, in one way everywhere: server
//! replies and user data (SLOWLOG arguments) are cut, never copied whole.

/// Text cut to `max` characters, with `...` when something was cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(max).collect::<String>())
    }
}
