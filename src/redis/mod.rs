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
