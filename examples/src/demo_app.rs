//! The demo app: a tiny HTTP service that says which version answered.
//!
//! Every example and end-to-end test uses it as "the app" behind a sidecar.
//! It serves HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on one port.
//!
//! | path            | answer                                                  |
//! |-----------------|---------------------------------------------------------|
//! | `GET /`, `GET /version` | 200, body `"{version}\n"`                       |
//! | `/echo`         | 200, the request body; `x-echo-method`, `x-echo-path`, and each `x-*` / `end-user` request header as `x-echo-<name>` |
//! | `/status/<code>`| that status (100..=599), body `status <code>\n`         |
//! | `/delay/<ms>`   | waits `ms` (at most 60 s), then like `/version`         |
//! | anything else   | 404 `no such path: <path>\n`                            |
//!
//! Every response carries `x-remora-demo-service` and `x-remora-demo-version`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// What a request body may fail with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response header naming the service that answered.
pub const SERVICE_HEADER: &str = "x-remora-demo-service";
/// The response header naming the version that answered.
pub const VERSION_HEADER: &str = "x-remora-demo-version";
/// The longest `/delay/<ms>` honours; larger values are capped to it.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// The largest body `/echo` reads; larger ones get 413.
pub const MAX_ECHO_BODY: usize = 16 * 1024 * 1024;
/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Who this app instance claims to be.
#[derive(Debug, Clone)]
pub struct DemoApp {
    service: String,
    version: String,
    /// Pre-validated header values, so no response can fail to build.
    service_value: HeaderValue,
    version_value: HeaderValue,
    /// The client mode's tally, served at `/report` and `/report.json`.
    report: Option<crate::demo_client::SharedReport>,
}

impl DemoApp {
    /// An app answering as `service` at `version`. Fails when either is not
    /// usable as an HTTP header value.
    pub fn new(service: &str, version: &str) -> anyhow::Result<Self> {
        let service_value = HeaderValue::from_str(service)
            .map_err(|_| anyhow::anyhow!("--service {service:?} is not a valid header value"))?;
        let version_value = HeaderValue::from_str(version)
            .map_err(|_| anyhow::anyhow!("--version {version:?} is not a valid header value"))?;
        Ok(Self {
            service: service.to_owned(),
            version: version.to_owned(),
            service_value,
            version_value,
            report: None,
        })
    }

    /// Also serves `report` at `/report` (text) and `/report.json`.
    pub fn with_report(mut self, report: crate::demo_client::SharedReport) -> Self {
        self.report = Some(report);
        self
    }

    /// The service name this app reports.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The version this app reports.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Answers one request (see the module docs for the endpoints).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let path = req.uri().path().to_owned();
        let report = self
            .report
            .as_ref()
            .and_then(|r| crate::demo_client::report_response(&path, r));
        let mut resp = if let Some(report) = report {
            report
        } else if path == "/" || path == "/version" {
            if req.method() == Method::GET || req.method() == Method::HEAD {
                self.version_reply()
            } else {
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{} {path}: use GET\n", req.method()),
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                r
            }
        } else if path == "/echo" {
            echo(req).await
        } else if let Some(code) = path.strip_prefix("/status/") {
            status(code)
        } else if let Some(ms) = path.strip_prefix("/delay/") {
            match ms.parse::<u64>() {
                Ok(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms).min(MAX_DELAY)).await;
                    self.version_reply()
                }
                Err(_) => text(
                    StatusCode::BAD_REQUEST,
                    format!("delay {ms:?} is not a number of milliseconds\n"),
                ),
            }
        } else {
            text(StatusCode::NOT_FOUND, format!("no such path: {path}\n"))
        };
        let headers = resp.headers_mut();
        headers.insert(SERVICE_HEADER, self.service_value.clone());
        headers.insert(VERSION_HEADER, self.version_value.clone());
        resp
    }

    fn version_reply(&self) -> Response<Full<Bytes>> {
        text(StatusCode::OK, format!("{}\n", self.version))
    }
}

/// Serves `app` on `listener` (HTTP/1.1 and h2c prior knowledge) until
/// `shutdown` completes, then stops accepting and gives in-flight requests
/// up to five seconds to finish.
pub async fn serve(
    listener: TcpListener,
    app: DemoApp,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = Arc::new(app);
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                // Per-connection errors (e.g. the peer reset before accept)
                // must not stop the server; back off briefly on EMFILE & co.
                Err(e) => {
                    eprintln!("remora-demo-app: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let svc = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(app.handle(req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client hanging up mid-request is normal for a demo app.
            let _ = conn.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("remora-demo-app: in-flight requests still running after {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

/// `/status/<code>`: the asked-for status, or 400 saying why not.
fn status(code: &str) -> Response<Full<Bytes>> {
    match code.parse::<u16>() {
        Ok(n @ 100..=599) => match StatusCode::from_u16(n) {
            Ok(s) => text(s, format!("status {n}\n")),
            Err(_) => text(StatusCode::BAD_REQUEST, format!("bad status {code:?}\n")),
        },
        Ok(_) => text(
            StatusCode::BAD_REQUEST,
            format!("status {code} is outside 100..=599\n"),
        ),
        Err(_) => text(
            StatusCode::BAD_REQUEST,
            format!("status {code:?} is not a number\n"),
        ),
    }
}

/// `/echo`: the request body back, with the request's method, path and
/// `x-*` / `end-user` headers as `x-echo-*` response headers.
async fn echo<B>(req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_ECHO_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let status = if e.is::<http_body_util::LengthLimitError>() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return text(status, format!("cannot read request body: {e}\n"));
        }
    };
    let mut resp = Response::new(Full::new(body));
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(parts.method.as_str()) {
        headers.insert("x-echo-method", v);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    if let Ok(v) = HeaderValue::from_str(&path) {
        headers.insert("x-echo-path", v);
    }
    // The protocol and host as the app received them: a sidecar that carries
    // HTTP/1.1 over h2 between proxies must hand the app HTTP/1.1 again.
    if let Ok(v) = HeaderValue::from_str(&format!("{:?}", parts.version)) {
        headers.insert("x-echo-version", v);
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert("x-echo-host", v);
    }
    echo_headers(&parts.headers, headers);
    resp
}

/// Copies each `x-*` or `end-user` header of `from` into `to` as
/// `x-echo-<name>`, keeping repeated values.
fn echo_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let n = name.as_str();
        if !(n.starts_with("x-") || n == "end-user") {
            continue;
        }
        if let Ok(echoed) = HeaderName::from_bytes(format!("x-echo-{n}").as_bytes()) {
            to.append(echoed, value.clone());
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests;
