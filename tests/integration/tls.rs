//! TLS as production uses it, against Debian's redis-server on a `tls-port` with certificates
//! of a private CA the test makes ([`support::pki`]): mutual TLS with a certificate that holds
//! only a DNS name, reached by IP; each way a handshake goes wrong told as one `probe_fault` in
//! plain words; and the Redis trust store kept apart from the notifiers'.

use std::time::Duration;

use crate::support::http::{Answer, HttpReceiver};
use crate::support::pki::{Pki, tls_yaml};
use crate::support::{self, Daemon, RedisServer, ServerOptions};

const LONG: Duration = Duration::from_secs(20);

/// A server with a TLS port (its unix socket stays plain, for the test's own commands).
fn tls_server(pki: &Pki, auth_clients: bool) -> (RedisServer, u16) {
    let tls_port = support::free_port();
    let server = RedisServer::start(ServerOptions {
        extra: pki.redis_config(tls_port, auth_clients),
        ..Default::default()
    });
    (server, tls_port)
}

fn tls_policy(tls_port: u16, tls: &str, rest: &str) -> String {
    format!(
        "instance: tls\nredis:\n  url: rediss://127.0.0.1:{tls_port}\n{tls}probe:\n  interval: 50ms\n{}{rest}",
        support::ladder("5s", "notify")
    )
}

#[test]
fn mutual_tls_with_a_private_ca_and_a_dns_name_certificate_lands_a_kill() {
    let pki = Pki::new();
    let (server, tls_port) = tls_server(&pki, true);
    let tls = tls_yaml(&pki, Some("ca"), true, Some("redis.test"));
    let daemon = Daemon::start(&tls_policy(tls_port, &tls, ""), &[]);
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    let recovered = daemon.wait_event("recovered", LONG);
    assert_eq!(recovered["detail"]["how"], "killed");
    assert_eq!(server.command_calls("script|kill"), 1);
    assert!(daemon.records_of("probe_fault").is_empty());
    // The connection busyguard made was TLS, with the client certificate.
    let clients = server.conn().call(&["CLIENT", "LIST"]).unwrap();
    assert!(
        clients
            .text()
            .unwrap()
            .contains(&format!("laddr=127.0.0.1:{tls_port}")),
        "{clients:?}"
    );
    let status = daemon.status();
    assert_eq!(status["reachable"], true, "{status}");
    assert_eq!(status["endpoint"], format!("rediss://127.0.0.1:{tls_port}"));
}

#[test]
fn tls_failures_are_probe_faults_in_plain_words_naming_the_key_that_fixes_them() {
    let pki = Pki::new();
    let (server, tls_port) = tls_server(&pki, true);
    let cases = [
        // An unrelated CA: the server's certificate is not trusted.
        (
            tls_yaml(&pki, Some("other-ca"), true, Some("redis.test")),
            "`redis.tls.ca_file`",
        ),
        // No server name: the certificate names redis.test, not 127.0.0.1.
        (
            tls_yaml(&pki, Some("ca"), true, None),
            "`redis.tls.server_name`",
        ),
        // `tls-auth-clients yes` and no client certificate.
        (
            tls_yaml(&pki, Some("ca"), false, Some("redis.test")),
            "`redis.tls.cert_file`",
        ),
    ];
    for (tls, key) in cases {
        let daemon = Daemon::start(&tls_policy(tls_port, &tls, ""), &[]);
        let fault = daemon.wait_event("probe_fault", LONG);
        let reply = fault["detail"]["reply"].as_str().unwrap();
        assert!(
            reply.starts_with("TLS: ") && reply.contains(key),
            "{key}: {fault}"
        );
        assert!(!reply.contains("Custom {"), "no debug text: {reply}");
        // A fault to fix, said once: not a storm of `unreachable`.
        assert!(
            daemon.records_of("unreachable").is_empty(),
            "{:?}",
            daemon.events()
        );
        let status = daemon.status();
        assert!(
            status["error"].as_str().unwrap().contains(key),
            "status says it too: {status}"
        );
    }
    assert_eq!(server.command_calls("script|kill"), 0);
}

#[test]
fn redis_is_trusted_through_the_policy_and_webhooks_through_the_notifiers_own_store() {
    let pki = Pki::new();
    let (server, tls_port) = tls_server(&pki, false);
    // Trusted through SSL_CERT_FILE (the process's store): delivered.
    let trusted = HttpReceiver::start_tls(&pki.path("web.crt"), &pki.path("web.key"), |_, _| {
        Answer::Reply(200, vec![], String::new())
    });
    // Signed by the CA the policy trusts for Redis: that trust must not reach the notifiers.
    let redis_ca_only = HttpReceiver::start_tls(
        &pki.path("web-by-redis-ca.crt"),
        &pki.path("web-by-redis-ca.key"),
        |_, _| Answer::Reply(200, vec![], String::new()),
    );
    let notify = format!(
        "notify:\n  - webhook: {{ url: '{}' }}\n  - webhook: {{ url: '{}' }}\n",
        trusted.url("/hook"),
        redis_ca_only.url("/hook")
    );
    let tls = tls_yaml(&pki, Some("ca"), false, Some("redis.test"));
    let dir = support::state_dir();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, tls_policy(tls_port, &tls, &notify)).unwrap();
    let mut daemon = Daemon::prepare(dir, &[file], &[]);
    daemon.env = vec![(
        "SSL_CERT_FILE".into(),
        pki.path("web-ca.crt").display().to_string(),
    )];
    daemon.spawn();
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    daemon.wait_event("recovered", LONG);
    assert!(
        support::wait_for(LONG, || trusted
            .requests()
            .iter()
            .any(|r| r.json()["data"]["event"] == "busy_detected")),
        "the webhook trusted through SSL_CERT_FILE got the incident: {}",
        daemon.stderr()
    );
    assert!(
        redis_ca_only.requests().is_empty(),
        "the Redis CA is not trusted for webhooks"
    );
}
