//! The one place where use-case and auth errors become Cloud Controller error bodies: each
//! domain error has its status, code and wording here, and nowhere else.

use crate::auth::AuthError;
use crate::cc::error::HttpDetail;
use crate::cc::ApiError;
use crate::service::{
    BindError, BrokerError, BrokerFailure, DeleteError, ProvisionError, ReadError, RuleViolation,
    UpdateError,
};
use crate::store::{HandleKind, StoreError};

pub fn from_auth(e: AuthError) -> ApiError {
    match e {
        AuthError::Missing => ApiError::not_authenticated(),
        AuthError::Invalid(_) => ApiError::invalid_auth_token(),
    }
}

/// The `reason` label an authentication failure is counted under.
pub fn auth_failure_reason(e: AuthError) -> &'static str {
    match e {
        AuthError::Missing => "missing",
        AuthError::Invalid(reason) => reason.as_str(),
    }
}

pub fn from_provision(e: &ProvisionError) -> ApiError {
    match e {
        ProvisionError::UnknownPlan | ProvisionError::InactivePlan => {
            ApiError::instance_invalid("not a valid service plan")
        }
        ProvisionError::UnknownSpace => ApiError::instance_invalid("not a valid space"),
        ProvisionError::InsufficientScope => ApiError::insufficient_scope(),
        ProvisionError::FeatureDisabled { custom_message } => {
            ApiError::feature_disabled("service_instance_creation", custom_message.as_deref())
        }
        ProvisionError::NotAuthorized => ApiError::not_authorized(),
        ProvisionError::AuthorizationUnavailable(_) => ApiError::authorization_unavailable(),
        ProvisionError::PlanNotVisible => ApiError::organization_not_authorized(),
        ProvisionError::NameEmpty => ApiError::name_empty(),
        ProvisionError::NameTooLong { limit } => ApiError::name_too_long(*limit),
        ProvisionError::TagsTooLong { name, .. } => ApiError::tags_too_long(name),
        ProvisionError::NameTaken { name } => ApiError::name_taken(name),
        ProvisionError::Broker(b) => from_broker(b),
        ProvisionError::Store(e) => from_store(e),
    }
}

pub fn from_read(e: &ReadError) -> ApiError {
    match e {
        ReadError::NotFound { guid } => ApiError::instance_not_found(guid),
        ReadError::HandleNotFound { kind, guid } => handle_not_found(*kind, guid),
        ReadError::InsufficientScope => ApiError::insufficient_scope(),
        ReadError::Hidden { guid } => ApiError::instance_not_found(guid),
        ReadError::HandleHidden { kind, guid } => handle_not_found(*kind, guid),
        ReadError::AuthorizationUnavailable(_) => ApiError::authorization_unavailable(),
        ReadError::Store(e) => from_store(e),
    }
}

pub fn from_update(e: &UpdateError) -> ApiError {
    match e {
        UpdateError::NotFound { guid } => ApiError::instance_not_found(guid),
        UpdateError::InsufficientScope => ApiError::insufficient_scope(),
        UpdateError::Hidden { guid } => ApiError::instance_not_found(guid),
        UpdateError::NotAuthorized => ApiError::not_authorized(),
        UpdateError::AuthorizationUnavailable(_) => ApiError::authorization_unavailable(),
        UpdateError::SpaceChange => ApiError::space_change_not_allowed(),
        UpdateError::PlanNotUpdateable => ApiError::plan_not_updateable(),
        UpdateError::Invalid { violation, name } => from_rule(*violation, name),
        UpdateError::NameTaken { name } => ApiError::name_taken(name),
        UpdateError::InProgress { guid } => ApiError::operation_in_progress(guid),
        UpdateError::Store(e) => from_store(e),
    }
}

pub fn from_delete(e: &DeleteError) -> ApiError {
    match e {
        DeleteError::NotFound { guid } => ApiError::instance_not_found(guid),
        DeleteError::InsufficientScope => ApiError::insufficient_scope(),
        DeleteError::Hidden { guid } => ApiError::instance_not_found(guid),
        DeleteError::NotAuthorized => ApiError::not_authorized(),
        DeleteError::AuthorizationUnavailable(_) => ApiError::authorization_unavailable(),
        DeleteError::NotEmpty => ApiError::association_not_empty(),
        DeleteError::InProgress { guid } => ApiError::operation_in_progress(guid),
        DeleteError::BrokerNotConfigured { broker } => not_configured(&format!("broker {broker}")),
        DeleteError::Refused(b) => deprovision_failed(b),
        DeleteError::Broker(b) => from_broker(b),
        DeleteError::Store(e) => from_store(e),
    }
}

pub fn from_bind(e: &BindError) -> ApiError {
    match e {
        BindError::InstanceNotFound { guid } => ApiError::instance_not_found(guid),
        BindError::HandleNotFound { kind, guid } => handle_not_found(*kind, guid),
        BindError::InsufficientScope => ApiError::insufficient_scope(),
        BindError::InstanceHidden { guid } => ApiError::instance_not_found(guid),
        BindError::HandleHidden { kind, guid } => handle_not_found(*kind, guid),
        BindError::NotAuthorized => ApiError::not_authorized(),
        BindError::AuthorizationUnavailable(_) => ApiError::authorization_unavailable(),
        BindError::InProgress { instance_guid } => ApiError::operation_in_progress(instance_guid),
        BindError::AppBound => ApiError::binding_app_taken(),
        BindError::KeyNameTaken { name } => ApiError::key_name_taken(name),
        BindError::KeyInvalid { detail } => ApiError::key_invalid(detail),
        BindError::NotConfigured { what } => not_configured(what),
        BindError::Broker(b) => from_broker(b),
        BindError::Store(e) => from_store(e),
    }
}

/// An instance whose plan or broker an operator removed from the configuration: nothing can
/// reach its broker until it is configured again.
fn not_configured(what: &str) -> ApiError {
    ApiError::service_unavailable(&format!(
        "The {what} of this service instance is not configured."
    ))
}

/// The broker answered a deprovision with an error: its own description, else its status and
/// body, as a provision failure describes them.
fn deprovision_failed(e: &BrokerError) -> ApiError {
    let (status, description, body) = match &e.kind {
        BrokerFailure::Rejected {
            status,
            description,
            body,
        }
        | BrokerFailure::BadResponse {
            status,
            description,
            body,
        } => (*status, description.as_deref(), body.as_str()),
        // Not a refusal; mapped as any broker failure.
        _ => return from_broker(e),
    };
    let description = match description {
        Some(d) => d.to_string(),
        None => format!("Status Code: {}, Body: {body}", status_line(status)),
    };
    ApiError::deprovision_failed(
        &description,
        HttpDetail {
            uri: e.uri.clone(),
            method: e.method,
            status,
        },
    )
}

fn handle_not_found(kind: HandleKind, guid: &str) -> ApiError {
    match kind {
        HandleKind::Binding => ApiError::binding_not_found(guid),
        HandleKind::Key => ApiError::key_not_found(guid),
    }
}

/// A name rule the instance `name` breaks.
fn from_rule(violation: RuleViolation, name: &str) -> ApiError {
    match violation {
        RuleViolation::NameEmpty => ApiError::name_empty(),
        RuleViolation::NameTooLong { limit } => ApiError::name_too_long(limit),
        RuleViolation::TagsTooLong { .. } => ApiError::tags_too_long(name),
    }
}

/// Never the store's own words: they may name paths or the database. A store that cannot
/// serve now is 503, so clients and load balancers retry; anything else is CC's catch-all.
pub fn from_store(e: &StoreError) -> ApiError {
    match e {
        StoreError::Unavailable { .. } => {
            ApiError::service_unavailable("The service instance store is unavailable; try again.")
        }
        _ => ApiError::unknown(),
    }
}

fn from_broker(e: &BrokerError) -> ApiError {
    let http = |status| HttpDetail {
        uri: e.uri.clone(),
        method: e.method,
        status,
    };
    match &e.kind {
        BrokerFailure::Duplicate => ApiError::duplicate_not_allowed(),
        BrokerFailure::Rejected {
            status,
            description,
            body,
        } => ApiError::broker_rejected(
            describe(description, || {
                format!(
                    "The service broker rejected the request to {}. Status Code: {}, Body: {body}",
                    e.uri,
                    status_line(*status)
                )
            }),
            http(*status),
        ),
        BrokerFailure::BadResponse {
            status,
            description,
            body,
        } => ApiError::broker_bad_response(
            describe(description, || {
                format!(
                    "The service broker returned an invalid response for the request to {}. Status Code: {}, Body: {body}",
                    e.uri,
                    status_line(*status)
                )
            }),
            http(*status),
        ),
        BrokerFailure::Malformed { detail, .. } => ApiError::broker_malformed(&e.uri, detail),
        BrokerFailure::Unreachable(_) => ApiError::broker_unreachable(&e.uri),
        BrokerFailure::Timeout => ApiError::broker_timeout(&e.uri),
    }
}

fn describe(description: &Option<String>, otherwise: impl FnOnce() -> String) -> String {
    match description {
        Some(d) => format!("Service broker error: {d}"),
        None => otherwise(),
    }
}

fn status_line(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(kind: BrokerFailure) -> ProvisionError {
        ProvisionError::Broker(BrokerError {
            uri: "http://127.0.0.1:9001/gateway/v1/configurations".into(),
            method: "POST",
            kind,
        })
    }

    #[test]
    fn broker_failures_map_to_the_documented_statuses() {
        let cases = [
            (
                BrokerFailure::Duplicate,
                400,
                60008,
                "CF-ServiceInstanceDuplicateNotAllowed",
            ),
            (
                BrokerFailure::Rejected {
                    status: 403,
                    description: Some("no".into()),
                    body: String::new(),
                },
                502,
                10001,
                "CF-ServiceBrokerRequestRejected",
            ),
            (
                BrokerFailure::BadResponse {
                    status: 500,
                    description: None,
                    body: "x".into(),
                },
                502,
                10001,
                "CF-ServiceBrokerBadResponse",
            ),
            (
                BrokerFailure::Malformed {
                    status: 200,
                    detail: "d".into(),
                    service_id: None,
                },
                502,
                10001,
                "CF-ServiceBrokerResponseMalformed",
            ),
            (
                BrokerFailure::Unreachable("refused".into()),
                502,
                10001,
                "CF-ServiceBrokerApiUnreachable",
            ),
            (
                BrokerFailure::Timeout,
                504,
                10001,
                "CF-ServiceBrokerApiTimeout",
            ),
        ];
        for (kind, status, code, error_code) in cases {
            let api = from_provision(&broker(kind));
            assert_eq!(
                (api.status, api.code, api.error_code),
                (status, code, error_code)
            );
        }
    }

    #[test]
    fn validation_failures_keep_the_cloud_controller_codes_and_words() {
        let api = from_provision(&ProvisionError::NameEmpty);
        assert_eq!((api.status, api.code), (400, 60001));
        let api = from_provision(&ProvisionError::NameTooLong { limit: 255 });
        assert_eq!((api.status, api.code), (400, 60009));
        assert!(api.description.contains("255"), "{}", api.description);
        let api = from_provision(&ProvisionError::TagsTooLong {
            name: "my-service-instance".into(),
            limit: 2048,
        });
        assert_eq!((api.status, api.code), (400, 60015));
        assert!(api.description.contains("my-service-instance"));
        let api = from_provision(&ProvisionError::NameTaken { name: "n".into() });
        assert_eq!(
            (api.code, api.description.as_str()),
            (60002, "The service instance name is taken: n")
        );
    }

    #[test]
    fn broker_descriptions_and_http_detail() {
        let api = from_provision(&broker(BrokerFailure::BadResponse {
            status: 500,
            description: Some("This is what really happened.".into()),
            body: String::new(),
        }));
        assert_eq!(
            api.description,
            "Service broker error: This is what really happened."
        );
        let http = api.http.unwrap();
        assert_eq!((http.method, http.status), ("POST", 500));
        assert_eq!(http.uri, "http://127.0.0.1:9001/gateway/v1/configurations");

        let api = from_provision(&broker(BrokerFailure::Rejected {
            status: 422,
            description: None,
            body: "nope".into(),
        }));
        assert!(
            api.description
                .contains("Status Code: 422 Unprocessable Entity, Body: nope"),
            "{}",
            api.description
        );
    }
}
