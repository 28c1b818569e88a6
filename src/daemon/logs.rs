//! The two log formats a log system can index, each line one event:
//!
//! - text is logfmt (`ts=... level=warn msg="unkillable: UNKILLABLE Sorry ..." instance=cache-01
//!   incident=... event=unkillable`): a short human message and flat `key=value` pairs, without
//!   the record's whole detail (that is in the audit trail, and in JSON);
//! - JSON is one object a line whose `detail` is an object, not a string holding JSON.
//!
//! Under journald (`JOURNAL_STREAM` set) each line starts with its syslog priority (`<3>` error
//! ... `<7>` debug), which journald turns into the entry's priority, and carries no timestamp of
//! its own.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The field an event record's detail travels in (JSON text), shown as an object in JSON and
/// left out of text lines.
pub const DETAIL_FIELD: &str = "detail";

/// syslog priority of a tracing level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// How a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// One formatter for both formats, with or without journald's prefix.
pub struct Lines {
    pub format: LogFormat,
    pub journald: bool,
}

/// An event's fields, in order, as JSON values.
#[derive(Default)]
struct Fields(Vec<(String, Value)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), Value::from(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name().to_string(), Value::from(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name().to_string(), Value::from(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name().to_string(), Value::from(value)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name().to_string(), Value::from(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here through Display, `?x` through Debug.
        self.0
            .push((field.name().to_string(), Value::from(format!("{value:?}"))));
    }
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = event.metadata().level();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if self.journald {
            write!(writer, "<{}>", priority(level))?;
        }
        let ts =
            (!self.journald).then(|| crate::model::clock::rfc3339(crate::model::clock::unix_ms()));
        let line = match self.format {
            LogFormat::Json => json_line(ts, level, fields),
            LogFormat::Logfmt => logfmt_line(ts, level, fields),
        };
        writeln!(writer, "{line}")
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// `{"timestamp":..., "level":..., "message":..., fields...}`, `detail` parsed into an object.
fn json_line(ts: Option<String>, level: &Level, fields: Fields) -> String {
    let mut object = Map::new();
    if let Some(ts) = ts {
        object.insert("timestamp".into(), Value::from(ts));
    }
    object.insert(
        "level".into(),
        Value::from(level_name(level).to_uppercase()),
    );
    for (name, value) in fields.0 {
        let value = match (name.as_str(), value) {
            (DETAIL_FIELD, Value::String(text)) => {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            }
            (_, value) => value,
        };
        object.insert(name, value);
    }
    Value::Object(object).to_string()
}

/// `ts=... level=... msg="..." key=value ...`, without the record's detail.
fn logfmt_line(ts: Option<String>, level: &Level, fields: Fields) -> String {
    let mut line = String::new();
    if let Some(ts) = ts {
        line.push_str(&format!("ts={ts} "));
    }
    line.push_str(&format!("level={}", level_name(level)));
    let (message, rest): (Vec<_>, Vec<_>) = fields.0.into_iter().partition(|(n, _)| n == "message");
    for (_, value) in message {
        line.push_str(&format!(" msg={}", logfmt_value(&value)));
    }
    for (name, value) in rest.into_iter().filter(|(n, _)| n != DETAIL_FIELD) {
        line.push_str(&format!(" {name}={}", logfmt_value(&value)));
    }
    line
}

/// A logfmt value: bare when it is one word, else quoted with `"` and `\` escaped; control
/// characters (a server's text) escaped, so one event is one line.
fn logfmt_value(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if bare {
        return text;
    }
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c if c.is_control() => quoted.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_what_is_not_one_word_and_leaves_the_detail_out() {
        let fields = Fields(vec![
            (
                "message".into(),
                Value::from("unkillable: UNKILLABLE \"Sorry\""),
            ),
            ("instance".into(), Value::from("cache-01")),
            ("dry_run".into(), Value::from(false)),
            (DETAIL_FIELD.into(), Value::from("{\"reply\":\"x\"}")),
            ("reason".into(), Value::from("a\nb")),
        ]);
        let line = logfmt_line(Some("T".into()), &Level::WARN, fields);
        assert_eq!(
            line,
            r#"ts=T level=warn msg="unkillable: UNKILLABLE \"Sorry\"" instance=cache-01 dry_run=false reason="a\nb""#
        );
    }

    #[test]
    fn json_holds_the_detail_as_an_object() {
        let fields = Fields(vec![
            ("message".into(), Value::from("killed")),
            (
                DETAIL_FIELD.into(),
                Value::from("{\"command\":\"SCRIPT KILL\"}"),
            ),
        ]);
        let line: Value = serde_json::from_str(&json_line(None, &Level::INFO, fields)).unwrap();
        assert_eq!(line["detail"]["command"], "SCRIPT KILL");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "killed");
    }
}
