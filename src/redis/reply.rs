//! Reading what a server answered: a reply as JSON (for records), field-value pairs (CONFIG
//! GET, SENTINEL MASTER), a ROLE's role, and the SLOWLOG as typed entries. Each is read here
//! once, for every caller.

use std::collections::HashMap;

use fred::types::Value;
use serde_json::json;

use crate::model::slowlog::SlowEntry;

/// A fred reply as JSON (maps keep their keys, byte strings are read as UTF-8 lossily).
pub fn to_json(reply: &Value) -> serde_json::Value {
    match reply {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => json!(b),
        Value::Integer(i) => json!(i),
        Value::Double(d) => json!(d),
        Value::String(s) => json!(s.to_string()),
        Value::Bytes(b) => json!(String::from_utf8_lossy(b)),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => serde_json::Value::Object(
            map.clone()
                .inner()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map(|s| s.to_string()).unwrap_or_default(),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}

/// A reply of field-value pairs (CONFIG GET, SENTINEL MASTER: a RESP3 map, or a flat RESP2
/// array) as a map.
pub fn pairs(v: Value) -> HashMap<String, String> {
    match v {
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_string()?)))
            .collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|p| Some((p.first()?.as_string()?, p.get(1)?.as_string()?)))
            .collect(),
        _ => HashMap::new(),
    }
}

/// The role a `ROLE` reply names (`master`, `slave`, `sentinel`).
pub fn role_in(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items.first()?.as_string(),
        _ => None,
    }
}

/// SLOWLOG GET's reply: `[id, unix time, duration µs, [args], client address, client name]`.
pub fn slowlog_entries(reply: &Value) -> Vec<SlowEntry> {
    let json = to_json(reply);
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    json.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(SlowEntry {
                id: e[0].as_u64()?,
                at_unix_s: e[1].as_u64().unwrap_or(0),
                duration_us: e[2].as_u64().unwrap_or(0),
                args: e[3].as_array()?.iter().map(text).collect(),
                client_addr: text(&e[4]),
                client_name: text(&e[5]),
            })
        })
        .collect()
}
