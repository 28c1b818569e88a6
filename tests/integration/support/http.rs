//! A real HTTP/1.1 receiver on a local port for notification tests: it records every request and
//! answers as the test scripts it (a status, a delay, or never).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// How to answer one request.
pub enum Answer {
    /// Status, extra headers, body.
    Reply(u16, Vec<(&'static str, String)>, String),
    /// Keep the connection open and never answer.
    Never,
    /// Answer this status with a body that never ends (until the client hangs up).
    Endless(u16),
}

type Script = dyn Fn(usize, &Request) -> Answer + Send + Sync;

pub struct HttpReceiver {
    pub port: u16,
    /// Serving HTTPS (as `localhost`, with a certificate of the test's own CA).
    tls: bool,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl HttpReceiver {
    /// Listen on a free port; `script(n, request)` decides the answer to the n-th request (0-based).
    pub fn start(
        script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
    ) -> HttpReceiver {
        HttpReceiver::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    pub fn start_on(
        listener: TcpListener,
        script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
    ) -> HttpReceiver {
        HttpReceiver::listen(listener, None, Arc::new(script))
    }

    /// An HTTPS receiver for `localhost`, its certificate chain and key in PEM files.
    pub fn start_tls(
        cert: &Path,
        key: &Path,
        script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
    ) -> HttpReceiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        HttpReceiver::listen(listener, Some(Arc::new(config)), Arc::new(script))
    }

    fn listen(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        script: Arc<Script>,
    ) -> HttpReceiver {
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let https = tls.is_some();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, script, tls) = (seen.clone(), script.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(stream, &seen, &*script),
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(session, stream), &seen, &*script)
                    }
                });
            }
        });
        HttpReceiver {
            port,
            tls: https,
            requests,
        }
    }

    /// Answer everything with `status` and `body`.
    pub fn always(status: u16, body: &'static str) -> HttpReceiver {
        HttpReceiver::start(move |_, _| Answer::Reply(status, vec![], body.into()))
    }

    /// A policy's `notify` section with one generic webhook to `path` here.
    pub fn notify_yaml(&self, path: &str) -> String {
        format!("notify:\n  - webhook: {{ url: '{}' }}\n", self.url(path))
    }

    pub fn url(&self, path: &str) -> String {
        match self.tls {
            true => format!("https://localhost:{}{path}", self.port),
            false => format!("http://127.0.0.1:{}{path}", self.port),
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: impl Read + Write, seen: &Mutex<Vec<Request>>, script: &Script) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let request = Request {
        method,
        path,
        headers,
        body: String::from_utf8(body).unwrap(),
        at: Instant::now(),
    };
    let n = {
        let mut all = seen.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let stream = reader.get_mut();
    match script(n, &request) {
        Answer::Reply(status, extra, body) => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in extra {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            let _ = stream.write_all(format!("{head}\r\n{body}").as_bytes());
            let _ = stream.flush();
        }
        Answer::Never => std::thread::sleep(Duration::from_secs(120)),
        Answer::Endless(status) => {
            let head = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            if stream.write_all(head.as_bytes()).is_ok() {
                while stream.write_all(&chunk).is_ok() {}
            }
        }
    }
}
