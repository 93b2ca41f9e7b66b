//! The inbound path: a peer proxy's request, forwarded to the app on
//! localhost in the protocol it arrived in.

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;

use super::outbound::{into_downstream_response, prepare_upstream_request};
use crate::error::ProxyError;
use crate::telemetry::{Direction, Observed, Record, Telemetry};
use crate::upstream::{Endpoint, PoolSettings};

/// What the inbound path reads: the app's address and its pool.
#[derive(Debug)]
pub struct Inbound {
    /// The app beside this proxy.
    pub app: Arc<Endpoint>,
    /// Pool settings towards the app.
    pub pool: PoolSettings,
    /// Access log (and, with them, the other observers).
    pub telemetry: Arc<Telemetry>,
}

/// Handles one request: the whole inbound path, outermost first:
///
/// 1. strip hop-by-hop headers;
/// 2. forward to the app over a pooled connection (503 if it is down).
pub async fn handle(inbound: Arc<Inbound>, req: Request<Incoming>) -> Response<Observed> {
    let (mut parts, body) = req.into_parts();
    let mut record = Record::start(
        Arc::clone(&inbound.telemetry),
        Direction::Inbound,
        &mut parts,
    );
    record.set_upstream(inbound.app.address());
    let result = async {
        prepare_upstream_request(&mut parts)?;
        let active = inbound.app.start_request();
        Ok::<_, ProxyError>(
            inbound
                .app
                .send(
                    Request::from_parts(parts, Either::Left(body)),
                    active,
                    &inbound.pool,
                )
                .await?,
        )
    }
    .await;
    let resp = match result {
        Ok(resp) => into_downstream_response(resp),
        Err(e) => {
            tracing::debug!(error = %e, "inbound request failed");
            record.fail(e.flag());
            e.into_response()
        }
    };
    record.observe(resp)
}
