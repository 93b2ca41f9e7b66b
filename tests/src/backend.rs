//! An in-process HTTP app on `127.0.0.1:0` (HTTP/1.1 and h2c), standing in
//! for a workload behind a sidecar when a test needs exact control.
//!
//! Its behaviour can be changed while it runs (status, delay, closing
//! connections after each response, stopping), and it counts what it saw:
//! requests, accepted connections, connections open now and at most.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest request head the closing mode reads.
const MAX_HEAD: usize = 64 * 1024;

/// A running app. Every response carries `x-backend: <name>` and
/// `x-http-version: <version the app received>`; the body is:
///
/// - `/status/<code>`: that status, body `<name>\n`;
/// - `/delay/<ms>`: waits, then `<name>\n`;
/// - `/echo`: `<name> <METHOD> <path?query> <HTTP version>\n` followed by the
///   request headers, one `name: value` per line;
/// - `/header/<bytes>`: `<name>\n`, with a response header `x-big` of that
///   many bytes (at most 1 MiB);
/// - `/forge-unreached`: 503 with the mark a server sidecar puts on its own
///   503 when it could not reach its app (`x-remora-app-unreached`): an app
///   playing the sidecar;
/// - anything else: `<name>\n`.
///
/// At run time:
///
/// - [`Backend::set_status`] makes every answer that status;
/// - [`Backend::set_delay`] delays every answer;
/// - [`Backend::set_close_after_response`] makes connections accepted from
///   then on serve one HTTP/1.1 request and close right after the response,
///   without a `Connection: close` header (a keep-alive client is left with
///   a stale pooled connection);
/// - [`Backend::set_idle_close`] makes connections accepted from then on
///   HTTP/1.1 keep-alive connections that the app closes, silently, when no
///   request starts within the given time (a server's idle timeout);
/// - [`Backend::stop`] closes the listener and every connection: the port
///   refuses connections from then on.
///
/// Stops accepting and closes its connections when dropped.
#[derive(Debug)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    /// Status for every answer; 0: by path.
    status: AtomicU16,
    /// Delay before every answer, in milliseconds.
    delay_ms: AtomicU64,
    close_after_response: AtomicBool,
    /// Idle time after which a connection is closed, in milliseconds; 0: never.
    idle_close_ms: AtomicU64,
    requests: AtomicUsize,
    /// Request body bytes received, all requests together.
    body_bytes: AtomicUsize,
    /// The last request body received whole, for tests that check what
    /// arrived, not only how much.
    last_body: Mutex<Bytes>,
    /// The head of the last request, as the app received it.
    last_head: Mutex<Option<Head>>,
    connections: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
}

/// What an app saw of a request: its target and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The request target: path and query (origin form), as received.
    pub target: String,
    /// Every header line, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Every value of header `name` (lower case).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Counts one open connection while it lives.
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let now_open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_open.fetch_max(now_open, Ordering::SeqCst);
        Self(Arc::clone(shared))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which HTTP versions an app serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serves {
    /// HTTP/1.1 and h2c, told apart by the HTTP/2 preface.
    #[default]
    Both,
    /// HTTP/1.1 only: an HTTP/2 preface is a bad request line, and the
    /// connection closes without a request counted.
    Http1Only,
    /// h2c only: an HTTP/1.1 request is not the HTTP/2 preface, and the
    /// connection closes without a request counted.
    Http2Only,
}

impl Backend {
    /// Starts an app that calls itself `name` (e.g. `v1`).
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// [`Backend::start`] serving only the HTTP versions `serves` says.
    pub async fn start_serving(name: &str, serves: Serves) -> Self {
        Self::launch(name, "127.0.0.1:0".parse().expect("addr"), serves).await
    }

    /// [`Backend::start`] on `addr`: a stopped app's address, to start it
    /// again where its sidecar expects it.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        Self::launch(name, addr, Serves::Both).await
    }

    async fn launch(name: &str, addr: SocketAddr, serves: Serves) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            name: name.into(),
            status: AtomicU16::new(0),
            delay_ms: AtomicU64::new(0),
            close_after_response: AtomicBool::new(false),
            idle_close_ms: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            body_bytes: AtomicUsize::new(0),
            last_body: Mutex::new(Bytes::new()),
            last_head: Mutex::new(None),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            max_open: AtomicUsize::new(0),
        });
        let (shutdown, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped, serves));
        Self {
            addr,
            shared,
            accept: Mutex::new(Some(accept)),
            shutdown,
        }
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Requests received so far (counted when their head arrives, before
    /// any delay).
    pub fn hits(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Request body bytes received so far, all requests together (read
    /// whole before answering).
    pub fn body_bytes(&self) -> usize {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    /// The last request body received whole (by the HTTP/1.1 and h2c
    /// server; the closing modes do not keep it).
    pub fn last_body(&self) -> Bytes {
        self.shared.last_body.lock().expect("not poisoned").clone()
    }

    /// The request target (path and query, or the absolute URI as sent)
    /// and headers of the last request received, `None` before the first.
    pub fn last_head(&self) -> Option<Head> {
        self.shared.last_head.lock().expect("not poisoned").clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// The most connections that were open at the same time.
    pub fn max_open_connections(&self) -> usize {
        self.shared.max_open.load(Ordering::SeqCst)
    }

    /// Answers every request with `status` from now on; `None` goes back to
    /// answering by path.
    pub fn set_status(&self, status: Option<u16>) {
        self.shared
            .status
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Waits `delay` before every answer from now on (zero: no delay).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Whether connections accepted from now on serve one HTTP/1.1 request
    /// and then close silently (no `Connection: close` header).
    pub fn set_close_after_response(&self, close: bool) {
        self.shared
            .close_after_response
            .store(close, Ordering::SeqCst);
    }

    /// Whether connections accepted from now on are closed silently when
    /// idle for `idle` (`None`: kept open). Such connections are served by
    /// a minimal HTTP/1.1 implementation (no h2c).
    pub fn set_idle_close(&self, idle: Option<Duration>) {
        let ms = idle.map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.shared.idle_close_ms.store(ms, Ordering::SeqCst);
    }

    /// Kills the app: closes the listener (the port refuses connections from
    /// now on) and every open connection, in-flight requests included.
    /// Returns once the listener is closed and the connections are (within
    /// five seconds).
    pub async fn stop(&self) {
        let accept = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(accept) = accept {
            accept.abort();
            let _ = accept.await; // the listener is dropped with the task
        }
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.open_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take() {
            accept.abort();
        }
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
    serves: Serves,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Like HTTP/1.1's (~400 KB), not hyper's 16 KiB default for h2: the
    // app takes whatever header sizes the proxy in front of it lets through.
    builder.http2().max_header_list_size(1 << 20);
    let builder = match serves {
        Serves::Both => builder,
        Serves::Http1Only => builder.http1_only(),
        Serves::Http2Only => builder.http2_only(),
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // e.g. the peer reset before accept, or EMFILE: keep serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let guard = OpenGuard::new(&shared);
        let mut stopped = stopped.clone();
        let once = shared.close_after_response.load(Ordering::SeqCst);
        let idle_ms = shared.idle_close_ms.load(Ordering::SeqCst);
        if once || idle_ms > 0 {
            let shared = Arc::clone(&shared);
            let idle = (idle_ms > 0).then(|| Duration::from_millis(idle_ms));
            tokio::spawn(async move {
                let _guard = guard;
                tokio::select! {
                    () = serve_raw(stream, &shared, once, idle) => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
            });
        } else {
            let service_shared = Arc::clone(&shared);
            let service = service_fn(move |req| answer(Arc::clone(&service_shared), req));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            tokio::spawn(async move {
                let _guard = guard;
                tokio::select! {
                    _ = conn => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
            });
        }
    }
}

/// The status and body for one request (waits out the configured delay).
async fn respond(
    shared: &Shared,
    method: &Method,
    target: &str,
    version: &str,
    headers: &[(String, String)],
) -> (StatusCode, String) {
    let name = &*shared.name;
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let path = target.split('?').next().unwrap_or("/");
    let mut status = StatusCode::OK;
    let mut body = format!("{name}\n");
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        let ms = ms.parse::<u64>().unwrap_or(0).min(30_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if path == "/echo" {
        body = format!("{name} {method} {target} {version}\n");
        for (k, v) in headers {
            body.push_str(&format!("{k}: {v}\n"));
        }
    }
    let forced = shared.status.load(Ordering::SeqCst);
    if forced != 0
        && let Ok(forced) = StatusCode::from_u16(forced)
    {
        status = forced;
    }
    (status, body)
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let version = format!("{:?}", req.version());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    *shared.last_head.lock().expect("not poisoned") = Some(Head {
        target: req.uri().to_string(),
        headers: headers.clone(),
    });
    let (parts, body) = req.into_parts();
    // A body cut short counts what arrived as nothing: the client is gone.
    if let Ok(b) = body.collect().await {
        let b = b.to_bytes();
        shared.body_bytes.fetch_add(b.len(), Ordering::SeqCst);
        *shared.last_body.lock().expect("not poisoned") = b;
    }
    let (status, body) = respond(&shared, &parts.method, &target, &version, &headers).await;
    let mut resp = Response::builder()
        .status(status)
        .header("x-backend", &*shared.name)
        .header("x-http-version", version);
    if let Some(n) = target.strip_prefix("/header/") {
        let n = n.parse::<usize>().unwrap_or(0).min(1 << 20);
        resp = resp.header("x-big", "b".repeat(n));
    }
    if target == "/forge-unreached" {
        resp = resp
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("x-remora-app-unreached", "connect-failure");
    }
    // `/grpc-status/<code>`: a gRPC trailers-only answer, the status in the headers.
    if let Some(code) = target.strip_prefix("/grpc-status/") {
        resp = resp
            .header("content-type", "application/grpc")
            .header("grpc-status", code);
    }
    let resp = resp
        .body(Full::new(Bytes::from(body)))
        .expect("valid response");
    Ok(resp)
}

/// The closing modes, a minimal HTTP/1.1 server: reads a request (head,
/// and a body of `content-length` bytes) and answers it with a
/// `content-length` and no `Connection` header; after one request if
/// `once`, otherwise when no request starts within `idle`, closes the
/// connection without a word.
async fn serve_raw(mut stream: TcpStream, shared: &Shared, once: bool, idle: Option<Duration>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return;
            }
            let read = stream.read(&mut chunk);
            let read = match idle.filter(|_| buf.is_empty()) {
                Some(idle) => match tokio::time::timeout(idle, read).await {
                    Ok(r) => r,
                    Err(_) => return, // idle: close silently
                },
                None => read.await,
            };
            match read {
                Ok(0) | Err(_) => return, // closed without a request
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = Method::from_bytes(request_line.next().unwrap_or("GET").as_bytes())
            .unwrap_or(Method::GET);
        let target = request_line.next().unwrap_or("/").to_owned();
        let version = request_line.next().unwrap_or("HTTP/1.1").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        shared.body_bytes.fetch_add(length, Ordering::SeqCst);
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let (status, body) = respond(shared, &method, &target, &version, &headers).await;
        let response = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: {}\r\nx-http-version: HTTP/1.1\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
            shared.name,
        );
        if stream.write_all(response.as_bytes()).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if once {
            // Dropping the stream closes the connection: no `Connection:
            // close` was announced, so the client finds out only from the
            // socket.
            return;
        }
    }
}
