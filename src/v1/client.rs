//! Calls v1 gateways through the outbound client, with the Cloud Controller's headers
//! (`Content-Type` and `Accept` JSON, `X-VCAP-Request-ID`, `X-VCAP-Service-Token`) and the
//! broker's connect and response deadlines, and reads what happened as a [`BrokerFailure`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use async_trait::async_trait;

use super::wire::{
    interpret_bind, interpret_failure, interpret_handle_failure, interpret_provision,
    originating_identity, BindRequest, UnbindRequest,
};
use super::{ProvisionRequest, CONFIGURATIONS_PATH};
use crate::config::Broker;
use crate::metrics::Metrics;
use crate::outbound::{self, ErrorKind, Idempotency, Limits, Peer, Request, Response};
use crate::service::{
    BindOrder, BrokerAnswer, BrokerCall, BrokerError, BrokerFailure, BrokerHandle, BrokerInstance,
    BrokerPort, ProvisionOrder, Removal, UnbindOrder,
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
            .map_err(|e| failure_of(&e, interpret_failure))
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
    ) -> BrokerAnswer<Removal> {
        let path = format!("{CONFIGURATIONS_PATH}/{}", segment(service_id));
        let outgoing = request_to(
            broker,
            Method::DELETE,
            Idempotency::Idempotent,
            &format!("{}{path}", broker.target.base_path),
            request_id,
        )
        .body(Bytes::new());
        self.remove(broker, "deprovision", &path, outgoing, interpret_failure)
            .await
    }

    /// `POST /gateway/v1/configurations/<service_id>/handles`. Never sent twice, as provision:
    /// a replay could create a second handle with its own credentials.
    async fn bind(&self, order: &BindOrder<'_>, request_id: &str) -> BrokerAnswer<BrokerHandle> {
        let broker = order.broker;
        let path = format!(
            "{CONFIGURATIONS_PATH}/{}/handles",
            segment(order.service_id)
        );
        // Serializing borrowed strings and JSON values cannot fail.
        let body = serde_json::to_vec(&BindRequest::from_order(order)).unwrap_or_default();
        let outgoing = request_to(
            broker,
            Method::POST,
            Idempotency::NotIdempotent,
            &format!("{}{path}", broker.target.base_path),
            request_id,
        )
        .header(
            "X-Broker-API-Originating-Identity",
            &originating_identity(order.user_id),
        )
        .body(Bytes::from(body));
        let (answer, call) = self.call(broker, outgoing).await;
        let result = answer
            .map_err(|e| failure_of(&e, interpret_handle_failure))
            .and_then(|a| interpret_bind(a.status.as_u16(), &a.body));
        self.observe(broker, "bind", &call, result.as_ref().err());
        let result = result.map_err(|kind| BrokerError {
            uri: format!("{}{path}", broker.target.display_url),
            method: "POST",
            kind,
        });
        BrokerAnswer { result, call }
    }

    /// `DELETE /gateway/v1/configurations/<service_id>/handles/<handle_id>` with the JSON body
    /// the Cloud Controller sent (vcap-services-base decodes the unbind from the body, not
    /// the path). Idempotent, as deprovision.
    async fn unbind(&self, order: &UnbindOrder<'_>, request_id: &str) -> BrokerAnswer<Removal> {
        let broker = order.broker;
        let path = format!(
            "{CONFIGURATIONS_PATH}/{}/handles/{}",
            segment(order.service_id),
            segment(order.handle_id)
        );
        // Serializing borrowed strings and JSON values cannot fail.
        let body = serde_json::to_vec(&UnbindRequest::from_order(order)).unwrap_or_default();
        let outgoing = request_to(
            broker,
            Method::DELETE,
            Idempotency::Idempotent,
            &format!("{}{path}", broker.target.base_path),
            request_id,
        )
        .body(Bytes::from(body));
        self.remove(broker, "unbind", &path, outgoing, interpret_handle_failure)
            .await
    }
}

/// What a DELETE's status says about the thing deleted; `None` when it failed.
fn removal_by(status: u16) -> Option<Removal> {
    match status {
        200..=299 => Some(Removal::Removed),
        404 | 410 => Some(Removal::AlreadyGone),
        _ => None,
    }
}

/// An id as one path segment, every byte but the unreserved ones escaped.
fn segment(id: &str) -> String {
    utf8_percent_encode(id, PATH_SEGMENT).to_string()
}

impl V1Client {
    /// Sends a DELETE and reads its status: 2xx removed it, 404 or 410 says the broker no
    /// longer knows it (the Cloud Controller's v1 client logs "Already deleted" and goes on);
    /// the body of a DELETE's answer is never used.
    async fn remove(
        &self,
        broker: &Broker,
        operation: &str,
        path: &str,
        outgoing: Request,
        classify: fn(u16, &[u8]) -> BrokerFailure,
    ) -> BrokerAnswer<Removal> {
        let (answer, call) = self.call(broker, outgoing).await;
        let result = match answer {
            Ok(a) => {
                removal_by(a.status.as_u16()).ok_or_else(|| classify(a.status.as_u16(), &a.body))
            }
            // A status that settles it counts even when its body was too large to read.
            Err(e) => e
                .partial()
                .and_then(|p| removal_by(p.status.as_u16()))
                .ok_or_else(|| failure_of(&e, classify)),
        };
        self.observe(broker, operation, &call, result.as_ref().err());
        let result = result.map_err(|kind| BrokerError {
            uri: format!("{}{path}", broker.target.display_url),
            method: "DELETE",
            kind,
        });
        BrokerAnswer { result, call }
    }

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

/// How the Cloud Controller's broker mapping reads an exchange without a usable answer;
/// `classify` reads a failure status the operation's way.
fn failure_of(e: &outbound::Error, classify: fn(u16, &[u8]) -> BrokerFailure) -> BrokerFailure {
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
            Some(p) if !p.status.is_success() => classify(p.status.as_u16(), &p.body),
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
    use crate::config::{Plan, Secret, Service, Target};
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
        let service = Arc::new(Service {
            guid: "S1".into(),
            label: "echo".into(),
            provider: None,
            version: "1.0".into(),
            description: String::new(),
            broker: broker.clone(),
            listing: crate::config::ServiceListing {
                url: String::new(),
                long_description: None,
                info_url: None,
                documentation_url: None,
                tags: Vec::new(),
                extra: None,
                unique_id: "S1".into(),
                bindable: true,
                active: true,
            },
        });
        let plan = Plan {
            guid: "P".into(),
            service,
            broker: broker.clone(),
            name: "free".into(),
            unique_id: "echo-free".into(),
            visibility: crate::config::Visibility::Public,
            description: String::new(),
            free: true,
            extra: None,
            active: true,
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
        let removal = client()
            .deprovision(&broker(&server), "svc-1", "rid")
            .await
            .result
            .unwrap();
        assert_eq!(removal, Removal::Removed);
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

    /// A broker under a base path whose URL carries credentials, which no error may repeat.
    fn broker_with_userinfo(server: &Server) -> Broker {
        let url = format!("http://user:url-secret@{}/base/", server.addr);
        Broker {
            name: "b".into(),
            target: Target::parse("brokers[0].url", &url).unwrap(),
            token: Secret::new("broker-token"),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }

    fn raw(json: &str) -> Box<serde_json::value::RawValue> {
        serde_json::value::RawValue::from_string(json.into()).unwrap()
    }

    async fn bind(
        client: &V1Client,
        broker: &Broker,
        app_id: Option<&str>,
    ) -> BrokerAnswer<BrokerHandle> {
        let opts = raw(r#"{"b":1,"a":[2.50]}"#);
        let order = BindOrder {
            broker,
            service_id: "svc 1/x",
            app_id,
            label: "echo-1.0",
            email: "dev@example.com",
            binding_options: &opts,
            user_id: "uaa-id-207",
        };
        client.bind(&order, "rid-1").await
    }

    async fn unbind(client: &V1Client, broker: &Broker) -> BrokerAnswer<Removal> {
        let opts = raw(r#"{"b":1}"#);
        let order = UnbindOrder {
            broker,
            service_id: "svc 1/x",
            handle_id: "handle+7",
            binding_options: &opts,
        };
        client.unbind(&order, "rid-2").await
    }

    /// A head's header lines, in the order sent, without the request line.
    fn header_lines(head: &str) -> Vec<&str> {
        head.split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn requests(metrics: &Metrics, operation: &str, code: &str) -> u64 {
        metrics
            .broker_requests
            .with_label_values(&["b", operation, code])
            .get()
    }

    #[tokio::test]
    async fn bind_posts_the_cloud_controller_request_to_the_handles_path() {
        let server = Server::start(|_, _| {
            Answer::status(
                200,
                r#"{"service_id":"handle-1","configuration":{"c":1},"credentials":{"pw":"p"},"syslog_drain_url":"syslog://d"}"#,
            )
        })
        .await;
        let metrics = Arc::new(Metrics::new());
        let client = V1Client::new(metrics.clone());
        let broker = broker_with_userinfo(&server);
        let BrokerAnswer { result, call } = bind(&client, &broker, Some("app-guid")).await;
        let handle = result.unwrap();
        assert_eq!(handle.handle_id, "handle-1");
        assert_eq!(handle.configuration.get(), r#"{"c":1}"#);
        assert_eq!(handle.credentials.get(), r#"{"pw":"p"}"#);
        assert_eq!(handle.syslog_drain_url.as_deref(), Some("syslog://d"));
        assert_eq!(call.status, Some(200));

        let received = server.received();
        assert_eq!(received.len(), 1, "{received:#?}");
        let head = &received[0].head;
        assert!(
            head.starts_with(
                "POST /base/gateway/v1/configurations/svc%201%2Fx/handles HTTP/1.1\r\n"
            ),
            "{head}"
        );
        let body = br#"{"service_id":"svc 1/x","app_id":"app-guid","label":"echo-1.0","email":"dev@example.com","binding_options":{"b":1,"a":[2.50]}}"#;
        assert_eq!(
            String::from_utf8_lossy(&received[0].body),
            String::from_utf8_lossy(body)
        );
        let lines = header_lines(head);
        for expected in [
            "Content-Type: application/json".to_string(),
            "Accept: application/json".to_string(),
            "X-VCAP-Request-ID: rid-1".to_string(),
            "X-VCAP-Service-Token: broker-token".to_string(),
            format!(
                "X-Broker-API-Originating-Identity: {}",
                originating_identity("uaa-id-207")
            ),
            format!("Content-Length: {}", body.len()),
        ] {
            assert!(
                lines.iter().any(|l| l.eq_ignore_ascii_case(&expected)),
                "{expected:?} not in {lines:#?}"
            );
        }
        assert!(!head.contains("url-secret"), "{head}");
        assert_eq!(requests(&metrics, "bind", "200"), 1);
    }

    #[tokio::test]
    async fn a_service_key_is_bound_with_a_null_app_id() {
        let server = Server::start(|_, _| {
            Answer::status(
                201,
                r#"{"service_id":"h","configuration":{},"credentials":{}}"#,
            )
        })
        .await;
        let broker = broker_with_userinfo(&server);
        let handle = bind(&client(), &broker, None).await.result.unwrap();
        assert_eq!(handle.syslog_drain_url, None);
        let body = &server.received()[0].body;
        assert_eq!(
            String::from_utf8_lossy(body),
            r#"{"service_id":"svc 1/x","app_id":null,"label":"echo-1.0","email":"dev@example.com","binding_options":{"b":1,"a":[2.50]}}"#
        );
    }

    #[tokio::test]
    async fn a_bind_dropped_on_a_reused_connection_is_not_sent_again() {
        let server = Server::start(|conn, n| match (conn, n) {
            (0, 0) => Answer::status(200, "{}"),
            (0, _) => Answer::Close,
            _ => Answer::status(
                200,
                r#"{"service_id":"h","configuration":{},"credentials":{}}"#,
            ),
        })
        .await;
        let (client, broker) = (client(), broker(&server));
        // Leaves the connection pooled.
        client
            .deprovision(&broker, "s", "rid")
            .await
            .result
            .unwrap();
        let failure = bind(&client, &broker, Some("a")).await.result.unwrap_err();
        assert!(
            matches!(failure.kind, BrokerFailure::Unreachable(_)),
            "{failure:?}"
        );
        let heads = server.heads();
        assert_eq!(heads.len(), 2, "warm-up and the one POST: {heads:#?}");
    }

    #[tokio::test]
    async fn bind_failures_name_the_request_without_credentials() {
        let server =
            Server::start(|_, _| Answer::status(500, r#"{"code":33106,"description":"no more"}"#))
                .await;
        let metrics = Arc::new(Metrics::new());
        let client = V1Client::new(metrics.clone());
        let broker = broker_with_userinfo(&server);
        let e = bind(&client, &broker, Some("a")).await.result.unwrap_err();
        assert_eq!(e.method, "POST");
        let url = format!(
            "http://{}/base/gateway/v1/configurations/svc%201%2Fx/handles",
            server.addr
        );
        assert_eq!(e.uri, url);
        assert!(!e.to_string().contains("url-secret"), "{e}");
        assert!(!e.to_string().contains("broker-token"), "{e}");
        // 33106 is provision's duplicate; a bind refused with it is an ordinary failure.
        match e.kind {
            BrokerFailure::BadResponse {
                status: 500,
                description,
                ..
            } => assert_eq!(description.as_deref(), Some("no more")),
            other => panic!("{other:?}"),
        }
        assert_eq!(requests(&metrics, "bind", "500"), 1);
        assert_eq!(
            metrics
                .broker_errors
                .with_label_values(&["b", "bad_response"])
                .get(),
            1
        );

        let server = Server::start(|_, _| Answer::status(200, r#"{"service_id":"h9"}"#)).await;
        let e = bind(&client, &broker_with_userinfo(&server), Some("a"))
            .await
            .result
            .unwrap_err();
        match e.kind {
            BrokerFailure::Malformed {
                status: 200,
                service_id,
                ..
            } => assert_eq!(service_id.as_deref(), Some("h9")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unbind_deletes_the_handle_with_a_json_body() {
        let server = Server::start(|_, _| Answer::status(200, "{}")).await;
        let metrics = Arc::new(Metrics::new());
        let client = V1Client::new(metrics.clone());
        let broker = broker_with_userinfo(&server);
        let BrokerAnswer { result, call } = unbind(&client, &broker).await;
        assert_eq!(result.unwrap(), Removal::Removed);
        assert_eq!(call.status, Some(200));

        let received = server.received();
        assert_eq!(received.len(), 1, "{received:#?}");
        let head = &received[0].head;
        assert!(
            head.starts_with(
                "DELETE /base/gateway/v1/configurations/svc%201%2Fx/handles/handle%2B7 HTTP/1.1\r\n"
            ),
            "{head}"
        );
        let body = br#"{"service_id":"svc 1/x","handle_id":"handle+7","binding_options":{"b":1}}"#;
        assert_eq!(
            String::from_utf8_lossy(&received[0].body),
            String::from_utf8_lossy(body)
        );
        let lines = header_lines(head);
        for expected in [
            "Content-Type: application/json".to_string(),
            "Accept: application/json".to_string(),
            "X-VCAP-Request-ID: rid-2".to_string(),
            "X-VCAP-Service-Token: broker-token".to_string(),
            format!("Content-Length: {}", body.len()),
        ] {
            assert!(
                lines.iter().any(|l| l.eq_ignore_ascii_case(&expected)),
                "{expected:?} not in {lines:#?}"
            );
        }
        assert!(
            !lines.iter().any(|l| l
                .to_ascii_lowercase()
                .starts_with("x-broker-api-originating-identity")),
            "{lines:#?}"
        );
        assert_eq!(requests(&metrics, "unbind", "200"), 1);
    }

    #[tokio::test]
    async fn an_unbind_dropped_on_a_reused_connection_is_sent_again_on_a_new_one() {
        let server = Server::start(|conn, n| match (conn, n) {
            (0, 0) => Answer::status(200, "{}"),
            (0, _) => Answer::Close,
            _ => Answer::status(200, "{}"),
        })
        .await;
        let (client, broker) = (client(), broker(&server));
        client
            .deprovision(&broker, "s", "rid")
            .await
            .result
            .unwrap();
        assert_eq!(
            unbind(&client, &broker).await.result.unwrap(),
            Removal::Removed
        );
        let received = server.received();
        assert_eq!(received.len(), 3, "{received:#?}");
        assert_eq!(received[1].body, received[2].body, "the same body again");
        assert!(!received[2].body.is_empty());
    }

    #[tokio::test]
    async fn a_broker_that_no_longer_knows_it_has_already_removed_it() {
        for status in [404, 410] {
            let server = Server::start(move |_, _| {
                Answer::status(status, r#"{"code":30300,"description":"not found"}"#)
            })
            .await;
            let (client, broker) = (client(), broker(&server));
            let answer = client.deprovision(&broker, "svc-1", "rid").await;
            assert_eq!(answer.result.unwrap(), Removal::AlreadyGone, "{status}");
            assert_eq!(answer.call.status, Some(status));
            let answer = unbind(&client, &broker).await;
            assert_eq!(answer.result.unwrap(), Removal::AlreadyGone, "{status}");
        }
        // Even when the body is too large to read: the status settles it.
        let server = too_large(404).await;
        let answer = client().deprovision(&broker(&server), "svc-1", "rid").await;
        assert_eq!(answer.result.unwrap(), Removal::AlreadyGone);
    }

    #[tokio::test]
    async fn other_removal_failures_are_failures() {
        let server =
            Server::start(|_, _| Answer::status(409, r#"{"code":30500,"description":"busy"}"#))
                .await;
        let (client, broker) = (client(), broker_with_userinfo(&server));
        let e = client
            .deprovision(&broker, "svc/1", "rid")
            .await
            .result
            .unwrap_err();
        assert_eq!(e.method, "DELETE");
        assert_eq!(
            e.uri,
            format!(
                "http://{}/base/gateway/v1/configurations/svc%2F1",
                server.addr
            )
        );
        assert!(matches!(
            e.kind,
            BrokerFailure::Rejected { status: 409, .. }
        ));
        let e = unbind(&client, &broker).await.result.unwrap_err();
        assert_eq!(e.method, "DELETE");
        assert_eq!(
            e.uri,
            format!(
                "http://{}/base/gateway/v1/configurations/svc%201%2Fx/handles/handle%2B7",
                server.addr
            )
        );
        assert!(!e.to_string().contains("url-secret"), "{e}");
        match e.kind {
            BrokerFailure::Rejected {
                status: 409,
                description,
                ..
            } => assert_eq!(description.as_deref(), Some("busy")),
            other => panic!("{other:?}"),
        }
    }
}
