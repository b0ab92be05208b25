//! Calls v1 gateways through the outbound client, with the Cloud Controller's headers
//! (`Content-Type` and `Accept` JSON, `X-VCAP-Request-ID`, `X-VCAP-Service-Token`) and the
//! broker's connect and response deadlines, and reads what happened as a [`BrokerFailure`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use async_trait::async_trait;

use super::wire::{interpret_failure, interpret_provision, originating_identity};
use super::{ProvisionRequest, CONFIGURATIONS_PATH};
use crate::config::Broker;
use crate::metrics::Metrics;
use crate::outbound::{self, ErrorKind, Idempotency, Limits, Peer, Request, Response};
use crate::service::{
    BrokerAnswer, BrokerCall, BrokerError, BrokerFailure, BrokerInstance, BrokerPort,
    ProvisionOrder,
};

/// Largest broker answer read; a larger one is a failure (see [`failure_of`]).
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
    http: outbound::Client,
    metrics: Arc<Metrics>,
}

impl V1Client {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        V1Client {
            http: outbound::Client::new(),
            metrics,
        }
    }
}

#[async_trait]
impl BrokerPort for V1Client {
    /// `POST /gateway/v1/configurations`. Never sent twice: the broker may have read it before
    /// a connection broke, and a replay could provision a second instance.
    async fn provision(
        &self,
        order: &ProvisionOrder<'_>,
        request_id: &str,
    ) -> BrokerAnswer<BrokerInstance> {
        let broker = &order.plan.broker;
        let path = format!("{}{CONFIGURATIONS_PATH}", broker.target.base_path);
        // Serializing borrowed strings and JSON values cannot fail.
        let body = serde_json::to_vec(&ProvisionRequest::from_order(order)).unwrap_or_default();
        let outgoing = request_to(
            broker,
            Method::POST,
            Idempotency::NotIdempotent,
            &path,
            request_id,
        )
        .header(
            "X-Broker-API-Originating-Identity",
            &originating_identity(order.user_id),
        )
        .body(Bytes::from(body));
        let (answer, call) = self.call(broker, outgoing).await;
        let result = answer
            .map_err(|e| failure_of(&e))
            .and_then(|a| interpret_provision(a.status.as_u16(), &a.body));
        self.observe(broker, "provision", &call, result.as_ref().err());
        let result = result.map_err(|kind| BrokerError {
            uri: format!("{}{CONFIGURATIONS_PATH}", broker.target.display_url),
            method: "POST",
            kind,
        });
        BrokerAnswer { result, call }
    }

    /// `DELETE /gateway/v1/configurations/<service_id>` (no body, JSON Content-Type anyway:
    /// vcap-services-base gateways require it). Idempotent: sent once more on a new
    /// connection when a pooled one turns out closed.
    async fn deprovision(
        &self,
        broker: &Broker,
        service_id: &str,
        request_id: &str,
    ) -> BrokerAnswer<()> {
        let encoded = utf8_percent_encode(service_id, PATH_SEGMENT).to_string();
        let path = format!("{}{CONFIGURATIONS_PATH}/{encoded}", broker.target.base_path);
        let outgoing = request_to(
            broker,
            Method::DELETE,
            Idempotency::Idempotent,
            &path,
            request_id,
        )
        .body(Bytes::new());
        let (answer, call) = self.call(broker, outgoing).await;
        let result = match answer {
            Ok(a) if a.status.is_success() => Ok(()),
            Ok(a) => Err(interpret_failure(a.status.as_u16(), &a.body)),
            // The status says it is gone; the body of a DELETE's answer is never used.
            Err(e) if e.partial().is_some_and(|p| p.status.is_success()) => Ok(()),
            Err(e) => Err(failure_of(&e)),
        };
        self.observe(broker, "deprovision", &call, result.as_ref().err());
        let result = result.map_err(|kind| BrokerError {
            uri: format!(
                "{}{CONFIGURATIONS_PATH}/{encoded}",
                broker.target.display_url
            ),
            method: "DELETE",
            kind,
        });
        BrokerAnswer { result, call }
    }
}

impl V1Client {
    /// One exchange with the broker, pooled, under its connect and whole-answer deadlines.
    async fn call(
        &self,
        broker: &Broker,
        request: Request,
    ) -> (Result<Response, outbound::Error>, BrokerCall) {
        let t = &broker.target;
        let peer =
            Peer::new(t.addr, t.tls, t.host.as_str(), t.authority.as_str()).pooled(POOL_IDLE);
        let limits = Limits {
            connect_timeout: broker.connect_timeout,
            total_timeout: broker.timeout,
            max_body_bytes: MAX_RESPONSE_BYTES,
        };
        let started = Instant::now();
        let answer = self.http.send(&peer, &limits, request).await;
        let status = match &answer {
            Ok(a) => Some(a.status.as_u16()),
            // A too-large answer still came with a status.
            Err(e) => e.partial().map(|p| p.status.as_u16()),
        };
        let call = BrokerCall {
            status,
            duration: started.elapsed(),
        };
        (answer, call)
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
}

/// A request with the Cloud Controller's headers.
fn request_to(
    broker: &Broker,
    method: Method,
    idempotency: Idempotency,
    path: &str,
    request_id: &str,
) -> Request {
    Request::new(method, path, idempotency)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .header("X-VCAP-Request-ID", request_id)
        .header("X-VCAP-Service-Token", broker.token.expose())
}

/// How the Cloud Controller's broker mapping reads an exchange without a usable answer.
fn failure_of(e: &outbound::Error) -> BrokerFailure {
    match e.kind() {
        ErrorKind::Timeout => BrokerFailure::Timeout,
        // A request we could not build never left: nothing to tell but that the broker was
        // not reached.
        ErrorKind::Connect | ErrorKind::Closed | ErrorKind::InvalidRequest => {
            BrokerFailure::Unreachable(e.to_string())
        }
        ErrorKind::Malformed => BrokerFailure::Malformed {
            status: 0,
            detail: e.to_string(),
            service_id: None,
        },
        ErrorKind::TooLarge => match e.partial() {
            // A failure status stays that status's failure; the excerpt is the first bytes.
            Some(p) if !p.status.is_success() => interpret_failure(p.status.as_u16(), &p.body),
            // A success we cannot read whole is an invalid answer, as a 2xx body that is not
            // the expected JSON is.
            p => BrokerFailure::Malformed {
                status: p.map_or(0, |p| p.status.as_u16()),
                detail: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                service_id: None,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Plan, Secret, Target};
    use crate::outbound::test_server::{Answer, Server};

    fn broker(server: &Server) -> Arc<Broker> {
        let url = format!("http://{}", server.addr);
        Arc::new(Broker {
            name: "b".into(),
            target: Target::parse("brokers[0].url", &url).unwrap(),
            token: Secret::new("broker-token"),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        })
    }

    async fn provision(client: &V1Client, broker: &Arc<Broker>) -> BrokerAnswer<BrokerInstance> {
        let plan = Plan {
            guid: "P".into(),
            broker: broker.clone(),
            label: "echo".into(),
            version: "1.0".into(),
            provider: None,
            name: "free".into(),
            unique_id: "echo-free".into(),
        };
        let order = ProvisionOrder {
            plan: &plan,
            space_guid: "S",
            organization_guid: None,
            name: "n",
            email: None,
            user_id: "u",
            gateway_data: None,
            parameters: None,
        };
        client.provision(&order, "rid").await
    }

    /// A server whose every answer has this status and a body one byte over the limit.
    async fn too_large(status: u16) -> Server {
        let answer = Answer::status(status, &"x".repeat(MAX_RESPONSE_BYTES + 1));
        Server::start(move |_, _| answer.clone()).await
    }

    fn client() -> V1Client {
        V1Client::new(Arc::new(Metrics::new()))
    }

    /// The failure a provision meets when the broker answers `status` with a body too large.
    async fn too_large_provision(status: u16) -> BrokerFailure {
        let server = too_large(status).await;
        let BrokerAnswer { result, call } = provision(&client(), &broker(&server)).await;
        assert_eq!(
            call.status,
            Some(status),
            "the access log still sees the status"
        );
        result.unwrap_err().kind
    }

    #[tokio::test]
    async fn a_2xx_too_large_to_read_is_a_malformed_answer() {
        match too_large_provision(200).await {
            BrokerFailure::Malformed {
                status: 200,
                detail,
                service_id: None,
            } => assert!(detail.contains("larger than 1048576 bytes"), "{detail}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failure_too_large_to_read_is_that_status_failure_with_an_excerpt() {
        match too_large_provision(503).await {
            BrokerFailure::BadResponse {
                status: 503,
                description: None,
                body,
            } => assert_eq!(body, "x".repeat(1024)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_2xx_delete_too_large_to_read_is_still_deleted() {
        let server = too_large(200).await;
        client()
            .deprovision(&broker(&server), "svc-1", "rid")
            .await
            .result
            .unwrap();
    }

    #[tokio::test]
    async fn a_delete_dropped_on_a_reused_connection_is_sent_again_on_a_new_one() {
        // The provision leaves its connection pooled; the broker then reads the DELETE on it
        // and closes without answering.
        let server = Server::start(|conn, n| match (conn, n) {
            (0, 0) => Answer::status(
                201,
                r#"{"service_id":"s","configuration":{},"credentials":{}}"#,
            ),
            (0, _) => Answer::Close,
            _ => Answer::status(200, "{}"),
        })
        .await;
        let (client, broker) = (client(), broker(&server));
        provision(&client, &broker).await.result.unwrap();
        client
            .deprovision(&broker, "s", "rid")
            .await
            .result
            .unwrap();
        assert_eq!(server.connections(), 2);
        let heads = server.heads();
        assert_eq!(heads.len(), 3, "{heads:#?}");
        assert!(
            heads[1..].iter().all(|h| h.starts_with("delete ")),
            "{heads:#?}"
        );
    }
}
