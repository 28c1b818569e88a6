//! The prevention check of `busyguard status`: what on an instance lets a script take the
//! server hostage, or hides it until it does, each finding one line with what to change. From
//! the operator guide busyguard grew from: a threshold that can be lower, who may run scripts,
//! no memory limit, a SLOWLOG that cannot show the early warnings, scripts replicated whole,
//! and the scripts that were slowest of late (from the trail).

use std::path::Path;

use crate::engine::early::EarlyWarnings;
use crate::model::snapshot::Snapshot;
use crate::policy::Policy;
use crate::redis::probe::{Connection, Outcome};

/// The server's default busy threshold.
const DEFAULT_THRESHOLD_MS: u64 = 5000;
/// How far back the trail's slow scripts are counted.
const BUSIEST_WINDOW_MS: u64 = 24 * 3_600_000;
/// How many of them are named.
const BUSIEST: usize = 3;

/// Every finding for `p`'s instance, in sentences.
pub async fn findings(
    conn: &Connection,
    p: &Policy,
    snap: &Snapshot,
    trail: Option<&Path>,
) -> Vec<String> {
    let mut out = Vec::new();
    if snap.busy_threshold_ms == Some(DEFAULT_THRESHOLD_MS) && p.on_busy.kill_after.is_zero() {
        out.push("busy-reply-threshold is the default 5000 ms while the policy kills at once: no client is served for the first 5 s of every runaway script, before anyone can act; lower it (CONFIG SET busy-reply-threshold 1000, and in redis.conf) to what your slowest legitimate script needs".into());
    }
    if conn.config("maxmemory").await.as_deref() == Some("0") {
        out.push("maxmemory is 0 (no limit): a script that writes in a loop can take the host's memory; set maxmemory and an eviction policy (maxmemory-policy)".into());
    }
    let line = EarlyWarnings::new(p.early_warning, None).line_ms(snap.busy_threshold_ms);
    if let (Some(line), Some(logged)) = (line, conn.config("slowlog-log-slower-than").await) {
        match logged.parse::<i64>() {
            Ok(us) if us < 0 => out.push("slowlog-log-slower-than is negative: the SLOWLOG is off, so no early warning can be seen; set it to 10000 (10 ms) or less".into()),
            Ok(us) if us as f64 / 1000.0 > line => out.push(format!(
                "slowlog-log-slower-than is {} ms, above the early-warning line ({line:.0} ms): scripts creeping toward the threshold are never logged; set it to {} or less",
                us / 1000,
                (line * 1000.0) as i64
            )),
            _ => {}
        }
    }
    if snap.major_version().is_some_and(|m| m < 7)
        && conn.config("lua-replicate-commands").await.as_deref() == Some("no")
    {
        out.push("lua-replicate-commands is no: replicas replay whole scripts and go busy too (and cannot kill them); set it to yes".into());
    }
    out.extend(script_users(conn).await);
    if let Some(trail) = trail {
        let since = crate::model::clock::unix_ms().saturating_sub(BUSIEST_WINDOW_MS);
        let busiest =
            crate::audit::slow_scripts_since(trail, &p.instance, since).unwrap_or_default();
        for (script, count, longest_ms) in busiest.into_iter().take(BUSIEST) {
            out.push(format!(
                "slow in the last day: `{script}` {count} time(s), up to {longest_ms} ms: a candidate for refactoring (smaller batches, SCAN instead of KEYS, work moved out of the script)"
            ));
        }
    }
    out
}

/// The users that may run scripts, from ACL LIST (when busyguard may read it).
async fn script_users(conn: &Connection) -> Vec<String> {
    let list = match conn.call(&["ACL", "LIST"]).await {
        Outcome::Reply(v) => crate::redis::reply::to_json(&v),
        Outcome::ErrorReply(e) if e.starts_with("NOPERM") => {
            return vec![
                "who may run scripts is unchecked: grant busyguard's user `+acl|list` to see it"
                    .into(),
            ];
        }
        _ => return Vec::new(),
    };
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| {
            let rule = rule.as_str()?;
            let mut words = rule.split_whitespace();
            let name = words.nth(1)?;
            let on = rule.split_whitespace().any(|w| w == "on");
            let grants = rule
                .split_whitespace()
                .filter(|w| runs_scripts(w))
                .collect::<Vec<_>>();
            (on && !grants.is_empty() && !rule.contains("-@scripting")).then(|| {
                format!(
                    "`{name}` may run scripts ({}): allow EVAL, EVALSHA, FCALL and FUNCTION LOAD only to the users that need them (ACL SETUSER {name} -@scripting ...)",
                    grants.join(" ")
                )
            })
        })
        .collect()
}

/// An ACL rule that lets a user run or load scripts.
fn runs_scripts(rule: &str) -> bool {
    matches!(rule, "+@all" | "allcommands" | "+@scripting")
        || ["+eval", "+evalsha", "+fcall", "+function"]
            .iter()
            .any(|p| rule.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_that_run_scripts() {
        for r in [
            "+@all",
            "+@scripting",
            "+eval",
            "+evalsha_ro",
            "+fcall",
            "+function|load",
        ] {
            assert!(runs_scripts(r), "{r}");
        }
        for r in ["+@read", "+get", "-@scripting", "~*"] {
            assert!(!runs_scripts(r), "{r}");
        }
    }
}
