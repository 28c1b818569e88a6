//! A real Redis Cluster for the tests and the bench: three primaries joined by
//! `redis-cli --cluster create`, and a replica of the first added by
//! `redis-cli --cluster add-node --cluster-slave`, each a [`RedisServer`] in its own folder.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use super::{RedisServer, Reply, ServerBuild, ServerOptions, wait_for};

const LONG: Duration = Duration::from_secs(30);

/// The lines a Cluster node's config adds.
pub const NODE_CONFIG: [&str; 3] = [
    "cluster-enabled yes",
    "cluster-config-file nodes.conf",
    "cluster-node-timeout 5000",
];

/// A free port whose cluster bus port (port + 10000) is free and below 65536 too.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if port < 55_536 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Three primaries (slots split evenly) and one replica of the first.
pub struct Cluster {
    pub primaries: Vec<RedisServer>,
    pub replica: RedisServer,
}

impl Cluster {
    /// On a provisioned build (`redis-6.2.14`, `valkey-9.1.2`), or Debian's.
    pub fn start_on(build: Option<ServerBuild>) -> Cluster {
        let options = ServerOptions {
            cluster: true,
            build,
            ..Default::default()
        };
        let primaries: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start(options.clone()))
            .collect();
        let replica = RedisServer::start(options);
        let address = |s: &RedisServer| format!("127.0.0.1:{}", s.port);
        let mut create = vec!["--cluster".to_string(), "create".into()];
        create.extend(primaries.iter().map(address));
        create.push("--cluster-yes".into());
        redis_cli(&create);
        let first = node_id(&primaries[0]);
        redis_cli(&[
            "--cluster".into(),
            "add-node".into(),
            address(&replica),
            address(&primaries[0]),
            "--cluster-slave".into(),
            "--cluster-master-id".into(),
            first,
        ]);
        let cluster = Cluster { primaries, replica };
        let field = |s: &RedisServer, k: &str| s.info("replication").get(k).cloned();
        assert!(
            wait_for(LONG, || {
                field(&cluster.replica, "master_link_status").as_deref() == Some("up")
                    && field(&cluster.primaries[0], "connected_slaves").as_deref() == Some("1")
                    && cluster
                        .nodes()
                        .all(|n| cluster_info(n, "cluster_state") == "ok")
                    // Every primary knows the replica as the first's: a node ignores an
                    // election request from a node it does not know.
                    && cluster
                        .primaries
                        .iter()
                        .all(|p| cluster.flags_seen_by(p, &cluster.replica).contains("slave"))
            }),
            "the cluster never formed"
        );
        cluster
    }

    fn nodes(&self) -> impl Iterator<Item = &RedisServer> {
        self.primaries.iter().chain(std::iter::once(&self.replica))
    }

    /// A hash tag (`{t7}`) whose slot the first primary serves (slots 0..=5460).
    pub fn tag_of_first(&self) -> String {
        let mut conn = self.primaries[0].conn();
        (0..)
            .map(|i| format!("{{t{i}}}"))
            .find(|tag| {
                let slot = conn.call(&["CLUSTER", "KEYSLOT", tag]).unwrap();
                matches!(slot, Reply::Int(s) if s <= 5460)
            })
            .unwrap()
    }

    /// What another node (the second primary) says of `server` in CLUSTER NODES: its flags.
    pub fn flags_seen_by_others(&self, server: &RedisServer) -> String {
        self.flags_seen_by(&self.primaries[1], server)
    }

    /// What `observer` says of `server` in CLUSTER NODES: its flags.
    fn flags_seen_by(&self, observer: &RedisServer, server: &RedisServer) -> String {
        let nodes = observer.conn().call(&["CLUSTER", "NODES"]).unwrap();
        let port = format!("127.0.0.1:{}@", server.port);
        nodes
            .text()
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains(&port))
            .and_then(|l| l.split(' ').nth(2))
            .unwrap_or_default()
            .to_string()
    }
}

/// A field of CLUSTER INFO.
pub fn cluster_info(server: &RedisServer, field: &str) -> String {
    let reply = server.conn().call(&["CLUSTER", "INFO"]).unwrap();
    super::parse_info(reply.text().unwrap_or_default())
        .remove(field)
        .unwrap_or_default()
}

fn node_id(server: &RedisServer) -> String {
    let reply = server.conn().call(&["CLUSTER", "MYID"]).unwrap();
    reply.text().expect("CLUSTER MYID").to_string()
}

fn redis_cli(args: &[String]) {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    assert!(
        out.status.success(),
        "redis-cli {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
