//! TLS to Redis as production runs it: a private CA (`redis.tls.ca_file`), a client certificate
//! for `tls-auth-clients yes` (`cert_file` + `key_file`), and a server name to verify when the
//! certificate names a DNS name but busyguard reaches the server by IP (`server_name`).
//!
//! The Redis trust store is its own: a `ca_file` trusts that CA for this server only, and never
//! touches the roots the notifiers use for Slack and PagerDuty (those follow the system's store
//! and `SSL_CERT_FILE`). The PEM files are parsed when the policy loads, so a wrong file is a
//! `check` error naming the key, not a failure at 3 a.m.; and a handshake that fails is told in
//! one plain sentence with the key that fixes it, not in a library's debug text.

use rustls::{ClientConfig, RootCertStore};

use crate::policy::RedisTls;
use crate::policy::pem::{certificates, private_key};

/// The rustls configuration for one Redis target.
pub fn client_config(tls: &RedisTls) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_pem {
        Some(pem) => {
            for cert in certificates(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("`redis.tls.ca_file`: {e}"))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    match (&tls.cert_pem, &tls.key_pem) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key.expose().as_bytes())?)
            .map_err(|e| format!("`redis.tls.cert_file` and `key_file` do not go together: {e}")),
        _ => Ok(builder.with_no_client_auth()),
    }
    .map(|mut config| {
        // RESP over the stream; no ALPN.
        config.alpn_protocols.clear();
        config
    })
}

/// A TLS failure in one sentence with the policy key that fixes it, when `details` (fred's or
/// rustls's text) is one; `host` is the name that was verified.
pub fn explain(details: &str, host: &str) -> Option<String> {
    let has = |needle: &str| details.contains(needle);
    let why = if has("UnknownIssuer") || has("BadSignature") {
        "the server's certificate is not signed by a CA busyguard trusts: set `redis.tls.ca_file` to the CA that signed it".to_string()
    } else if has("NotValidForName") {
        format!(
            "the server's certificate does not name `{host}`: set `redis.tls.server_name` to a name the certificate holds (its DNS name when the URL uses an IP address)"
        )
    } else if has("Expired") {
        "the server's certificate has expired (or is not valid yet): check the server's `tls-cert-file` and this host's clock".into()
    } else if has("CertificateRequired") || has("certificate required") {
        "the server requires a client certificate (`tls-auth-clients yes`): set `redis.tls.cert_file` and `redis.tls.key_file`".into()
    } else if has("BadCertificate") || has("UnknownCA") || has("DecryptError") {
        "the server refused busyguard's client certificate: it must be signed by the server's `tls-ca-cert-file`".into()
    } else if has("InvalidContentType") || has("CorruptMessage") || has("InvalidMessage") {
        "the server does not speak TLS on this port: use its `tls-port`, or `redis://` for a plain port".into()
    } else if has("InvalidCertificate") || has("AlertReceived") || has("HandshakeFailure") {
        "the TLS handshake failed: check `redis.tls` against the server's `tls-*` settings".into()
    } else {
        return None;
    };
    Some(format!("TLS: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_with_the_key_that_fixes_them() {
        let unknown = "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }";
        let told = explain(unknown, "10.0.0.5").unwrap();
        assert!(told.contains("`redis.tls.ca_file`"), "{told}");
        assert!(!told.contains("Custom"), "{told}");
        let name = "invalid peer certificate: NotValidForNameContext { expected: IpAddress(..) }";
        assert!(explain(name, "127.0.0.1").unwrap().contains("`127.0.0.1`"));
        let required = "received fatal alert: CertificateRequired";
        assert!(
            explain(required, "h")
                .unwrap()
                .contains("`redis.tls.cert_file`")
        );
        assert_eq!(explain("Connection refused (os error 111)", "h"), None);
    }

    #[test]
    fn a_file_without_a_certificate_or_key_is_named_so() {
        assert!(
            certificates(b"not pem")
                .unwrap_err()
                .contains("no PEM certificate")
        );
        assert!(private_key(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").is_err());
    }
}
