//! PEM files as the policy names them (`redis.tls.ca_file`, `cert_file`, `key_file`): parsed
//! when the policy loads, so a wrong file is a `check` error naming the key, not a failed
//! handshake at 3 a.m. Pure: the bytes come from the policy's reader.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates in a PEM file, or why there are none.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate file ({e})"))?;
    match certs.is_empty() {
        true => Err("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into()),
        false => Ok(certs),
    }
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1), or why there is none. The error
/// never quotes the file.
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| "holds no PEM private key (`-----BEGIN PRIVATE KEY-----`)".to_string())
}
