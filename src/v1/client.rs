//! Calls v1 gateways over pingora's pooled HTTP connector, with the Cloud Controller's headers
//! (`Content-Type` and `Accept` JSON, `X-VCAP-Request-ID`, `X-VCAP-Service-Token`) and the
//! broker's connect and response deadlines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::wire::{interpret_failure, interpret_provision};
use super::{BrokerError, BrokerFailure, ProvisionRequest, ProvisionResponse, CONFIGURATIONS_PATH};
use crate::config::Broker;
use crate::metrics::Metrics;

/// Largest broker answer read; a larger one is a bad response.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long an idle pooled broker connection is kept. Short, so a broker's own keep-alive
/// timeout (often 5 s or more) rarely closes a connection we are about to reuse.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// Everything but RFC 3986 unreserved characters is escaped in the service id's path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub struct V1Client {
    connector: Connector,
    metrics: Arc<Metrics>,
}

/// What one broker call looked like, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct BrokerCall {
    /// The broker's HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    pub duration: Duration,
}

/// One raw exchange's outcome.
struct Answer {
    status: u16,
    body: Bytes,
}

impl V1Client {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        V1Client {
            connector: Connector::new(None),
            metrics,
        }
    }

    /// `POST /gateway/v1/configurations`.
    pub async fn provision(
        &self,
        broker: &Broker,
        request_id: &str,
        request: &ProvisionRequest<'_>,
        originating_identity: Option<&str>,
    ) -> (Result<ProvisionResponse, BrokerError>, BrokerCall) {
        let path = format!("{}{CONFIGURATIONS_PATH}", broker.target.base_path);
        // Serializing borrowed strings and JSON values cannot fail.
        let body = serde_json::to_vec(request).unwrap_or_default();
        let started = Instant::now();
        let answer = self
            .exchange(
                broker,
                "POST",
                &path,
                Some(Bytes::from(body)),
                request_id,
                originating_identity,
            )
            .await;
        let call = BrokerCall {
            status: answer.as_ref().ok().map(|a| a.status),
            duration: started.elapsed(),
        };
        let result = answer.and_then(|a| interpret_provision(a.status, &a.body));
        self.observe(broker, "provision", &call, result.as_ref().err());
        let result = result.map_err(|kind| BrokerError {
            uri: format!("{}{CONFIGURATIONS_PATH}", broker.target.display_url),
            method: "POST",
            kind,
        });
        (result, call)
    }

    /// `DELETE /gateway/v1/configurations/<service_id>` (no body, JSON Content-Type anyway:
    /// vcap-services-base gateways require it).
    pub async fn deprovision(
        &self,
        broker: &Broker,
        request_id: &str,
        service_id: &str,
    ) -> Result<(), BrokerError> {
        let encoded = utf8_percent_encode(service_id, PATH_SEGMENT).to_string();
        let path = format!("{}{CONFIGURATIONS_PATH}/{encoded}", broker.target.base_path);
        let started = Instant::now();
        let answer = self
            .exchange(broker, "DELETE", &path, None, request_id, None)
            .await;
        let call = BrokerCall {
            status: answer.as_ref().ok().map(|a| a.status),
            duration: started.elapsed(),
        };
        let result = answer.and_then(|a| {
            if (200..300).contains(&a.status) {
                Ok(())
            } else {
                Err(interpret_failure(a.status, &a.body))
            }
        });
        self.observe(broker, "deprovision", &call, result.as_ref().err());
        result.map_err(|kind| BrokerError {
            uri: format!(
                "{}{CONFIGURATIONS_PATH}/{encoded}",
                broker.target.display_url
            ),
            method: "DELETE",
            kind,
        })
    }

    fn observe(
        &self,
        broker: &Broker,
        operation: &str,
        call: &BrokerCall,
        failure: Option<&BrokerFailure>,
    ) {
        let code = call
            .status
            .map_or_else(|| "error".to_string(), |s| s.to_string());
        let m = &self.metrics;
        m.broker_requests
            .with_label_values(&[&broker.name, operation, &code])
            .inc();
        m.broker_request_duration
            .with_label_values(&[&broker.name, operation])
            .observe(call.duration.as_secs_f64());
        if let Some(failure) = failure {
            m.broker_errors
                .with_label_values(&[&broker.name, failure.kind()])
                .inc();
        }
    }

    /// One request under the broker's whole-response deadline. A DELETE that failed on a
    /// pooled connection is retried once on a fresh one (it is idempotent). A POST never is:
    /// the broker may have read it before the connection broke, and a replay could provision
    /// twice.
    async fn exchange(
        &self,
        broker: &Broker,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        request_id: &str,
        originating_identity: Option<&str>,
    ) -> Result<Answer, BrokerFailure> {
        let attempt = async {
            let mut retried = false;
            loop {
                let header = request_header(
                    broker,
                    method,
                    path,
                    body.as_ref(),
                    request_id,
                    originating_identity,
                )
                .map_err(|e| BrokerFailure::Unreachable(e.to_string()))?;
                match self.once(broker, header, body.clone()).await {
                    Err((e, reused))
                        if method == "DELETE" && reused && !retried && stale_connection(&e) =>
                    {
                        retried = true
                    }
                    Err((e, _)) => return Err(failure_of(&e)),
                    Ok(answer) => return Ok(answer),
                }
            }
        };
        match tokio::time::timeout(broker.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(BrokerFailure::Timeout),
        }
    }

    async fn once(
        &self,
        broker: &Broker,
        header: RequestHeader,
        body: Option<Bytes>,
    ) -> Result<Answer, (Box<Error>, bool)> {
        let peer = peer(broker);
        let (mut session, reused) = self
            .connector
            .get_http_session(&peer)
            .await
            .map_err(|e| (e, false))?;
        let result = async {
            session.write_request_header(Box::new(header)).await?;
            if let Some(body) = body {
                session.write_request_body(body, true).await?;
            }
            session.finish_request_body().await?;
            session.read_response_header().await?;
            let status = session
                .response_header()
                .map(|h| h.status.as_u16())
                .unwrap_or(0);
            let mut buf = BytesMut::new();
            while let Some(chunk) = session.read_response_body().await? {
                if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Error::e_explain(
                        ErrorType::InvalidHTTPHeader,
                        "broker answer too large",
                    );
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                body: buf.freeze(),
            })
        }
        .await;
        match result {
            Ok(answer) => {
                self.connector
                    .release_http_session(session, &peer, Some(POOL_IDLE))
                    .await;
                Ok(answer)
            }
            Err(e) => Err((e, reused)),
        }
    }
}

fn peer(broker: &Broker) -> HttpPeer {
    let t = &broker.target;
    let mut peer = HttpPeer::new(t.addr, t.tls, t.host.clone());
    peer.options.connection_timeout = Some(broker.connect_timeout);
    peer.options.total_connection_timeout = Some(broker.connect_timeout);
    peer.options.idle_timeout = Some(POOL_IDLE);
    peer
}

fn request_header(
    broker: &Broker,
    method: &str,
    path: &str,
    body: Option<&Bytes>,
    request_id: &str,
    originating_identity: Option<&str>,
) -> pingora::Result<RequestHeader> {
    let mut h = RequestHeader::build(method, path.as_bytes(), Some(8))?;
    h.insert_header("Host", &broker.target.authority)?;
    h.insert_header("Content-Type", "application/json")?;
    h.insert_header("Accept", "application/json")?;
    h.insert_header("X-VCAP-Request-ID", request_id)?;
    h.insert_header("X-VCAP-Service-Token", broker.token.expose())?;
    if let Some(identity) = originating_identity {
        h.insert_header("X-Broker-API-Originating-Identity", identity)?;
    }
    h.insert_header("Content-Length", body.map_or(0, Bytes::len).to_string())?;
    Ok(h)
}

/// Errors that on a reused connection mean "the broker had closed it", not "the broker failed".
fn stale_connection(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::WriteError | ErrorType::ReadError
    ) && !matches!(e.etype(), ErrorType::ReadTimedout)
}

fn failure_of(e: &Error) -> BrokerFailure {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            BrokerFailure::Timeout
        }
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error => {
            BrokerFailure::Malformed {
                status: 0,
                detail: format!("not a valid HTTP answer ({})", e.etype().as_str()),
                service_id: None,
            }
        }
        _ => BrokerFailure::Unreachable(e.etype().as_str().to_string()),
    }
}
