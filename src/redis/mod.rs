//! The only code that speaks RESP and owns fred: the probe's connection and the healthy
//! snapshot ([`probe`]), the relay every connection passes through, which reads each reply with
//! a bound and does TCP and TLS ([`relay`], with [`frames`] finding where a reply ends, and
//! [`tls`]), reading replies ([`reply`]), what an incident leaves behind ([`forensics`]),
//! Sentinel's view ([`sentinel`]), the busy primary's listed replicas ([`replicas`]) and whether
//! a server took over from this one ([`takeover`]). Nothing here decides: what is learned goes
//! back to the engine.

pub mod forensics;
pub mod frames;
pub mod probe;
pub mod relay;
pub mod replicas;
pub mod reply;
pub mod sentinel;
pub mod serverlog;
pub mod takeover;
pub mod tls;

use std::time::Duration;

use crate::policy::replicas::TrustedReplica;
use crate::policy::{Endpoint, RedisTarget};

/// Why a connection could not be opened.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectError {
    /// Refused, unreachable, timed out, TLS failure.
    Unreachable(String),
    /// The server answered set-up with an error (WRONGPASS, NOPERM, ...).
    Rejected(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unreachable(why) => write!(f, "unreachable: {why}"),
            ConnectError::Rejected(reply) => write!(f, "rejected: {reply}"),
        }
    }
}

/// An I/O error as an operator reads it: what happened and what to look at, never Rust's Debug
/// text (`Os { code: 111, kind: ConnectionRefused, .. }`).
pub fn plain_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused: nothing listens at the address (is the server running?)".into(),
        K::NotFound => "no such socket or host (is the server running, and is the URL right?)".into(),
        K::PermissionDenied => "permission denied (may busyguard's user open the socket? Debian's needs the redis group)".into(),
        K::TimedOut => "timed out".into(),
        K::ConnectionReset => "connection reset by the peer".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::UnexpectedEof => "the peer closed the connection".into(),
        _ => e.to_string(),
    }
}

/// A client library's error text with any Debug rendering of an I/O error replaced by words:
/// fred writes an `io::Error` with `{:?}` (`Os { code: 111, kind: ConnectionRefused, message:
/// "Connection refused" }`).
pub fn plain_io_text(details: &str) -> String {
    let Some(start) = details.find("Os {") else {
        return details.to_string();
    };
    let message = details[start..]
        .split("message: \"")
        .nth(1)
        .and_then(|m| m.split('"').next())
        .unwrap_or("an I/O error");
    format!("{}{}", &details[..start], message.to_lowercase())
}

/// What one connection attempt or one question to a peer (a sentinel, a replica) may take at
/// most: the watchdog's own probe has no such bound (its PING outstanding is the point).
pub const ASK_LIMIT: Duration = Duration::from_secs(2);

/// TCP keepalive on every connection: first probe after this much idleness, then every
/// [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_RETRIES`] times, before the kernel gives up on the peer.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
pub const KEEPALIVE_RETRIES: u32 = 3;
/// `TCP_USER_TIMEOUT`: bytes sent and not acknowledged this long end the connection.
pub const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(10);

/// The primary's target for a replica the policy names (`topology.replicas`): the same
/// TLS settings and renamed commands, and its own credentials when the policy gives them (else
/// the server's), at the address the policy wrote. There is
/// no way to build one for an address a server announced: see [`crate::policy::replicas`].
pub fn replica_target(primary: &RedisTarget, replica: &TrustedReplica) -> RedisTarget {
    let tls = matches!(primary.endpoint, Endpoint::Tcp { tls: true, .. });
    let mut target = primary.clone();
    target.endpoint = Endpoint::Tcp {
        host: replica.host.clone(),
        port: replica.port,
        tls,
    };
    // The name the primary's certificate holds is not the replica's.
    target.tls.server_name = None;
    if replica.password.is_some() {
        target.username = replica.username.clone();
        target.password = replica.password.clone();
    }
    target
}

/// [`replica_target`] of the listed replica the primary's INFO (or Sentinel) names as
/// `announced`; `None` when the policy does not list it.
pub fn listed_target(
    primary: &RedisTarget,
    listed: &[TrustedReplica],
    announced: &str,
) -> Option<RedisTarget> {
    crate::policy::replicas::named(listed, announced).map(|r| replica_target(primary, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_words_not_debug_text() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(plain_io(&refused).starts_with("connection refused"));
        let fred =
            r#"IO: Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#;
        assert_eq!(plain_io_text(fred), "IO: connection refused");
        assert_eq!(plain_io_text("WRONGPASS invalid"), "WRONGPASS invalid");
    }
}
