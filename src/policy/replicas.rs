//! `topology.replicas`: the replicas the policy names, the only servers besides the watched one
//! and its sentinels that busyguard connects to with the server's credentials.
//!
//! Any client allowed REPLCONF and PSYNC can register as a "replica" at an address it chooses,
//! and the primary's INFO then lists it: an address a server announced is a claim, not a
//! configuration. So a replica in INFO is watched, asked or promoted only when it is one of
//! these (matched by the addresses a listed name resolved to when the policy loaded), and
//! busyguard then connects to the address the policy wrote, never to the one INFO gave.

use std::net::{IpAddr, SocketAddr};

use super::Secret;

/// How many replicas a policy may name: each is asked once a second during an incident.
pub const MAX_REPLICAS: usize = 16;

/// One `topology.replicas` entry, `host:port`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrustedReplica {
    pub host: String,
    pub port: u16,
    /// What `host` resolved to when the policy loaded.
    pub resolved: Vec<SocketAddr>,
    /// The replica's own credentials (`username`, `password_file`): `None` for the server's.
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl TrustedReplica {
    /// `host:port` as the policy wrote it (brackets around an IPv6 address).
    pub fn address(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    /// Whether the replica a primary's INFO lists as `announced` (`ip:port`, the address its
    /// replica announced) is this one: the same port, and the same name or one of the
    /// addresses the name resolved to.
    pub fn is(&self, announced: &str) -> bool {
        let Some((host, port)) = announced.rsplit_once(':') else {
            return false;
        };
        if port.parse::<u16>().ok() != Some(self.port) {
            return false;
        }
        let host = host.trim_matches(['[', ']']);
        if host.eq_ignore_ascii_case(&self.host) {
            return true;
        }
        host.parse::<IpAddr>()
            .is_ok_and(|ip| self.resolved.contains(&SocketAddr::new(ip, self.port)))
    }
}

/// The listed replica that `announced` is, if one is.
pub fn named<'a>(replicas: &'a [TrustedReplica], announced: &str) -> Option<&'a TrustedReplica> {
    replicas.iter().find(|r| r.is(announced))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(host: &str, port: u16, resolved: &[&str]) -> TrustedReplica {
        TrustedReplica {
            host: host.into(),
            port,
            resolved: resolved.iter().map(|a| a.parse().unwrap()).collect(),
            username: None,
            password: None,
        }
    }

    #[test]
    fn an_announced_address_is_a_listed_replica_only_by_its_port_and_its_name_or_address() {
        let r = listed("redis-b.internal", 6380, &["10.0.0.8:6380"]);
        assert!(r.is("10.0.0.8:6380"));
        assert!(r.is("redis-b.internal:6380"));
        assert!(!r.is("10.0.0.8:6381"), "another port");
        assert!(!r.is("10.0.0.9:6380"), "another address");
        assert!(!r.is("not an address"));
        let v6 = listed("::1", 7000, &["[::1]:7000"]);
        assert!(
            v6.is("::1:7000"),
            "INFO writes an IPv6 address without brackets"
        );
        assert_eq!(v6.address(), "[::1]:7000");
        assert_eq!(
            named(&[r.clone(), v6], "10.0.0.8:6380").map(|r| r.address()),
            Some("redis-b.internal:6380".into())
        );
    }
}
