//! What a v1 gateway receives and answers (vcap-common's `GatewayProvisionRequest` and
//! `GatewayHandleResponse`), and how an answer is classified.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::service::{BrokerFailure, BrokerInstance, ProvisionOrder};

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
        let plan = order.plan;
        ProvisionRequest {
            label: format!("{}-{}", plan.label, plan.version),
            email: order.email,
            plan: &plan.name,
            version: &plan.version,
            provider: plan.provider.as_deref(),
            space_guid: order.space_guid,
            organization_guid: order.organization_guid,
            unique_id: &plan.unique_id,
            name: order.name,
            plan_option: order.gateway_data,
            parameters: order.parameters,
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

/// Classifies any non-2xx answer (shared by provision and deprovision).
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
    let description = json
        .as_ref()
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
}
