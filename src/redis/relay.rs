//! Every connection to a peer (the server, a sentinel, a replica) passes through a relay that
//! reads what the peer sends with a bound, because fred keeps a reply whole until its last
//! byte: a server (or a proxy on the wrong port) that declares a 2 GB INFO and streams it would
//! grow busyguard's memory until every instance it supervises is lost with it.
//!
//! The relay opens the peer's socket itself (TCP with keepalive and `TCP_USER_TIMEOUT`, or a
//! unix socket; TLS here, with the policy's `redis.tls`), then hands fred a unix socket in a
//! private directory (mode 0700, unlinked the moment fred is connected). Bytes go through
//! unchanged; [`Frames`] finds where each reply ends. One reply past [`REPLY_LIMIT`], or more
//! than [`UNASKED_LIMIT`] bytes of replies no request asked for, and the relay drops the
//! connection and says why ([`Relay::cut`]), so the daemon records a fault, not an outage.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

use super::ConnectError;
use super::frames::{Broken, Frame, Frames, Side};
use crate::policy::{Endpoint, RedisTarget};

/// The most one reply may take: an `INFO` is tens of KiB, a SLOWLOG of 128 entries a few
/// hundred at most.
pub const REPLY_LIMIT: usize = 4 << 20;
/// The most a peer may send that no request asked for, over a connection's life (busyguard
/// subscribes to nothing, so a push or an extra reply is never expected).
pub const UNASKED_LIMIT: usize = 64 << 10;

/// How much is read at once, each way.
const CHUNK: usize = 16 << 10;

/// One relay, ended (both sockets closed) when dropped.
pub struct Relay {
    /// Where fred connects; gone once it has.
    pub socket: PathBuf,
    cut: Arc<Mutex<Option<String>>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Why the relay dropped the connection, if it did.
    pub fn cut(&self) -> Option<String> {
        self.cut.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// A peer's stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Open `target` (within its `connect_timeout`) and a relay to it; fred must connect to
/// [`Relay::socket`] within `accept_within`.
pub async fn open(target: &RedisTarget, accept_within: Duration) -> Result<Relay, ConnectError> {
    let limit = target.connect_timeout;
    let peer = tokio::time::timeout(limit, connect(target))
        .await
        .map_err(|_| {
            ConnectError::Unreachable(format!(
                "Timeout: no connection within {} ms",
                limit.as_millis()
            ))
        })??;
    let dir = Private::new().map_err(|e| {
        ConnectError::Unreachable(format!("a private socket for the connection: {e}"))
    })?;
    let socket = dir.0.join("s");
    let listener = UnixListener::bind(&socket).map_err(|e| {
        ConnectError::Unreachable(format!("a private socket for the connection: {e}"))
    })?;
    let cut: Arc<Mutex<Option<String>>> = Arc::default();
    let told = cut.clone();
    let tls_name = match &target.endpoint {
        Endpoint::Tcp {
            host, tls: true, ..
        } => Some(
            target
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| host.clone()),
        ),
        _ => None,
    };
    let task = tokio::spawn(async move {
        let accepted = tokio::time::timeout(accept_within, listener.accept()).await;
        // Nobody else may connect: the path goes as soon as fred is in (or never came).
        drop(listener);
        drop(dir);
        if let Ok(Ok((client, _))) = accepted {
            relay(client, peer, tls_name.as_deref(), &told).await;
        }
    })
    .abort_handle();
    Ok(Relay { socket, cut, task })
}

/// The peer's socket, TLS set up when the target asks for it.
async fn connect(target: &RedisTarget) -> Result<Box<dyn Stream>, ConnectError> {
    let unreachable = |e: std::io::Error| ConnectError::Unreachable(super::plain_io(&e));
    match &target.endpoint {
        Endpoint::Unix { path } => Ok(Box::new(
            UnixStream::connect(path).await.map_err(unreachable)?,
        )),
        Endpoint::Tcp { host, port, tls } => {
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(unreachable)?;
            keep_alive(&tcp);
            if !tls {
                return Ok(Box::new(tcp));
            }
            let config = super::tls::client_config(&target.tls).map_err(ConnectError::Rejected)?;
            let name = target.tls.server_name.as_deref().unwrap_or(host);
            let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
                .map_err(|e| ConnectError::Rejected(format!("TLS: `{name}`: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            match connector.connect(server_name, tcp).await {
                Ok(stream) => Ok(Box::new(stream)),
                // A set-up that cannot work (an unknown CA, a name the certificate lacks, a
                // client certificate required) is the policy's fault: said once, in plain
                // words, not retried as if the server were away.
                Err(e) => Err(match super::tls::explain(&format!("{e:?} {e}"), name) {
                    Some(why) => ConnectError::Rejected(why),
                    None => ConnectError::Unreachable(format!("TLS: {}", super::plain_io(&e))),
                }),
            }
        }
    }
}

/// A peer gone without a word (a partition, a conntrack flush) is noticed by the kernel:
/// unanswered probes while idle, unacknowledged bytes while a PING waits (a busy server's
/// kernel still acknowledges them).
fn keep_alive(tcp: &TcpStream) {
    let sock = socket2::SockRef::from(tcp);
    let _ = tcp.set_nodelay(true);
    let _ = sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(super::KEEPALIVE_IDLE)
            .with_interval(super::KEEPALIVE_INTERVAL)
            .with_retries(super::KEEPALIVE_RETRIES),
    );
    let _ = sock.set_tcp_user_timeout(Some(super::UNACKNOWLEDGED_LIMIT));
}

/// Copy both ways until either side closes or the peer sends more than it may. `tls_name`:
/// the name verified, when the peer speaks TLS.
async fn relay(
    client: UnixStream,
    peer: Box<dyn Stream>,
    tls_name: Option<&str>,
    cut: &Mutex<Option<String>>,
) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut peer_rx, mut peer_tx) = tokio::io::split(peer);
    // Requests sent and not yet answered.
    let asked = AtomicU64::new(0);
    let requests = async {
        let mut frames = Frames::new(Side::Client, usize::MAX);
        let (mut buf, mut ended) = (vec![0u8; CHUNK], Vec::new());
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            ended.clear();
            // fred writes RESP; were it ever not, the replies still bound themselves.
            let _ = frames.feed(&buf[..n], &mut ended);
            asked.fetch_add(ended.len() as u64, Ordering::SeqCst);
            if peer_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let replies = async {
        let mut frames = Frames::new(Side::Server, REPLY_LIMIT);
        let (mut buf, mut ended) = (vec![0u8; CHUNK], Vec::<Frame>::new());
        let mut unasked = 0usize;
        loop {
            let n = match peer_rx.read(&mut buf).await {
                Ok(0) => return,
                // TLS 1.3 tells a refused client certificate after the handshake, at the first
                // read: a fault of the set-up, in plain words.
                Err(e) => {
                    let explained =
                        tls_name.and_then(|name| super::tls::explain(&format!("{e:?} {e}"), name));
                    if let Some(why) = explained {
                        *cut.lock().unwrap() = Some(why);
                    }
                    return;
                }
                Ok(n) => n,
            };
            ended.clear();
            if let Err(broken) = frames.feed(&buf[..n], &mut ended) {
                *cut.lock().unwrap() = Some(said(&broken));
                return;
            }
            for frame in &ended {
                let answers = !frame.push
                    && asked
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| a.checked_sub(1))
                        .is_ok();
                if !answers {
                    unasked += frame.bytes;
                }
            }
            if unasked > UNASKED_LIMIT {
                *cut.lock().unwrap() = Some(format!(
                    "the server sent {unasked} bytes no request asked for (busyguard subscribes to nothing; at most {} KiB are read): the connection was dropped",
                    UNASKED_LIMIT >> 10
                ));
                return;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Whichever way ends first ends the other: both sockets close, and fred sees it.
    tokio::select! {
        _ = requests => {}
        _ = replies => {}
    }
}

/// A broken stream in one sentence.
fn said(broken: &Broken) -> String {
    match broken {
        // Said the same way each time (no byte count): the daemon tells a fault once.
        Broken::TooLarge(_) => format!(
            "a reply from the server passed {} MiB (busyguard reads at most that much of one reply): the connection was dropped",
            REPLY_LIMIT >> 20
        ),
        Broken::TooDeep => format!(
            "a reply from the server nested more than {} levels deep (Redis's own replies nest a few; a client's decoder would run out of stack): the connection was dropped",
            super::frames::MAX_DEPTH
        ),
        Broken::NotResp(what) => {
            format!("the server's reply is not RESP ({what}): the connection was dropped")
        }
    }
}

/// A private directory for one socket (mode 0700), removed with what it holds when dropped.
struct Private(PathBuf);

impl Private {
    fn new() -> std::io::Result<Private> {
        let template = std::env::temp_dir().join("busyguard-XXXXXX");
        nix::unistd::mkdtemp(&template)
            .map(Private)
            .map_err(std::io::Error::from)
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("s"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_directory_is_the_owners_alone_and_goes_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Private::new().unwrap();
        let path = dir.0.clone();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(path.join("s"), b"").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
