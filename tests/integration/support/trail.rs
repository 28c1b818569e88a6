//! Trails as an earlier run left them, at any date: fixture lines moved in time and new records
//! appended, each chain recomputed so that `audit verify` passes. Tests place their trails
//! relative to the clock they run under, so that none depends on today's date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// `prev` of the very first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Unix ms now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// RFC 3339 UTC with milliseconds, as busyguard writes `ts`.
pub fn rfc3339(unix_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ms as i128 * 1_000_000).unwrap();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap()
}

/// A string field's value in a line written by busyguard (`"key":"value"`).
fn field<'a>(line: &'a str, key: &str) -> (usize, &'a str) {
    let tag = format!("\"{key}\":\"");
    let start = line
        .find(&tag)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + tag.len();
    let end = start + line[start..].find('"').unwrap();
    (start, &line[start..end])
}

fn with_field(line: &str, key: &str, value: &str) -> String {
    let (start, old) = field(line, key);
    format!("{}{value}{}", &line[..start], &line[start + old.len()..])
}

/// Unix ms of a record's `ts` (RFC 3339).
pub fn ms_of(ts: &str) -> u64 {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{ts}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as u64
}

/// `lines` with their `ts` moved so that the newest is `newest_unix_ms` (spacing kept), and
/// the chain recomputed from genesis.
pub fn moved_to(lines: &[&str], newest_unix_ms: u64) -> Vec<String> {
    let ms = |line: &str| ms_of(field(line, "ts").1);
    let newest = lines.iter().map(|l| ms(l)).max().unwrap();
    let moved: Vec<String> = lines
        .iter()
        .map(|l| with_field(l, "ts", &rfc3339(newest_unix_ms - (newest - ms(l)))))
        .collect();
    chained(moved)
}

/// The lines with `prev` recomputed from genesis.
pub fn chained(lines: Vec<String>) -> Vec<String> {
    let mut prev = GENESIS.to_string();
    lines
        .into_iter()
        .map(|l| {
            let line = with_field(&l, "prev", &prev);
            prev = hex::encode(Sha256::digest(line.as_bytes()));
            line
        })
        .collect()
}

/// An operator's `pause` of `instance`, recorded at `at_unix_ms` for `length`, as the daemon
/// writes it (`seq` and `prev` are set by [`chained`] callers).
pub fn pause_record(seq: u64, instance: &str, at_unix_ms: u64, length: Duration) -> String {
    let until = at_unix_ms + length.as_millis() as u64;
    format!(
        r#"{{"ts":"{}","seq":{seq},"instance":"{instance}","incident":null,"event":"operator_command","dry_run":false,"prev":"{GENESIS}","detail":{{"by_uid":1000,"by_user":"ops","command":"pause","reason":"reindex","until":"{}","until_unix_ms":{until}}},"policy":null,"version":"0.1.0"}}"#,
        rfc3339(at_unix_ms),
        rfc3339(until),
    )
}

/// Write the lines as a trail file.
pub fn write(path: &std::path::Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}
