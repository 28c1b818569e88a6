//! Whether a server took over from this one: the one function every path asks (the Sentinel
//! feed, the replica watch, a failover's request and its watch, the fence's last check), so
//! Sentinel's word alone never proves a takeover anywhere.
//!
//! A server took over when it is at an address the policy lists (`topology.replicas`: busyguard
//! sends credentials to no other, and believes nothing of it), is not this server (neither its
//! address nor one of its run ids), and, asked by busyguard over its own connection, answers
//! ROLE `master` with a `master_replid2` that is one of this primary's replication IDs (a
//! promoted replica keeps its primary's ID as its second). See [`crate::model::takeover`].

use super::ASK_LIMIT;
use super::probe::{Connection, Kept, Lost, Outcome};
use crate::model::snapshot::info_field as field;
use crate::model::takeover::{Lineage, Successor};
use crate::policy::replicas::TrustedReplica;
use crate::policy::{Endpoint, RedisTarget};

/// The primary now serving, as a peer names it (Sentinel): a claim, until verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryView {
    pub address: String,
    pub run_id: String,
}

/// What asking says of a server named as the new primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Verified: it took over from this server.
    TookOver(Successor),
    /// Asked, and it did not (why, in words).
    Not(String),
    /// Not known: not listed (never asked), or not reached (why).
    Unknown(String),
}

/// Ask the server at `address` whether it took over from the server of `lineage`, on `kept`
/// (a connection to it, kept between questions). `address` must already be a listed one (see
/// [`listed`]).
pub async fn verify(kept: &mut Kept, address: &str, lineage: &Lineage) -> Verdict {
    if !lineage.is_known() {
        return Verdict::Unknown(
            "this server's run id and replication ID are unknown (no healthy snapshot yet): \
             whether another server continues its history cannot be told"
                .into(),
        );
    }
    match kept
        .ask(ASK_LIMIT, async |conn| {
            verify_on(conn, address, lineage).await
        })
        .await
    {
        Some(verdict) => verdict,
        None => Verdict::Unknown(format!("{address} did not answer within {ASK_LIMIT:?}")),
    }
}

/// [`verify`] on an open connection; `Err` when the connection failed (to be opened anew).
pub async fn verify_on(
    conn: &Connection,
    address: &str,
    lineage: &Lineage,
) -> Result<Verdict, Lost> {
    let ask = |words: &'static [&'static str]| async move {
        match tokio::time::timeout(ASK_LIMIT, conn.call(words)).await {
            Ok(Outcome::Reply(v)) => Ok(Ok(v)),
            Ok(Outcome::ErrorReply(e)) => Ok(Err(e)),
            Ok(Outcome::Lost(_)) | Err(_) => Err(Lost),
        }
    };
    let role = match ask(&["ROLE"]).await? {
        Ok(v) => crate::redis::reply::role_in(&v),
        Err(e) => return Ok(Verdict::Unknown(format!("{address} refused ROLE: {e}"))),
    };
    if role.as_deref() != Some("master") {
        return Ok(Verdict::Not(format!(
            "{address} answers ROLE {}, not master",
            role.as_deref().unwrap_or("unknown")
        )));
    }
    let text = |v: fred::types::Value| v.as_string().unwrap_or_default();
    let replication = match ask(&["INFO", "replication"]).await? {
        Ok(v) => text(v),
        Err(e) => return Ok(Verdict::Unknown(format!("{address} refused INFO: {e}"))),
    };
    let server = match ask(&["INFO", "server"]).await? {
        Ok(v) => text(v),
        Err(e) => return Ok(Verdict::Unknown(format!("{address} refused INFO: {e}"))),
    };
    let run_id = field(&server, "run_id").unwrap_or_default().to_string();
    let replid2 = field(&replication, "master_replid2")
        .unwrap_or_default()
        .to_string();
    Ok(judge(address, run_id, replid2, lineage))
}

/// What a primary's run id and second replication ID say of a takeover.
fn judge(address: &str, run_id: String, replid2: String, lineage: &Lineage) -> Verdict {
    if lineage.is_this_server(&run_id) {
        return Verdict::Not(format!("{address} is this server itself (run id {run_id})"));
    }
    if !lineage.continued_by(&replid2) {
        return Verdict::Not(format!(
            "{address} is a primary whose history does not continue this server's (its \
             master_replid2 `{replid2}` is none of this server's replication IDs): it never \
             replicated from it"
        ));
    }
    Verdict::TookOver(Successor {
        address: address.to_string(),
        run_id,
        replid2,
    })
}

/// The target of `address` when the policy lists it and it is not this server's own address;
/// else why it is never asked.
pub async fn listed(
    primary: &RedisTarget,
    listed: &[TrustedReplica],
    address: &str,
    lineage: &Lineage,
) -> Result<RedisTarget, Verdict> {
    if is_own_address(&primary.endpoint, lineage.tcp_port, address).await {
        return Err(Verdict::Not(format!(
            "{address} is this server's own address"
        )));
    }
    super::listed_target(primary, listed, address).ok_or_else(|| {
        Verdict::Unknown(format!(
            "{address} is not one of `topology.replicas`: busyguard sends no credentials to an \
             address a peer named, and believes nothing of it"
        ))
    })
}

/// Whether `address` (`host:port`, as a peer names it) is the server at `endpoint`: the same
/// host and port as written, or a host that resolves to one of the same addresses; or, for a
/// server on this host (a unix socket, a loopback address), an address of this host at the TCP
/// port the server said it listens on (`tcp_port`).
pub async fn is_own_address(endpoint: &Endpoint, tcp_port: Option<u16>, address: &str) -> bool {
    let Some((named_host, named_port)) = address.rsplit_once(':') else {
        return false;
    };
    let named_host = named_host.trim_matches(['[', ']']);
    let Ok(named_port) = named_port.parse::<u16>() else {
        return false;
    };
    let named = resolve(named_host).await;
    if endpoint.is_local()
        && tcp_port == Some(named_port)
        && named.iter().any(|ip| is_this_hosts(*ip))
    {
        return true;
    }
    let Endpoint::Tcp { host, port, .. } = endpoint else {
        return false;
    };
    if named_port != *port {
        return false;
    }
    named_host.eq_ignore_ascii_case(host) || {
        let ours = resolve(host).await;
        named.iter().any(|ip| ours.contains(ip))
    }
}

/// The addresses `host` resolves to (itself when it is one), within [`ASK_LIMIT`].
async fn resolve(host: &str) -> Vec<std::net::IpAddr> {
    if let Ok(ip) = host.parse() {
        return vec![ip];
    }
    match tokio::time::timeout(ASK_LIMIT, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    }
}

/// Whether `ip` is one of this host's addresses: a socket can be bound to it.
fn is_this_hosts(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lineage() -> Lineage {
        let mut l = Lineage::default();
        l.saw(Some("run-a"), Some("id-a"));
        l
    }

    #[test]
    fn only_a_primary_continuing_this_history_took_over() {
        let took = judge("10.0.0.8:6379", "run-b".into(), "id-a".into(), &lineage());
        assert!(matches!(took, Verdict::TookOver(s) if s.run_id == "run-b"));
        // A primary of another history: a group re-pointed elsewhere, a detached replica.
        let other = judge("10.0.0.9:6379", "run-c".into(), "id-z".into(), &lineage());
        assert!(matches!(other, Verdict::Not(why) if why.contains("never replicated")));
        // This server itself, by run id.
        let itself = judge("10.0.0.1:6379", "run-a".into(), "id-a".into(), &lineage());
        assert!(matches!(itself, Verdict::Not(why) if why.contains("this server itself")));
    }

    #[tokio::test]
    async fn this_servers_own_address_is_told_as_written_and_as_resolved() {
        let endpoint = Endpoint::Tcp {
            host: "localhost".into(),
            port: 6379,
            tls: false,
        };
        assert!(is_own_address(&endpoint, None, "localhost:6379").await);
        assert!(is_own_address(&endpoint, None, "127.0.0.1:6379").await);
        assert!(!is_own_address(&endpoint, None, "127.0.0.1:6380").await);
        assert!(!is_own_address(&endpoint, None, "10.255.255.1:6379").await);
        // A local server reached through its socket, named by its TCP port.
        let socket = Endpoint::Unix {
            path: "/run/redis/redis-server.sock".into(),
        };
        assert!(is_own_address(&socket, Some(6379), "127.0.0.1:6379").await);
        assert!(!is_own_address(&socket, Some(6379), "127.0.0.1:6380").await);
        assert!(!is_own_address(&socket, None, "127.0.0.1:6379").await);
        assert!(!is_own_address(&socket, Some(6379), "10.255.255.1:6379").await);
    }
}
