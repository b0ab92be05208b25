//! The v2 service binding and service key resources `{metadata, entity}`, the fields in the
//! Cloud Controller's order. Both are v1 handles: a binding is one made for an app, a key one
//! made for nobody.

use serde::Serialize;
use serde_json::value::RawValue;

use super::envelope::{instance_url, timestamp, Credentials};

/// What a binding resource shows. JSON-valued fields are raw: the broker's `configuration` and
/// `credentials` reach the client byte for byte.
pub struct BindingView<'a> {
    pub guid: &'a str,
    pub app_guid: &'a str,
    pub service_instance_guid: &'a str,
    pub credentials: Credentials<'a>,
    /// The bind request's `parameters` (`{}` when it had none).
    pub binding_options: &'a RawValue,
    /// The broker's `configuration`.
    pub gateway_data: &'a RawValue,
    /// The broker's id of the handle.
    pub gateway_name: &'a str,
    pub syslog_drain_url: Option<&'a str>,
    pub name: Option<&'a str>,
    /// Unix seconds.
    pub created_at: i64,
}

/// What a service key resource shows.
pub struct KeyView<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub service_instance_guid: &'a str,
    pub credentials: Credentials<'a>,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Serialize)]
struct Envelope<E> {
    metadata: Metadata,
    entity: E,
}

#[derive(Serialize)]
struct Metadata {
    guid: String,
    url: String,
    created_at: String,
    updated_at: Option<String>,
}

#[derive(Serialize)]
struct BindingEntity<'a> {
    app_guid: &'a str,
    service_instance_guid: &'a str,
    credentials: Credentials<'a>,
    binding_options: &'a RawValue,
    gateway_data: &'a RawValue,
    gateway_name: &'a str,
    syslog_drain_url: Option<&'a str>,
    volume_mounts: [(); 0],
    name: Option<&'a str>,
    last_operation: LastOperation,
    app_url: String,
    service_instance_url: String,
}

#[derive(Serialize)]
struct LastOperation {
    #[serde(rename = "type")]
    kind: &'static str,
    state: &'static str,
    description: &'static str,
    created_at: String,
    updated_at: Option<String>,
}

#[derive(Serialize)]
struct KeyEntity<'a> {
    name: &'a str,
    service_instance_guid: &'a str,
    credentials: Credentials<'a>,
    service_instance_url: String,
}

/// `/v2/service_bindings/<guid>`.
pub fn binding_url(guid: &str) -> String {
    format!("/v2/service_bindings/{guid}")
}

/// `/v2/service_keys/<guid>`.
pub fn key_url(guid: &str) -> String {
    format!("/v2/service_keys/{guid}")
}

fn metadata(guid: &str, url: String, created_at: i64) -> Metadata {
    Metadata {
        guid: guid.to_string(),
        url,
        created_at: timestamp(created_at),
        updated_at: None,
    }
}

/// The binding resource: the 201 of a bind and the answer to its reads. v1 binds are
/// synchronous: `last_operation` is a succeeded create.
pub fn render_binding(v: &BindingView<'_>) -> Vec<u8> {
    let envelope = Envelope {
        metadata: metadata(v.guid, binding_url(v.guid), v.created_at),
        entity: BindingEntity {
            app_guid: v.app_guid,
            service_instance_guid: v.service_instance_guid,
            credentials: v.credentials,
            binding_options: v.binding_options,
            gateway_data: v.gateway_data,
            gateway_name: v.gateway_name,
            syslog_drain_url: v.syslog_drain_url,
            volume_mounts: [],
            name: v.name,
            last_operation: LastOperation {
                kind: "create",
                state: "succeeded",
                description: "",
                created_at: timestamp(v.created_at),
                updated_at: None,
            },
            app_url: format!("/v2/apps/{}", v.app_guid),
            service_instance_url: instance_url(v.service_instance_guid),
        },
    };
    // Only strings, options and already-valid raw JSON: serialization cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// The service key resource.
pub fn render_key(v: &KeyView<'_>) -> Vec<u8> {
    let envelope = Envelope {
        metadata: metadata(v.guid, key_url(v.guid), v.created_at),
        entity: KeyEntity {
            name: v.name,
            service_instance_guid: v.service_instance_guid,
            credentials: v.credentials,
            service_instance_url: instance_url(v.service_instance_guid),
        },
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn a_binding_has_the_cloud_controllers_fields_in_order() {
        let (creds, options, config) = (raw(r#"{"pw":"x"}"#), raw("{}"), raw(r#"{"c":1}"#));
        let body = render_binding(&BindingView {
            guid: "B",
            app_guid: "A",
            service_instance_guid: "I",
            credentials: Credentials::Shown(&creds),
            binding_options: &options,
            gateway_data: &config,
            gateway_name: "handle-1",
            syslog_drain_url: None,
            name: None,
            created_at: 1421718743,
        });
        let text = String::from_utf8(body.clone()).unwrap();
        let order = [
            "metadata",
            "guid",
            "url",
            "created_at",
            "updated_at",
            "entity",
            "app_guid",
            "service_instance_guid",
            "credentials",
            "binding_options",
            "gateway_data",
            "gateway_name",
            "syslog_drain_url",
            "volume_mounts",
            "name",
            "last_operation",
            "app_url",
            "service_instance_url",
        ];
        let mut at = 0;
        for key in order {
            let quoted = format!("\"{key}\"");
            let found = text[at..]
                .find(&quoted)
                .unwrap_or_else(|| panic!("{key} out of order in {text}"));
            at += found + quoted.len();
        }
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["metadata"]["url"], "/v2/service_bindings/B");
        assert_eq!(v["entity"]["gateway_data"], json!({"c": 1}));
        assert_eq!(v["entity"]["volume_mounts"], json!([]));
        assert_eq!(v["entity"]["last_operation"]["type"], "create");
        assert_eq!(v["entity"]["app_url"], "/v2/apps/A");
        assert_eq!(
            v["entity"]["service_instance_url"],
            "/v2/service_instances/I"
        );
    }

    #[test]
    fn a_key_is_name_instance_credentials_and_link() {
        let body = render_key(&KeyView {
            guid: "K",
            name: "k1",
            service_instance_guid: "I",
            credentials: Credentials::REDACTED,
            created_at: 1,
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "metadata": {"guid": "K", "url": "/v2/service_keys/K",
                             "created_at": "1970-01-01T00:00:01+00:00", "updated_at": null},
                "entity": {"name": "k1", "service_instance_guid": "I",
                           "credentials": {"redacted_message": "[PRIVATE DATA HIDDEN]"},
                           "service_instance_url": "/v2/service_instances/I"}
            })
        );
    }
}
