//! The v2 service instance resource `{metadata, entity}`: the seed's fields in the seed's
//! order, plus the later Cloud Controller fields (`last_operation`, `tags`, `service_guid`, and
//! the `service_keys_url`/`routes_url` links).

use serde::Serialize;
use serde_json::value::RawValue;

/// What the envelope shows of a committed instance. JSON-valued fields are raw, so the
/// broker's `configuration` and `credentials` reach the client byte for byte.
pub struct InstanceView<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub credentials: Credentials<'a>,
    pub service_plan_guid: &'a str,
    pub space_guid: &'a str,
    pub gateway_data: &'a RawValue,
    pub dashboard_url: Option<&'a str>,
    pub tags: &'a [String],
    /// The plan's service offering; `None` when the plan is no longer configured.
    pub service_guid: Option<&'a str>,
    pub last_operation: LastOperationView,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last rename or retag.
    pub updated_at: Option<i64>,
    /// The relations `inline-relations-depth=1` inlines, when asked for.
    pub inline: Option<Inlined<'a>>,
}

/// Relations inlined into an instance's entity (`inline-relations-depth=1`), each already
/// rendered: what the cf CLI's legacy `delete-service` reads.
#[derive(Debug, Clone, Copy)]
pub struct Inlined<'a> {
    /// The plan resource; `None` when the plan is no longer configured.
    pub service_plan: Option<&'a RawValue>,
    /// A JSON array of binding resources.
    pub service_bindings: &'a RawValue,
    /// A JSON array of key resources.
    pub service_keys: &'a RawValue,
}

/// `last_operation`'s `type` and `state`. v1 operations are synchronous: a create or update
/// shown has succeeded; only a delete can be seen in progress (while the broker deprovisions,
/// or until the finisher completes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastOperationView {
    pub kind: &'static str,
    pub state: &'static str,
}

impl LastOperationView {
    pub const DELETE_IN_PROGRESS: LastOperationView = LastOperationView {
        kind: "delete",
        state: "in progress",
    };

    pub fn succeeded(kind: &'static str) -> LastOperationView {
        LastOperationView {
            kind,
            state: "succeeded",
        }
    }
}

/// An instance's `credentials`, or what a caller who may not see them gets instead.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum Credentials<'a> {
    Shown(&'a RawValue),
    /// `{"redacted_message":"[PRIVATE DATA HIDDEN]"}`, the Cloud Controller's redaction.
    Redacted {
        redacted_message: &'static str,
    },
}

impl Credentials<'_> {
    pub const REDACTED: Credentials<'static> = Credentials::Redacted {
        redacted_message: "[PRIVATE DATA HIDDEN]",
    };
}

#[derive(Serialize)]
struct Envelope<'a> {
    metadata: Metadata<'a>,
    entity: Entity<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    guid: &'a str,
    url: String,
    created_at: String,
    updated_at: Option<String>,
}

#[derive(Serialize)]
struct Entity<'a> {
    name: &'a str,
    credentials: Credentials<'a>,
    service_plan_guid: &'a str,
    space_guid: &'a str,
    gateway_data: &'a RawValue,
    dashboard_url: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    state: Option<&'static str>,
    state_description: Option<&'static str>,
    last_operation: LastOperation,
    tags: &'a [String],
    service_guid: Option<&'a str>,
    space_url: String,
    service_plan_url: String,
    service_bindings_url: String,
    service_keys_url: String,
    routes_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_plan: Option<Option<&'a RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_bindings: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_keys: Option<&'a RawValue>,
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

/// `/v2/service_instances/<guid>`: the `Location` header and `metadata.url`.
pub fn instance_url(guid: &str) -> String {
    format!("/v2/service_instances/{guid}")
}

/// The instance resource, whatever answers it (create, read, list, update); `last_operation` is
/// dated by the last create or update.
pub fn render_instance(v: &InstanceView<'_>) -> Vec<u8> {
    let created_at = timestamp(v.created_at);
    let updated_at = v.updated_at.map(timestamp);
    let url = instance_url(v.guid);
    let operation_at = updated_at.clone().unwrap_or_else(|| created_at.clone());
    let envelope = Envelope {
        metadata: Metadata {
            guid: v.guid,
            url: url.clone(),
            created_at,
            updated_at: updated_at.clone(),
        },
        entity: Entity {
            name: v.name,
            credentials: v.credentials,
            service_plan_guid: v.service_plan_guid,
            space_guid: v.space_guid,
            gateway_data: v.gateway_data,
            dashboard_url: v.dashboard_url,
            kind: "managed_service_instance",
            state: None,
            state_description: None,
            last_operation: LastOperation {
                kind: v.last_operation.kind,
                state: v.last_operation.state,
                description: "",
                created_at: operation_at,
                updated_at,
            },
            tags: v.tags,
            service_guid: v.service_guid,
            space_url: format!("/v2/spaces/{}", v.space_guid),
            service_plan_url: format!("/v2/service_plans/{}", v.service_plan_guid),
            service_bindings_url: format!("{url}/service_bindings"),
            service_keys_url: format!("{url}/service_keys"),
            routes_url: format!("{url}/routes"),
            service_plan: v.inline.map(|i| i.service_plan),
            service_bindings: v.inline.map(|i| i.service_bindings),
            service_keys: v.inline.map(|i| i.service_keys),
        },
    };
    // Only strings, options and already-valid raw JSON: serialization cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Whole-second UTC in the seed's form: `2015-01-20T01:52:23+00:00`.
pub fn timestamp(unix_seconds: i64) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00+00:00".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn timestamp_matches_the_seed_form() {
        assert_eq!(timestamp(1421718743), "2015-01-20T01:52:23+00:00");
    }

    #[test]
    fn renders_every_field_in_order() {
        let creds = raw(r#"{"creds-key-327":"creds-val-327"}"#);
        let gw = raw(r#""CONFIGURATION""#);
        let tags = vec!["a".to_string()];
        let body = render_instance(&InstanceView {
            guid: "7373157c-ff42-45a1-a4c0-0f71b62120e3",
            name: "my-service-instance",
            credentials: Credentials::Shown(&creds),
            service_plan_guid: "P",
            space_guid: "S",
            gateway_data: &gw,
            dashboard_url: Some("http://dashboard.example.com"),
            tags: &tags,
            service_guid: Some("SVC"),
            last_operation: LastOperationView::succeeded("create"),
            created_at: 1421718743,
            updated_at: None,
            inline: None,
        });
        let text = String::from_utf8(body.clone()).unwrap();
        let order = [
            "\"metadata\"",
            "\"guid\"",
            "\"url\"",
            "\"created_at\"",
            "\"updated_at\"",
            "\"entity\"",
            "\"name\"",
            "\"credentials\"",
            "\"service_plan_guid\"",
            "\"space_guid\"",
            "\"gateway_data\"",
            "\"dashboard_url\"",
            "\"type\"",
            "\"state\"",
            "\"state_description\"",
            "\"last_operation\"",
            "\"tags\"",
            "\"service_guid\"",
            "\"space_url\"",
            "\"service_plan_url\"",
            "\"service_bindings_url\"",
            "\"service_keys_url\"",
            "\"routes_url\"",
        ];
        let mut at = 0;
        for key in order {
            let found = text[at..]
                .find(key)
                .unwrap_or_else(|| panic!("{key} out of order in {text}"));
            at += found + key.len();
        }
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["metadata"]["url"],
            "/v2/service_instances/7373157c-ff42-45a1-a4c0-0f71b62120e3"
        );
        assert_eq!(v["metadata"]["updated_at"], Value::Null);
        assert_eq!(v["entity"]["gateway_data"], "CONFIGURATION");
        assert_eq!(v["entity"]["credentials"]["creds-key-327"], "creds-val-327");
        assert_eq!(v["entity"]["type"], "managed_service_instance");
        assert_eq!(v["entity"]["state"], Value::Null);
        assert_eq!(v["entity"]["last_operation"]["state"], "succeeded");
        assert_eq!(
            v["entity"]["last_operation"]["created_at"],
            "2015-01-20T01:52:23+00:00"
        );
        assert_eq!(v["entity"]["service_guid"], "SVC");
        assert_eq!(v["entity"]["space_url"], "/v2/spaces/S");
        assert_eq!(v["entity"]["service_plan_url"], "/v2/service_plans/P");
        assert_eq!(
            v["entity"]["routes_url"],
            "/v2/service_instances/7373157c-ff42-45a1-a4c0-0f71b62120e3/routes"
        );
    }

    #[test]
    fn an_update_dates_the_metadata_and_the_last_operation() {
        let gw = raw("{}");
        let body = render_instance(&InstanceView {
            guid: "g",
            name: "n",
            credentials: Credentials::REDACTED,
            service_plan_guid: "P",
            space_guid: "S",
            gateway_data: &gw,
            dashboard_url: None,
            tags: &[],
            service_guid: None,
            last_operation: LastOperationView::succeeded("update"),
            created_at: 1421718743,
            updated_at: Some(1421718800),
            inline: None,
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["metadata"]["created_at"], "2015-01-20T01:52:23+00:00");
        assert_eq!(v["metadata"]["updated_at"], "2015-01-20T01:53:20+00:00");
        let op = &v["entity"]["last_operation"];
        assert_eq!(op["type"], "update");
        assert_eq!(op["state"], "succeeded");
        assert_eq!(op["created_at"], "2015-01-20T01:53:20+00:00");
        assert_eq!(op["updated_at"], "2015-01-20T01:53:20+00:00");
        assert_eq!(v["entity"]["service_guid"], Value::Null);
    }

    #[test]
    fn redacted_credentials_are_the_cloud_controllers_message() {
        let gw = raw("{}");
        let body = render_instance(&InstanceView {
            guid: "g",
            name: "n",
            credentials: Credentials::REDACTED,
            service_plan_guid: "P",
            space_guid: "S",
            gateway_data: &gw,
            dashboard_url: Some(""),
            tags: &[],
            service_guid: None,
            last_operation: LastOperationView::succeeded("create"),
            created_at: 1,
            updated_at: None,
            inline: None,
        });
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains(r#""credentials":{"redacted_message":"[PRIVATE DATA HIDDEN]"}"#),
            "{text}"
        );
        assert!(text.contains(r#""dashboard_url":"""#), "{text}");
    }
}
