//! A small TCP proxy between busyguard and a real server, for the faults a network makes: it
//! can delay every chunk (latency), black-hole the connections it holds (a partition that
//! leaves them open and silent), reset a connection instead of forwarding a command (a kill or
//! a shutdown lost on the way), move to another backend for new connections (a VIP that moves
//! to the new primary), and keep accepting connections when the backend is gone (a load
//! balancer in front of a stopped server).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the proxy treats traffic.
#[derive(Clone, Debug, Default)]
struct Rules {
    backend: String,
    delay: Duration,
    /// Forward nothing more on the connections open now (new ones still pass).
    black_holed: Vec<u64>,
    /// Reset the connection instead of forwarding a client chunk that holds this text.
    reset_on: Option<String>,
    /// ... the first time only: `reset_on` is cleared once it matched.
    reset_once: bool,
}

#[derive(Default)]
struct Shared {
    rules: Rules,
    /// Every connection accepted so far: (its number, the client's socket).
    open: Vec<(u64, TcpStream)>,
    accepted: u64,
    /// How often `reset_on` matched.
    resets: u64,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
}

impl Proxy {
    /// Listen on a free local port, forwarding to `backend` (`host:port`).
    pub fn start(backend: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared {
            rules: Rules {
                backend: backend.to_string(),
                ..Rules::default()
            },
            ..Shared::default()
        }));
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(client, s));
            }
        });
        Proxy { port, shared }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Add this latency to every chunk, both ways.
    pub fn delay(&self, delay: Duration) {
        self.shared.lock().unwrap().rules.delay = delay;
    }

    /// Stop forwarding on every connection open now, leaving them open (a partition).
    pub fn black_hole(&self) {
        let mut s = self.shared.lock().unwrap();
        let open: Vec<u64> = s.open.iter().map(|(n, _)| *n).collect();
        s.rules.black_holed.extend(open);
    }

    /// Reset the connection instead of forwarding a command that holds `text` (`SCRIPT KILL`).
    pub fn reset_on(&self, text: Option<&str>) {
        let rules = &mut self.shared.lock().unwrap().rules;
        rules.reset_on = text.map(str::to_string);
        rules.reset_once = false;
    }

    /// Reset the first connection that sends a command holding `text`, then forward again.
    pub fn reset_once_on(&self, text: &str) {
        let rules = &mut self.shared.lock().unwrap().rules;
        rules.reset_on = Some(text.to_string());
        rules.reset_once = true;
    }

    /// How often a command was reset instead of forwarded.
    pub fn resets(&self) -> u64 {
        self.shared.lock().unwrap().resets
    }

    /// New connections go to `backend` from now on.
    pub fn retarget(&self, backend: &str) {
        self.shared.lock().unwrap().rules.backend = backend.to_string();
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.lock().unwrap().accepted
    }
}

fn serve(client: TcpStream, shared: Arc<Mutex<Shared>>) {
    let (n, backend) = {
        let mut s = shared.lock().unwrap();
        s.accepted += 1;
        let n = s.accepted;
        s.open.push((n, client.try_clone().unwrap()));
        (n, s.rules.backend.clone())
    };
    let addr: SocketAddr = backend.parse().unwrap();
    // A backend that is gone: accepted all the same, then closed (a load balancer's way).
    let Ok(server) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let up = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let s = shared.clone();
    std::thread::spawn(move || pump(n, up.0, up.1, s, true));
    pump(n, server, client, shared, false);
}

/// Copy `from` to `to` under the rules; `upstream` is the client's direction.
fn pump(
    n: u64,
    mut from: TcpStream,
    mut to: TcpStream,
    shared: Arc<Mutex<Shared>>,
    upstream: bool,
) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(len) = from.read(&mut buf) {
        if len == 0 {
            break;
        }
        let rules = shared.lock().unwrap().rules.clone();
        if rules.black_holed.contains(&n) {
            // Read and drop: the other side sees an open, silent connection.
            continue;
        }
        if upstream
            && let Some(text) = &rules.reset_on
            && String::from_utf8_lossy(&buf[..len]).contains(text.as_str())
        {
            {
                let mut shared = shared.lock().unwrap();
                shared.resets += 1;
                if shared.rules.reset_once {
                    shared.rules.reset_on = None;
                }
            }
            reset(&from);
            let _ = to.shutdown(Shutdown::Both);
            break;
        }
        if !rules.delay.is_zero() {
            std::thread::sleep(rules.delay);
        }
        if to.write_all(&buf[..len]).is_err() {
            break;
        }
    }
    if !shared.lock().unwrap().rules.black_holed.contains(&n) {
        let _ = to.shutdown(Shutdown::Write);
    }
}

/// End the connection without a reply, as a conntrack flush or a middlebox does (the client
/// sees it closed: no answer ever comes).
fn reset(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}
