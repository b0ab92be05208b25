//! The Cloud Controller error catalogue entries brokergate answers with, and their body:
//! `{"code":…,"description":…,"error_code":"CF-…"}` (plus `http` for broker failures),
//! always `Content-Type: application/json;charset=utf-8`.

use serde::Serialize;

/// A rendered-ready CC error: status, then the body fields in CC's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub code: u32,
    pub description: String,
    pub error_code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpDetail>,
}

/// Which broker request failed, as CC reports it. Never carries the broker token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpDetail {
    pub uri: String,
    pub method: &'static str,
    pub status: u16,
}

fn e(status: u16, code: u32, error_code: &'static str, description: String) -> ApiError {
    ApiError {
        status,
        code,
        description,
        error_code,
        http: None,
    }
}

impl ApiError {
    pub fn invalid_auth_token() -> Self {
        e(
            401,
            1000,
            "CF-InvalidAuthToken",
            "Invalid Auth Token".into(),
        )
    }
    pub fn not_authenticated() -> Self {
        e(
            401,
            10002,
            "CF-NotAuthenticated",
            "Authentication error".into(),
        )
    }
    pub fn insufficient_scope() -> Self {
        e(
            403,
            10007,
            "CF-InsufficientScope",
            "Your token lacks the necessary scopes to access this resource.".into(),
        )
    }
    pub fn message_parse_error(detail: &str) -> Self {
        e(
            400,
            1001,
            "CF-MessageParseError",
            format!("Request invalid due to parse error: {detail}"),
        )
    }
    pub fn invalid_request() -> Self {
        e(
            400,
            10004,
            "CF-InvalidRequest",
            "The request is invalid".into(),
        )
    }
    /// CC's `BadQueryParameter`: a list query CC (or brokergate's bounds) refuses.
    pub fn bad_query_parameter(detail: &str) -> Self {
        e(
            400,
            10005,
            "CF-BadQueryParameter",
            format!("The query parameter is invalid: {detail}"),
        )
    }
    /// CC's `OrderByParameterInvalid`, which CC answers with status 500: an `order-by` the
    /// collection does not sort by.
    pub fn order_by_parameter_invalid(value: &str) -> Self {
        e(
            500,
            10012,
            "CF-OrderByParameterInvalid",
            format!("Cannot order by: {value}"),
        )
    }
    pub fn not_found() -> Self {
        e(404, 10000, "CF-NotFound", "Unknown request".into())
    }
    pub fn instance_not_found(guid: &str) -> Self {
        e(
            404,
            60004,
            "CF-ServiceInstanceNotFound",
            format!("The service instance could not be found: {guid}"),
        )
    }
    pub fn body_too_large(limit: usize) -> Self {
        e(
            413,
            10004,
            "CF-InvalidRequest",
            format!("The request is invalid: the body exceeds {limit} bytes"),
        )
    }
    pub fn ambiguous_framing() -> Self {
        e(
            400,
            10004,
            "CF-InvalidRequest",
            "The request is invalid: both Content-Length and Transfer-Encoding are present".into(),
        )
    }
    pub fn name_empty() -> Self {
        e(
            400,
            60001,
            "CF-ServiceInstanceNameEmpty",
            "Service instance name is required.".into(),
        )
    }
    pub fn name_taken(name: &str) -> Self {
        e(
            400,
            60002,
            "CF-ServiceInstanceNameTaken",
            format!("The service instance name is taken: {name}"),
        )
    }
    pub fn instance_invalid(detail: &str) -> Self {
        e(
            400,
            60003,
            "CF-ServiceInstanceInvalid",
            format!("The service instance is invalid: {detail}"),
        )
    }
    pub fn duplicate_not_allowed() -> Self {
        e(
            400,
            60008,
            "CF-ServiceInstanceDuplicateNotAllowed",
            "An instance of this service is already present in this space.  Some services only support one instance per space."
                .into(),
        )
    }
    pub fn service_not_found(guid: &str) -> Self {
        e(
            404,
            120003,
            "CF-ServiceNotFound",
            format!("The service could not be found: {guid}"),
        )
    }
    pub fn plan_not_found(guid: &str) -> Self {
        e(
            404,
            110003,
            "CF-ServicePlanNotFound",
            format!("The service plan could not be found: {guid}"),
        )
    }
    pub fn space_not_found(guid: &str) -> Self {
        e(
            404,
            40004,
            "CF-SpaceNotFound",
            format!("The app space could not be found: {guid}"),
        )
    }
    /// The upstream's answer to a list brokergate merges is not a v2 list.
    pub fn upstream_bad_list() -> Self {
        e(
            502,
            10001,
            "CF-ServerError",
            "Server error: the Cloud Controller answered with something other than a list".into(),
        )
    }
    /// Not a space developer, or the organization is suspended (`errors/v2.yml` 10003).
    pub fn not_authorized() -> Self {
        e(
            403,
            10003,
            "CF-NotAuthorized",
            "You are not authorized to perform the requested action".into(),
        )
    }
    /// A feature flag is off: the flag's own message when the operator set one, as the Cloud
    /// Controller's `FeatureFlag.raise_unless_enabled!` answers.
    pub fn feature_disabled(flag: &str, custom_message: Option<&str>) -> Self {
        let description = match custom_message {
            Some(message) => format!("Feature Disabled: {message}"),
            None => format!("Feature Disabled: {flag}"),
        };
        e(403, 330002, "CF-FeatureDisabled", description)
    }
    /// Authorization could not be decided: the Cloud Controller did not answer usably.
    pub fn authorization_unavailable() -> Self {
        ApiError::service_unavailable(
            "The Cloud Controller could not be asked whether this request is authorized; try again.",
        )
    }
    /// The plan is not visible to the space's organization (`errors/v2.yml`).
    pub fn organization_not_authorized() -> Self {
        e(
            403,
            60010,
            "CF-ServiceInstanceOrganizationNotAuthorized",
            "A service instance for the selected plan cannot be created in this organization. The plan is visible because another organization you belong to has access to it."
                .into(),
        )
    }
    pub fn name_too_long(limit: usize) -> Self {
        e(
            400,
            60009,
            "CF-ServiceInstanceNameTooLong",
            format!("You have requested an invalid service instance name.  Names are limited to {limit} characters."),
        )
    }
    pub fn tags_too_long(name: &str) -> Self {
        e(
            400,
            60015,
            "CF-ServiceInstanceTagsTooLong",
            format!("Combined length of tags for service {name} must be 2048 characters or less."),
        )
    }
    pub fn space_change_not_allowed() -> Self {
        e(
            400,
            60014,
            "CF-ServiceInstanceSpaceChangeNotAllowed",
            "Cannot update space for service instance.".into(),
        )
    }
    pub fn plan_not_updateable() -> Self {
        e(
            400,
            110004,
            "CF-ServicePlanNotUpdateable",
            "The service does not support changing plans.".into(),
        )
    }
    pub fn operation_in_progress(instance_guid: &str) -> Self {
        e(
            409,
            60016,
            "CF-AsyncServiceInstanceOperationInProgress",
            format!("An operation for service instance {instance_guid} is in progress."),
        )
    }
    /// A delete without `recursive=true` of an instance with bindings or keys.
    pub fn association_not_empty() -> Self {
        e(
            400,
            10006,
            "CF-AssociationNotEmpty",
            "Please delete the service_bindings, service_keys associations for your service_instances."
                .into(),
        )
    }
    /// The broker refused a deprovision; `description` is its own (or the status and body).
    pub fn deprovision_failed(description: &str, http: HttpDetail) -> Self {
        ApiError {
            http: Some(http),
            ..e(
                409,
                60011,
                "CF-ServiceInstanceDeprovisionFailed",
                format!(
                    "The service broker reported an error during deprovisioning: {description}"
                ),
            )
        }
    }
    pub fn binding_not_found(guid: &str) -> Self {
        e(
            404,
            90004,
            "CF-ServiceBindingNotFound",
            format!("The service binding could not be found: {guid}"),
        )
    }
    pub fn binding_app_taken() -> Self {
        e(
            400,
            90003,
            "CF-ServiceBindingAppServiceTaken",
            "The app is already bound to the service.".into(),
        )
    }
    pub fn key_not_found(guid: &str) -> Self {
        e(
            404,
            360003,
            "CF-ServiceKeyNotFound",
            format!("The service key could not be found: {guid}"),
        )
    }
    pub fn key_invalid(detail: &str) -> Self {
        e(
            400,
            360002,
            "CF-ServiceKeyInvalid",
            format!("The service key is invalid: {detail}"),
        )
    }
    pub fn key_name_taken(name: &str) -> Self {
        e(
            400,
            360001,
            "CF-ServiceKeyNameTaken",
            format!("The service key name is taken: {name}"),
        )
    }
    /// The store cannot serve now (busy, or lost); a retry later may succeed.
    pub fn service_unavailable(detail: &str) -> Self {
        e(503, 10015, "CF-ServiceUnavailable", detail.into())
    }
    /// A broker answered 4xx (other than the duplicate code).
    pub fn broker_rejected(description: String, http: HttpDetail) -> Self {
        ApiError {
            http: Some(http),
            ..e(502, 10001, "CF-ServiceBrokerRequestRejected", description)
        }
    }
    /// A broker answered 5xx (or anything else that is not 2xx/4xx).
    pub fn broker_bad_response(description: String, http: HttpDetail) -> Self {
        ApiError {
            http: Some(http),
            ..e(502, 10001, "CF-ServiceBrokerBadResponse", description)
        }
    }
    pub fn broker_malformed(uri: &str, detail: &str) -> Self {
        e(
            502,
            10001,
            "CF-ServiceBrokerResponseMalformed",
            format!("The service broker returned an invalid response for the request to {uri}: {detail}"),
        )
    }
    pub fn broker_unreachable(uri: &str) -> Self {
        e(
            502,
            10001,
            "CF-ServiceBrokerApiUnreachable",
            format!("The service broker could not be reached: {uri}"),
        )
    }
    pub fn broker_timeout(uri: &str) -> Self {
        e(
            504,
            10001,
            "CF-ServiceBrokerApiTimeout",
            format!("The request to the service broker timed out: {uri}"),
        )
    }
    /// The Cloud Controller behind brokergate could not be reached (pass-through).
    pub fn upstream_unavailable() -> Self {
        e(
            502,
            10001,
            "CF-ServerError",
            "Server error: the Cloud Controller could not be reached".into(),
        )
    }
    /// Anything unexpected: CC's own catch-all body (no `CF-` prefix, as CC sends it).
    pub fn unknown() -> Self {
        e(
            500,
            10001,
            "UnknownError",
            "An unknown error occurred.".into(),
        )
    }

    /// The JSON body, newline-terminated like CC's.
    pub fn body(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| {
            // Serializing plain strings and integers cannot fail; keep a valid body anyway.
            br#"{"code":10001,"description":"An unknown error occurred.","error_code":"UnknownError"}"#
                .to_vec()
        });
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_cloud_controller_byte_for_byte() {
        assert_eq!(
            ApiError::invalid_auth_token().body(),
            b"{\"code\":1000,\"description\":\"Invalid Auth Token\",\"error_code\":\"CF-InvalidAuthToken\"}\n"
        );
        assert_eq!(
            ApiError::not_authenticated().body(),
            b"{\"code\":10002,\"description\":\"Authentication error\",\"error_code\":\"CF-NotAuthenticated\"}\n"
        );
        assert_eq!(
            ApiError::not_found().body(),
            b"{\"code\":10000,\"description\":\"Unknown request\",\"error_code\":\"CF-NotFound\"}\n"
        );
    }

    #[test]
    fn broker_errors_carry_http_after_error_code() {
        let err = ApiError::broker_bad_response(
            "Service broker error: boom".into(),
            HttpDetail {
                uri: "http://b/gateway/v1/configurations".into(),
                method: "POST",
                status: 500,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(v["http"]["status"], 500);
        assert_eq!(v["code"], 10001);
        let text = String::from_utf8(err.body()).unwrap();
        assert!(text.find("error_code").unwrap() < text.find("\"http\"").unwrap());
    }
}
