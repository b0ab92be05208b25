//! `[authorization] source = "cloud_controller"`: the `[upstream]` Cloud Controller's v3 API,
//! asked with the caller's own bearer token — never a token of brokergate's — so its answers
//! are the caller's: a space the caller cannot see is a 404 there as it is here.
//!
//! | question | call | yes when |
//! |---|---|---|
//! | space | `GET /v3/spaces/:guid` | 200 (its organization from `relationships`) |
//! | role | `GET /v3/roles?types=space_developer&space_guids=S&user_guids=U` | any result |
//! | feature flag | `GET /v3/feature_flags/service_instance_creation` | `enabled` |
//! | organization | `GET /v3/organizations/:guid` | `suspended: false` |
//! | visible spaces | `GET /v3/spaces?per_page=1000&page=N`, every page | — |
//! | organizations | `GET /v3/organizations?per_page=1000&page=N`, every page | — |
//!
//! A 401, 403 or 404 is the Cloud Controller saying no. Anything else — no connection, no
//! answer within `[authorization] timeout_seconds`, a 5xx, an answer that does not parse — is
//! [`Undecided`]: the request is refused with 503, never let through.

use std::time::{Duration, Instant};

use http::StatusCode;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::auth::Identity;
use crate::cc_client::CloudControllerClient;
use crate::config::Upstream;
use crate::metrics::Metrics;
use crate::service::{
    FeatureFlag, Question, SpaceFacts, Undecided, VisibleOrganizations, VisibleSpaces,
};

/// Spaces asked for per page (the v3 API allows up to 5000; 1000 keep a page near 1 MiB).
const SPACES_PER_PAGE: usize = 1000;
/// Most spaces (or organizations) one caller's list may hold; more is refused (503) rather
/// than cut short.
pub const MAX_VISIBLE_SPACES: usize = 10_000;

/// Everything but RFC 3986 unreserved characters is escaped in a path segment or a query
/// value, so a guid from a request can never change which resource is asked for.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(value: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(value, COMPONENT)
}

/// Whether `guid`, as a path segment, names one resource: empty, `.` and `..` would name the
/// collection or its parent (`/v3/spaces/` is the list), so no such guid is ever asked for.
fn names_one_resource(guid: &str) -> bool {
    !matches!(guid, "" | "." | "..")
}

/// What an answer said, before it is parsed.
enum Said {
    Yes(bytes::Bytes),
    /// 401, 403 or 404.
    No,
}

pub(super) struct CloudController {
    http: CloudControllerClient,
}

impl CloudController {
    pub(super) fn new() -> CloudController {
        CloudController {
            http: CloudControllerClient::new(),
        }
    }

    pub(super) async fn space(
        &self,
        call: &Call<'_>,
        space_guid: &str,
    ) -> Result<Option<SpaceFacts>, Undecided> {
        if !names_one_resource(space_guid) {
            return Ok(None);
        }
        let path = format!("/v3/spaces/{}", encode(space_guid));
        let Said::Yes(body) = self.get(call, Question::Space, &path).await? else {
            call.count(Question::Space, "denied");
            return Ok(None);
        };
        let space: V3Space = call.parse(Question::Space, &body)?;
        call.count(Question::Space, "allowed");
        Ok(Some(SpaceFacts {
            organization_guid: Some(space.relationships.organization.data.guid),
        }))
    }

    pub(super) async fn is_space_developer(
        &self,
        call: &Call<'_>,
        space_guid: &str,
    ) -> Result<bool, Undecided> {
        let path = format!(
            "/v3/roles?types=space_developer&space_guids={}&user_guids={}",
            encode(space_guid),
            encode(&call.caller.user_id)
        );
        let yes = match self.get(call, Question::Role, &path).await? {
            Said::Yes(body) => {
                let roles: V3List<serde::de::IgnoredAny> = call.parse(Question::Role, &body)?;
                roles.pagination.total_results > 0 || !roles.resources.is_empty()
            }
            Said::No => false,
        };
        call.count(Question::Role, if yes { "allowed" } else { "denied" });
        Ok(yes)
    }

    pub(super) async fn instance_creation(
        &self,
        call: &Call<'_>,
    ) -> Result<FeatureFlag, Undecided> {
        let path = "/v3/feature_flags/service_instance_creation";
        let flag = match self.get(call, Question::FeatureFlag, path).await? {
            Said::Yes(body) => {
                let flag: V3FeatureFlag = call.parse(Question::FeatureFlag, &body)?;
                if flag.enabled {
                    FeatureFlag::Enabled
                } else {
                    FeatureFlag::Disabled {
                        custom_message: flag.custom_error_message.filter(|m| !m.is_empty()),
                    }
                }
            }
            // A flag the caller may not read is not one that lets them through.
            Said::No => FeatureFlag::Disabled {
                custom_message: None,
            },
        };
        let result = match flag {
            FeatureFlag::Enabled => "allowed",
            FeatureFlag::Disabled { .. } => "denied",
        };
        call.count(Question::FeatureFlag, result);
        Ok(flag)
    }

    pub(super) async fn organization_suspended(
        &self,
        call: &Call<'_>,
        organization_guid: &str,
    ) -> Result<bool, Undecided> {
        if !names_one_resource(organization_guid) {
            return Ok(true);
        }
        let path = format!("/v3/organizations/{}", encode(organization_guid));
        let suspended = match self.get(call, Question::Organization, &path).await? {
            Said::Yes(body) => {
                let org: V3Organization = call.parse(Question::Organization, &body)?;
                org.suspended
            }
            Said::No => true,
        };
        call.count(
            Question::Organization,
            if suspended { "denied" } else { "allowed" },
        );
        Ok(suspended)
    }

    pub(super) async fn visible_spaces(&self, call: &Call<'_>) -> Result<VisibleSpaces, Undecided> {
        let guids = self
            .every_page(call, Question::VisibleSpaces, "/v3/spaces")
            .await?;
        Ok(VisibleSpaces::Only(guids))
    }

    pub(super) async fn visible_organizations(
        &self,
        call: &Call<'_>,
    ) -> Result<VisibleOrganizations, Undecided> {
        let guids = self
            .every_page(call, Question::VisibleOrganizations, "/v3/organizations")
            .await?;
        Ok(VisibleOrganizations::Only(guids))
    }

    /// The guids of every page of a v3 list, built here (page numbers, never a `next` link the
    /// answer names), within one deadline per page, sorted; at most [`MAX_VISIBLE_SPACES`].
    async fn every_page(
        &self,
        call: &Call<'_>,
        question: Question,
        collection: &str,
    ) -> Result<Vec<String>, Undecided> {
        let max_pages = MAX_VISIBLE_SPACES.div_ceil(SPACES_PER_PAGE);
        let mut guids = Vec::new();
        for page in 1..=max_pages {
            let path = format!("{collection}?per_page={SPACES_PER_PAGE}&page={page}");
            let Said::Yes(body) = self.get(call, question, &path).await? else {
                // The caller may list nothing.
                call.count(question, "denied");
                return Ok(Vec::new());
            };
            let listed: V3List<V3Guid> = call.parse(question, &body)?;
            guids.extend(listed.resources.into_iter().map(|s| s.guid));
            let total = usize::try_from(listed.pagination.total_results).unwrap_or(usize::MAX);
            if total > MAX_VISIBLE_SPACES {
                call.count(question, "unavailable");
                return Err(call.undecided(
                    question,
                    format!(
                        "the caller sees {total} of {collection}, more than {MAX_VISIBLE_SPACES}"
                    ),
                ));
            }
            if u64::try_from(page).unwrap_or(u64::MAX) >= listed.pagination.total_pages
                || guids.len() >= total
            {
                break;
            }
        }
        guids.sort();
        guids.dedup();
        call.count(question, "allowed");
        Ok(guids)
    }

    /// One GET with the caller's token; counts unavailable answers (the callers count the rest).
    async fn get(
        &self,
        call: &Call<'_>,
        question: Question,
        path: &str,
    ) -> Result<Said, Undecided> {
        let started = Instant::now();
        let result = self.exchange(call, path).await;
        call.metrics
            .authorization_request_duration
            .with_label_values(&[question.as_str()])
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|reason| {
            call.count(question, "unavailable");
            log::warn!(
                "The Cloud Controller could not answer an authorization question; refusing. question={question} upstream={} reason={reason}",
                call.upstream.target.display_url
            );
            call.undecided(question, reason)
        })
    }

    async fn exchange(&self, call: &Call<'_>, path: &str) -> Result<Said, String> {
        let Some(token) = call.caller.token.expose() else {
            return Err("the caller has no token to ask with".into());
        };
        let answer = self
            .http
            .fetch(
                call.upstream,
                Some(token),
                path,
                call.request_id,
                call.timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
        match StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY) {
            StatusCode::OK => Ok(Said::Yes(answer.body)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                Ok(Said::No)
            }
            other => Err(format!("answered {}", other.as_u16())),
        }
    }
}

/// One question's context: who asks, where, within what deadline.
pub(super) struct Call<'a> {
    pub caller: &'a Identity,
    pub upstream: &'a Upstream,
    pub timeout: Duration,
    pub request_id: &'a str,
    pub metrics: &'a Metrics,
}

impl Call<'_> {
    fn count(&self, question: Question, result: &str) {
        self.metrics
            .authorization_requests
            .with_label_values(&[question.as_str(), result])
            .inc();
    }

    fn undecided(&self, question: Question, reason: String) -> Undecided {
        Undecided { question, reason }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        question: Question,
        body: &[u8],
    ) -> Result<T, Undecided> {
        serde_json::from_slice(body).map_err(|e| {
            self.count(question, "unavailable");
            log::warn!(
                "The Cloud Controller's answer to an authorization question does not parse; refusing. question={question} error={e}"
            );
            self.undecided(question, format!("unreadable answer: {e}"))
        })
    }
}

/// Every v3 space has its organization: an answer without one is not a space.
#[derive(Deserialize)]
struct V3Space {
    relationships: V3Relationships,
}

#[derive(Deserialize)]
struct V3Relationships {
    organization: V3ToOne,
}

#[derive(Deserialize)]
struct V3ToOne {
    data: V3Guid,
}

#[derive(Deserialize)]
struct V3Guid {
    guid: String,
}

#[derive(Deserialize)]
struct V3List<T> {
    pagination: V3Pagination,
    #[serde(default = "Vec::new")]
    resources: Vec<T>,
}

#[derive(Deserialize)]
struct V3Pagination {
    total_results: u64,
    #[serde(default)]
    total_pages: u64,
}

#[derive(Deserialize)]
struct V3FeatureFlag {
    enabled: bool,
    #[serde(default)]
    custom_error_message: Option<String>,
}

#[derive(Deserialize)]
struct V3Organization {
    suspended: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_cannot_escape_their_path_segment() {
        assert_eq!(
            encode("../v2/apps?x=1#").to_string(),
            "..%2Fv2%2Fapps%3Fx%3D1%23"
        );
        assert_eq!(encode("a-b_c.d~e").to_string(), "a-b_c.d~e");
        for collection in ["", ".", ".."] {
            assert!(!names_one_resource(collection), "{collection:?}");
        }
        assert!(names_one_resource("..."));
    }

    #[test]
    fn answers_parse_as_the_v3_api_renders_them() {
        let space: V3Space = serde_json::from_str(
            r#"{"guid":"s","name":"dev","relationships":{"organization":{"data":{"guid":"o"}}},"links":{}}"#,
        )
        .unwrap();
        assert_eq!(space.relationships.organization.data.guid, "o");
        // Not a space: the mock answer of a plain pass-through upstream.
        let not_a_space = serde_json::from_str::<V3Space>(r#"{"from":"upstream"}"#);
        assert!(not_a_space.is_err());
        let roles: V3List<serde::de::IgnoredAny> = serde_json::from_str(
            r#"{"pagination":{"total_results":0,"total_pages":1,"first":{"href":"x"},"next":null},"resources":[]}"#,
        )
        .unwrap();
        assert_eq!(roles.pagination.total_results, 0);
        let flag: V3FeatureFlag = serde_json::from_str(
            r#"{"name":"service_instance_creation","enabled":false,"custom_error_message":"ask ops"}"#,
        )
        .unwrap();
        assert!(!flag.enabled);
        assert_eq!(flag.custom_error_message.as_deref(), Some("ask ops"));
        let org: V3Organization =
            serde_json::from_str(r#"{"guid":"o","name":"org","suspended":true}"#).unwrap();
        assert!(org.suspended);
    }
}
