//! A private PKI for the TLS tests, made with the `openssl` command line in a temporary folder:
//! two CAs (the one Redis trusts and an unrelated one), a server certificate that holds only the
//! DNS name `redis.test` (reached by 127.0.0.1, as production reaches servers by IP), a client
//! certificate, and an HTTPS certificate for `localhost` from a third CA (the notifiers' store).

use std::path::PathBuf;
use std::process::Command;

pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("busyguard-pki-")
            .tempdir()
            .unwrap();
        let pki = Pki { dir };
        for ca in ["ca", "other-ca", "web-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=busyguard test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        pki.leaf("server", "ca", "subjectAltName=DNS:redis.test");
        pki.leaf("client", "ca", "extendedKeyUsage=clientAuth");
        pki.leaf("web", "web-ca", "subjectAltName=DNS:localhost");
        pki.leaf("web-by-redis-ca", "ca", "subjectAltName=DNS:localhost");
        pki
    }

    /// A key and a certificate `name.crt` signed by `ca` with the extension line `ext`.
    fn leaf(&self, name: &str, ca: &str, ext: &str) {
        std::fs::write(self.path(&format!("{name}.ext")), format!("{ext}\n")).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// redis.conf lines for a TLS port with the server certificate; `auth_clients` asks every
    /// client for a certificate signed by the CA.
    pub fn redis_config(&self, tls_port: u16, auth_clients: bool) -> Vec<String> {
        let p = |f: &str| self.path(f).display().to_string();
        vec![
            format!("tls-port {tls_port}"),
            format!("tls-cert-file {}", p("server.crt")),
            format!("tls-key-file {}", p("server.key")),
            format!("tls-ca-cert-file {}", p("ca.crt")),
            format!(
                "tls-auth-clients {}",
                if auth_clients { "yes" } else { "no" }
            ),
        ]
    }
}

/// `redis.tls` YAML lines (indented under `redis:`) naming files of `pki`; `None` leaves a key out.
pub fn tls_yaml(pki: &Pki, ca: Option<&str>, client: bool, server_name: Option<&str>) -> String {
    let p = |f: &str| pki.path(f).display().to_string();
    let mut out = String::from("  tls:\n");
    if let Some(ca) = ca {
        out.push_str(&format!("    ca_file: {}\n", p(&format!("{ca}.crt"))));
    }
    if client {
        out.push_str(&format!("    cert_file: {}\n", p("client.crt")));
        out.push_str(&format!("    key_file: {}\n", p("client.key")));
    }
    if let Some(name) = server_name {
        out.push_str(&format!("    server_name: {name}\n"));
    }
    out
}
