//! What a v1 gateway receives and answers (vcap-common's `GatewayProvisionRequest`,
//! `GatewayBindRequest`, `GatewayUnbindRequest` and `GatewayHandleResponse`), and how an
//! answer is classified.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::service::{
    BindOrder, BrokerFailure, BrokerHandle, BrokerInstance, ProvisionOrder, UnbindOrder,
};

/// The body of `POST /gateway/v1/configurations`, keys in the Cloud Controller's order.
#[derive(Debug, Serialize)]
pub struct ProvisionRequest<'a> {
    /// `<label>-<version>`.
    pub label: String,
    pub email: Option<&'a str>,
    pub plan: &'a str,
    pub version: &'a str,
    pub provider: Option<&'a str>,
    pub space_guid: &'a str,
    pub organization_guid: Option<&'a str>,
    /// The plan's unique id.
    pub unique_id: &'a str,
    pub name: &'a str,
    /// The request's `gateway_data`, verbatim; v1 gateways know it as `plan_option`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_option: Option<&'a RawValue>,
    /// The request's `parameters`, verbatim; gateways that do not know the key ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a RawValue>,
}

impl<'a> ProvisionRequest<'a> {
    /// The body the Cloud Controller sent for `order`.
    pub fn from_order(order: &ProvisionOrder<'a>) -> ProvisionRequest<'a> {
        let (plan, service) = (order.plan, &*order.plan.service);
        ProvisionRequest {
            label: format!("{}-{}", service.label, service.version),
            email: order.email,
            plan: &plan.name,
            version: &service.version,
            provider: service.provider.as_deref(),
            space_guid: order.space_guid,
            organization_guid: order.organization_guid,
            unique_id: &plan.unique_id,
            name: order.name,
            plan_option: order.gateway_data,
            parameters: order.parameters,
        }
    }
}

/// The body of `POST /gateway/v1/configurations/<service_id>/handles`, keys in the order of
/// the Cloud Controller's v1 `HttpClient#bind`.
#[derive(Debug, Serialize)]
pub struct BindRequest<'a> {
    /// The broker's id of the instance (also in the path).
    pub service_id: &'a str,
    /// `null` for a service key. The Cloud Controller never sent a key to a v1 gateway (it
    /// refused them with ServiceKeyNotSupported), so there is no precedent; its bind always
    /// wrote the key from a hash literal, where a missing value serializes as `null`, as
    /// `email` does in provision. vcap's `JsonMessage` drops null keys before validating and
    /// `app_id` is optional in `GatewayBindRequest`, so a strict gateway reads it as absent.
    pub app_id: Option<&'a str>,
    /// `<label>-<version>`.
    pub label: &'a str,
    pub email: &'a str,
    pub binding_options: &'a RawValue,
}

impl<'a> BindRequest<'a> {
    pub fn from_order(order: &BindOrder<'a>) -> BindRequest<'a> {
        BindRequest {
            service_id: order.service_id,
            app_id: order.app_id,
            label: order.label,
            email: order.email,
            binding_options: order.binding_options,
        }
    }
}

/// The body of `DELETE /gateway/v1/configurations/<service_id>/handles/<handle_id>`: both ids
/// are in the path and the body, as the Cloud Controller sent them.
#[derive(Debug, Serialize)]
pub struct UnbindRequest<'a> {
    pub service_id: &'a str,
    pub handle_id: &'a str,
    pub binding_options: &'a RawValue,
}

impl<'a> UnbindRequest<'a> {
    pub fn from_order(order: &UnbindOrder<'a>) -> UnbindRequest<'a> {
        UnbindRequest {
            service_id: order.service_id,
            handle_id: order.handle_id,
            binding_options: order.binding_options,
        }
    }
}

/// `X-Broker-API-Originating-Identity: cloudfoundry <base64 {"user_id": …}>`.
pub fn originating_identity(user_id: &str) -> String {
    let json = serde_json::json!({ "user_id": user_id }).to_string();
    format!(
        "cloudfoundry {}",
        base64::engine::general_purpose::STANDARD.encode(json)
    )
}

/// A successful provision answer, as the broker sends it.
#[derive(Debug, Deserialize)]
struct ProvisionResponse {
    pub service_id: String,
    pub configuration: Box<RawValue>,
    pub credentials: Box<RawValue>,
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

/// A successful bind answer: vcap's `GatewayHandleResponse`, whose `service_id` names the
/// handle.
#[derive(Debug, Deserialize)]
struct BindResponse {
    pub service_id: String,
    pub configuration: Box<RawValue>,
    pub credentials: Box<RawValue>,
    #[serde(default)]
    pub syslog_drain_url: Option<String>,
}

/// Most of a broker's error body that an error description repeats.
const BODY_EXCERPT_CHARS: usize = 1024;

/// Classifies a provision answer by status and body.
pub fn interpret_provision(status: u16, body: &[u8]) -> Result<BrokerInstance, BrokerFailure> {
    if (200..300).contains(&status) {
        let answer = serde_json::from_slice::<ProvisionResponse>(body).map_err(|e| {
            BrokerFailure::Malformed {
                status,
                detail: format!(
                "expected a JSON object with string service_id, configuration and credentials ({e})"
            ),
                service_id: named_service_id(body),
            }
        })?;
        return Ok(BrokerInstance {
            service_id: answer.service_id,
            configuration: answer.configuration,
            credentials: answer.credentials,
            dashboard_url: answer.dashboard_url,
        });
    }
    Err(interpret_failure(status, body))
}

/// Classifies a bind answer by status and body.
pub fn interpret_bind(status: u16, body: &[u8]) -> Result<BrokerHandle, BrokerFailure> {
    if (200..300).contains(&status) {
        let answer = serde_json::from_slice::<BindResponse>(body).map_err(|e| {
            BrokerFailure::Malformed {
                status,
                detail: format!(
                    "expected a JSON object with string service_id, configuration and credentials ({e})"
                ),
                service_id: named_service_id(body),
            }
        })?;
        return Ok(BrokerHandle {
            handle_id: answer.service_id,
            configuration: answer.configuration,
            credentials: answer.credentials,
            syslog_drain_url: answer.syslog_drain_url,
        });
    }
    Err(interpret_handle_failure(status, body))
}

/// Classifies a non-2xx provision or deprovision answer: [`status_failure`], except that the
/// integer `code` 33106 is the one-instance-per-space refusal.
pub fn interpret_failure(status: u16, body: &[u8]) -> BrokerFailure {
    let json: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    // CC compares the code as an integer: the string "33106" is not a duplicate.
    if json
        .as_ref()
        .and_then(|m| m.get("code"))
        .and_then(Value::as_i64)
        == Some(33106)
    {
        return BrokerFailure::Duplicate;
    }
    status_failure(status, json.as_ref(), body)
}

/// Classifies a non-2xx bind or unbind answer by its status alone: CC's v1 client read 33106
/// only on provision, so a handle refused with it is an ordinary refusal.
pub fn interpret_handle_failure(status: u16, body: &[u8]) -> BrokerFailure {
    let json: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    status_failure(status, json.as_ref(), body)
}

/// 4xx is a refusal, anything else a bad response; `description` when the body has one.
fn status_failure(status: u16, json: Option<&Map<String, Value>>, body: &[u8]) -> BrokerFailure {
    let description = json
        .and_then(|m| m.get("description"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let body: String = String::from_utf8_lossy(body)
        .chars()
        .take(BODY_EXCERPT_CHARS)
        .collect();
    if (400..500).contains(&status) {
        BrokerFailure::Rejected {
            status,
            description,
            body,
        }
    } else {
        BrokerFailure::BadResponse {
            status,
            description,
            body,
        }
    }
}

fn named_service_id(body: &[u8]) -> Option<String> {
    let json: Map<String, Value> = serde_json::from_slice(body).ok()?;
    json.get("service_id")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keys_follow_the_cloud_controller_order() {
        let opt = RawValue::from_string(r#"{"size":"big"}"#.into()).unwrap();
        let req = ProvisionRequest {
            label: "echo-1.0".into(),
            email: None,
            plan: "free",
            version: "1.0",
            provider: Some("core"),
            space_guid: "S",
            organization_guid: Some("O"),
            unique_id: "echo-free",
            name: "n",
            plan_option: Some(&opt),
            parameters: None,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"label":"echo-1.0","email":null,"plan":"free","version":"1.0","provider":"core","space_guid":"S","organization_guid":"O","unique_id":"echo-free","name":"n","plan_option":{"size":"big"}}"#
        );
    }

    #[test]
    fn success_keeps_configuration_verbatim() {
        let r = interpret_provision(
            200,
            br#"{"service_id":"s1","configuration":{"b":1,"a":[2.50]},"credentials":"c","extra":1}"#,
        )
        .unwrap();
        assert_eq!(r.service_id, "s1");
        assert_eq!(r.configuration.get(), r#"{"b":1,"a":[2.50]}"#);
        assert_eq!(r.dashboard_url, None);
    }

    #[test]
    fn malformed_success_remembers_a_named_service_id() {
        match interpret_provision(201, br#"{"service_id":"s9","credentials":{}}"#) {
            Err(BrokerFailure::Malformed { service_id, .. }) => {
                assert_eq!(service_id.as_deref(), Some("s9"))
            }
            other => panic!("{other:?}"),
        }
        for body in [
            &b""[..],
            b"not json",
            b"[]",
            br#"{"service_id":5,"configuration":1,"credentials":1}"#,
        ] {
            assert!(matches!(
                interpret_provision(200, body),
                Err(BrokerFailure::Malformed { .. })
            ));
        }
    }

    #[test]
    fn failures_by_status_and_code() {
        assert!(matches!(
            interpret_provision(500, br#"{"code":33106,"description":"dup"}"#),
            Err(BrokerFailure::Duplicate)
        ));
        assert!(matches!(
            interpret_provision(400, br#"{"code":"33106","description":"dup"}"#),
            Err(BrokerFailure::Rejected { status: 400, .. })
        ));
        match interpret_provision(
            500,
            br#"{"code":12345,"description":"This is what really happened."}"#,
        ) {
            Err(BrokerFailure::BadResponse {
                status,
                description,
                ..
            }) => {
                assert_eq!(status, 500);
                assert_eq!(
                    description.as_deref(),
                    Some("This is what really happened.")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            interpret_provision(302, b""),
            Err(BrokerFailure::BadResponse {
                status: 302,
                description: None,
                ..
            })
        ));
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.into()).unwrap()
    }

    #[test]
    fn bind_request_keys_follow_the_cloud_controller_order() {
        let opts = raw(r#"{"b":1,"a":[2.50]}"#);
        let req = BindRequest {
            service_id: "svc-1",
            app_id: Some("app-guid"),
            label: "echo-1.0",
            email: "dev@example.com",
            binding_options: &opts,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"service_id":"svc-1","app_id":"app-guid","label":"echo-1.0","email":"dev@example.com","binding_options":{"b":1,"a":[2.50]}}"#
        );
    }

    #[test]
    fn a_service_key_binds_with_a_null_app_id() {
        let opts = raw("{}");
        let broker = crate::config::Broker {
            name: "b".into(),
            target: crate::config::Target::parse("brokers[0].url", "http://127.0.0.1:9").unwrap(),
            token: crate::config::Secret::new("t"),
            timeout: std::time::Duration::from_secs(1),
            connect_timeout: std::time::Duration::from_secs(1),
        };
        let order = BindOrder {
            broker: &broker,
            service_id: "svc-1",
            app_id: None,
            label: "echo-1.0",
            email: "e",
            binding_options: &opts,
            user_id: "u",
        };
        assert_eq!(
            serde_json::to_string(&BindRequest::from_order(&order)).unwrap(),
            r#"{"service_id":"svc-1","app_id":null,"label":"echo-1.0","email":"e","binding_options":{}}"#
        );
        let unbind = UnbindOrder {
            broker: &broker,
            service_id: "svc-1",
            handle_id: "h-1",
            binding_options: &opts,
        };
        assert_eq!(
            serde_json::to_string(&UnbindRequest::from_order(&unbind)).unwrap(),
            r#"{"service_id":"svc-1","handle_id":"h-1","binding_options":{}}"#
        );
    }

    #[test]
    fn unbind_request_keys_follow_the_cloud_controller_order() {
        let opts = raw(r#"{"z":null}"#);
        let req = UnbindRequest {
            service_id: "svc-1",
            handle_id: "handle-7",
            binding_options: &opts,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"service_id":"svc-1","handle_id":"handle-7","binding_options":{"z":null}}"#
        );
    }

    #[test]
    fn bind_success_names_the_handle_and_keeps_its_json_verbatim() {
        let h = interpret_bind(
            200,
            br#"{"service_id":"handle-1","configuration":{"b":1,"a":[2.50]},"credentials":{"pw":"x"},"syslog_drain_url":"syslog://d","dashboard_url":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(h.handle_id, "handle-1");
        assert_eq!(h.configuration.get(), r#"{"b":1,"a":[2.50]}"#);
        assert_eq!(h.credentials.get(), r#"{"pw":"x"}"#);
        assert_eq!(h.syslog_drain_url.as_deref(), Some("syslog://d"));
        let h = interpret_bind(
            201,
            br#"{"service_id":"h","configuration":"","credentials":""}"#,
        )
        .unwrap();
        assert_eq!(h.syslog_drain_url, None);
        let h = interpret_bind(
            200,
            br#"{"service_id":"h","configuration":1,"credentials":2,"syslog_drain_url":null}"#,
        )
        .unwrap();
        assert_eq!(h.syslog_drain_url, None);
    }

    #[test]
    fn malformed_bind_success_remembers_a_named_handle() {
        match interpret_bind(200, br#"{"service_id":"h9","credentials":{}}"#) {
            Err(BrokerFailure::Malformed {
                status: 200,
                service_id,
                ..
            }) => assert_eq!(service_id.as_deref(), Some("h9")),
            other => panic!("{other:?}"),
        }
        for body in [
            &b""[..],
            b"not json",
            b"[]",
            br#"{"service_id":5,"configuration":1,"credentials":1}"#,
            br#"{"service_id":"h","configuration":1,"credentials":1,"syslog_drain_url":3}"#,
        ] {
            assert!(
                matches!(
                    interpret_bind(200, body),
                    Err(BrokerFailure::Malformed { .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn bind_failures_by_status_and_never_a_duplicate() {
        match interpret_bind(
            400,
            br#"{"code":30001,"description":"Malformatted request"}"#,
        ) {
            Err(BrokerFailure::Rejected {
                status: 400,
                description,
                body,
            }) => {
                assert_eq!(description.as_deref(), Some("Malformatted request"));
                assert!(body.contains("30001"), "{body}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            interpret_bind(500, br#"{"code":33106,"description":"dup"}"#),
            Err(BrokerFailure::BadResponse { status: 500, .. })
        ));
        assert!(matches!(
            interpret_bind(503, b"down"),
            Err(BrokerFailure::BadResponse {
                status: 503,
                description: None,
                ..
            })
        ));
    }
}
