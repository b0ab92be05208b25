//! The v2 service offering and service plan resources `{metadata, entity}`, as the Cloud
//! Controller renders an offering a v1 gateway advertised: `extra` is a JSON **string** (or
//! null) — the cf CLI fails to decode an object there — no broker (`service_broker_guid`
//! null), and plans that cannot be updated.

use serde::Serialize;

use super::envelope::timestamp;

/// What the catalog shows of one offering.
pub struct ServiceView<'a> {
    pub guid: &'a str,
    pub label: &'a str,
    pub provider: Option<&'a str>,
    pub url: &'a str,
    pub description: &'a str,
    pub long_description: Option<&'a str>,
    pub version: &'a str,
    pub info_url: Option<&'a str>,
    pub active: bool,
    pub bindable: bool,
    pub unique_id: &'a str,
    /// JSON text, shown as a string.
    pub extra: Option<&'a str>,
    pub tags: &'a [String],
    pub documentation_url: Option<&'a str>,
    /// Unix seconds.
    pub created_at: i64,
    /// With `inline-relations-depth` ≥ 1: a JSON array of the plan resources the caller sees.
    pub service_plans: Option<&'a serde_json::value::RawValue>,
}

/// What the catalog shows of one plan.
pub struct PlanView<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub free: bool,
    pub description: &'a str,
    pub service_guid: &'a str,
    pub extra: Option<&'a str>,
    pub unique_id: &'a str,
    pub public: bool,
    pub active: bool,
    pub bindable: bool,
    /// Unix seconds.
    pub created_at: i64,
}

pub fn service_url(guid: &str) -> String {
    format!("/v2/services/{guid}")
}

pub fn plan_url(guid: &str) -> String {
    format!("/v2/service_plans/{guid}")
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
struct ServiceEntity<'a> {
    label: &'a str,
    provider: Option<&'a str>,
    url: &'a str,
    description: &'a str,
    long_description: Option<&'a str>,
    version: &'a str,
    info_url: Option<&'a str>,
    active: bool,
    bindable: bool,
    unique_id: &'a str,
    extra: Option<&'a str>,
    tags: &'a [String],
    requires: [&'a str; 0],
    documentation_url: Option<&'a str>,
    service_broker_guid: Option<&'a str>,
    plan_updateable: bool,
    service_plans_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_plans: Option<&'a serde_json::value::RawValue>,
}

#[derive(Serialize)]
struct PlanEntity<'a> {
    name: &'a str,
    free: bool,
    description: &'a str,
    service_guid: &'a str,
    extra: Option<&'a str>,
    unique_id: &'a str,
    public: bool,
    active: bool,
    bindable: bool,
    service_url: String,
    service_instances_url: String,
}

pub fn render_service(v: &ServiceView<'_>) -> Vec<u8> {
    let url = service_url(v.guid);
    let envelope = Envelope {
        metadata: Metadata {
            guid: v.guid.to_string(),
            url: url.clone(),
            created_at: timestamp(v.created_at),
            updated_at: None,
        },
        entity: ServiceEntity {
            label: v.label,
            provider: v.provider,
            url: v.url,
            description: v.description,
            long_description: v.long_description,
            version: v.version,
            info_url: v.info_url,
            active: v.active,
            bindable: v.bindable,
            unique_id: v.unique_id,
            extra: v.extra,
            tags: v.tags,
            requires: [],
            documentation_url: v.documentation_url,
            service_broker_guid: None,
            plan_updateable: false,
            service_plans_url: format!("{url}/service_plans"),
            service_plans: v.service_plans,
        },
    };
    // Plain strings, booleans and lists always serialize.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

pub fn render_plan(v: &PlanView<'_>) -> Vec<u8> {
    let url = plan_url(v.guid);
    let envelope = Envelope {
        metadata: Metadata {
            guid: v.guid.to_string(),
            url: url.clone(),
            created_at: timestamp(v.created_at),
            updated_at: None,
        },
        entity: PlanEntity {
            name: v.name,
            free: v.free,
            description: v.description,
            service_guid: v.service_guid,
            extra: v.extra,
            unique_id: v.unique_id,
            public: v.public,
            active: v.active,
            bindable: v.bindable,
            service_url: service_url(v.service_guid),
            service_instances_url: format!("{url}/service_instances"),
        },
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_is_a_string_and_the_links_are_the_cloud_controllers() {
        let tags = vec!["mysql".to_string()];
        let service = render_service(&ServiceView {
            guid: "S",
            label: "mysql",
            provider: Some("core"),
            url: "http://gw",
            description: "MySQL",
            long_description: None,
            version: "5.7",
            info_url: None,
            active: true,
            bindable: true,
            unique_id: "S",
            extra: Some(r#"{"displayName":"MySQL"}"#),
            tags: &tags,
            documentation_url: Some("http://docs"),
            created_at: 0,
            service_plans: None,
        });
        let v: serde_json::Value = serde_json::from_slice(&service).unwrap();
        assert_eq!(v["metadata"]["url"], "/v2/services/S");
        assert_eq!(v["entity"]["extra"], r#"{"displayName":"MySQL"}"#);
        assert_eq!(v["entity"]["service_broker_guid"], serde_json::Value::Null);
        assert_eq!(v["entity"]["plan_updateable"], false);
        assert_eq!(v["entity"]["requires"], serde_json::json!([]));
        assert_eq!(
            v["entity"]["service_plans_url"],
            "/v2/services/S/service_plans"
        );
        let plan = render_plan(&PlanView {
            guid: "P",
            name: "100mb",
            free: false,
            description: "",
            service_guid: "S",
            extra: None,
            unique_id: "u",
            public: true,
            active: true,
            bindable: true,
            created_at: 0,
        });
        let v: serde_json::Value = serde_json::from_slice(&plan).unwrap();
        assert_eq!(v["entity"]["extra"], serde_json::Value::Null);
        assert_eq!(v["entity"]["service_url"], "/v2/services/S");
        assert_eq!(
            v["entity"]["service_instances_url"],
            "/v2/service_plans/P/service_instances"
        );
        assert_eq!(v["metadata"]["created_at"], "1970-01-01T00:00:00+00:00");
    }
}
