//! The proxy's own log filter, changeable while it runs: the admin API's
//! `POST /logging?level=debug` (or any `EnvFilter` directive, such as
//! `remora_proxy=debug,hyper=info`) swaps it through tracing-subscriber's
//! reload layer, and `GET /logging` shows it.

use std::sync::OnceLock;

use http::{Method, StatusCode};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The handle `init` installed; absent in tests and libraries that never
/// called it.
static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Why the filter could not be changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogLevelError {
    /// The directive does not parse; the parser's message follows.
    #[error("invalid log directive `{directive}`: {reason}")]
    Invalid {
        /// As given.
        directive: String,
        /// The `EnvFilter` parser's message.
        reason: String,
    },
    /// No reloadable subscriber was installed (see [`init`]).
    #[error("the log level cannot be changed: no reloadable subscriber was installed")]
    NotInstalled,
    /// The subscriber is gone (the process is exiting).
    #[error("the log level cannot be changed: {0}")]
    Reload(String),
}

/// Installs the process's subscriber: text lines on stderr, filtered by
/// `RUST_LOG` if it parses, else by `default`; the filter can be replaced
/// later with [`set`]. Call once, first thing in `main`.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs());
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = HANDLE.set(handle);
    }
}

/// Whether log lines get terminal colours: only when stderr is a terminal
/// and `NO_COLOR` is unset, so that `docker logs`, files and pipes get
/// plain text.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// The filter in force, as directives (e.g. `info` or
/// `remora_proxy=debug,hyper=info`); `None` without [`init`].
pub fn current() -> Option<String> {
    HANDLE.get()?.with_current(|f| f.to_string()).ok()
}

/// Parses `directive` and makes it the filter; returns the filter now in
/// force. A bad directive changes nothing.
pub fn set(directive: &str) -> Result<String, LogLevelError> {
    let filter = parse(directive)?;
    let handle = HANDLE.get().ok_or(LogLevelError::NotInstalled)?;
    handle
        .reload(filter)
        .map_err(|e| LogLevelError::Reload(e.to_string()))?;
    current().ok_or_else(|| LogLevelError::Reload("the subscriber is gone".into()))
}

/// `directive` as a filter, or the parser's complaint.
pub fn parse(directive: &str) -> Result<EnvFilter, LogLevelError> {
    let trimmed = directive.trim();
    let invalid = |reason: String| LogLevelError::Invalid {
        directive: directive.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(invalid("empty directive".into()));
    }
    EnvFilter::builder()
        .with_regex(false)
        .parse(trimmed)
        .map_err(|e| invalid(e.to_string()))
}

/// The admin API's `/logging`: `GET` shows the filter in force; `POST
/// /logging?level=<directive>` replaces it (400 with the parser's message
/// when the directive is bad, 500 when no reloadable subscriber exists).
/// The status and the text of the answer; the admin API sends it.
pub fn admin(method: &Method, query: Option<&str>) -> (StatusCode, String) {
    if method == Method::GET {
        return match current() {
            Some(filter) => (StatusCode::OK, format!("level: {filter}")),
            None => (
                StatusCode::INTERNAL_SERVER_ERROR,
                LogLevelError::NotInstalled.to_string(),
            ),
        };
    }
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "/logging answers GET (show the level) and POST ?level=<directive> (change it)".into(),
        );
    }
    let Some(directive) = query.and_then(|q| query_param(q, "level")) else {
        return (
            StatusCode::BAD_REQUEST,
            "POST /logging needs ?level=<directive>, e.g. level=debug or \
             level=remora_proxy=debug,hyper=info"
                .into(),
        );
    };
    match set(&directive) {
        Ok(filter) => {
            tracing::info!(level = %filter, "log level changed");
            (StatusCode::OK, format!("level: {filter}"))
        }
        Err(e @ LogLevelError::Invalid { .. }) => (StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The percent-decoded value of `name` in a query string (`+` is a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key)? == name).then(|| percent_decode(value))?
    })
}

/// Decodes `%XX` escapes and `+`; `None` if an escape is malformed or the
/// result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
