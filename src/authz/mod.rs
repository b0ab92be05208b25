//! The Authorizer port's adapters, picked per request by the configuration's `[authorization]
//! source`: `static_roles` (`[[spaces]]` and their role lists) or `cloud_controller` (the
//! `[upstream]`'s v3 API with the caller's token, its answers kept in `cache`).

mod cache;
mod cloud_controller;
mod static_roles;

pub use cloud_controller::MAX_VISIBLE_SPACES;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use cache::{Answer, AnswerCache, Asked, Key, ScopeClass, Source};
use cloud_controller::{Call, CloudController};

use crate::config::AuthorizationSource;
use crate::metrics::Metrics;
use crate::service::{
    Authorizer, AuthzContext, FeatureFlag, Question, SpaceFacts, Undecided, VisibleOrganizations,
    VisibleSpaces,
};

/// Both sources behind the port: one per process, so the Cloud Controller's pooled
/// connections and the cache outlive reloads (a new configuration empties the cache).
pub struct Authorization {
    cloud_controller: CloudController,
    cache: AnswerCache,
    metrics: Arc<Metrics>,
}

impl Authorization {
    pub fn new(metrics: Arc<Metrics>) -> Authorization {
        Authorization {
            cloud_controller: CloudController::new(),
            cache: AnswerCache::new(),
            metrics,
        }
    }

    /// The context of a Cloud Controller call, when that is the configured source.
    fn call<'a>(&'a self, cx: &AuthzContext<'a>) -> Option<Call<'a>> {
        let settings = &cx.rt.authorization;
        if settings.source != AuthorizationSource::CloudController {
            return None;
        }
        // Validated at load: cloud_controller needs an upstream.
        let upstream = cx.rt.upstream.as_ref()?;
        Some(Call {
            caller: cx.caller,
            upstream,
            timeout: settings.timeout,
            request_id: cx.request_id,
            metrics: &self.metrics,
        })
    }

    /// `asked`'s answer from the cache, or from `ask`.
    async fn cached<F>(
        &self,
        cx: &AuthzContext<'_>,
        asked: Asked,
        ask: F,
    ) -> Result<Answer, Undecided>
    where
        F: Future<Output = Result<Answer, Undecided>>,
    {
        let settings = &cx.rt.authorization;
        let question = asked.question();
        let key = Key {
            user_id: cx.caller.user_id.clone(),
            scopes: ScopeClass::of(&cx.caller.scopes),
            asked,
        };
        let (answer, source) = self
            .cache
            .get_or_ask(
                cx.rt.generation,
                settings.cache_size,
                key,
                ttl(
                    settings.cache_ttl,
                    cx.caller.expires_at,
                    crate::clock::now_unix(),
                ),
                ask,
            )
            .await;
        if source == Source::Cache {
            self.metrics
                .authorization_cache_hits
                .with_label_values(&[question.as_str()])
                .inc();
        }
        answer
    }
}

/// Says at start and after each reload who decides, and — plainly — what `static` without
/// role lists allows.
pub fn log_source(rt: &crate::config::Runtime) {
    let a = &rt.authorization;
    let with_roles = rt.spaces().filter(|(_, s)| s.roles.is_some()).count();
    match (a.source, rt.upstream.as_ref()) {
        (AuthorizationSource::CloudController, Some(upstream)) => {
            log::info!(
                "Authorization: the Cloud Controller decides (space, role, feature flag, organization), asked with each caller's token. source=cloud_controller upstream={} cache_seconds={} cache_size={} timeout_seconds={}",
                upstream.target.display_url,
                a.cache_ttl.as_secs(),
                a.cache_size,
                a.timeout.as_secs()
            );
            if rt.space_count() > 0 {
                log::warn!("Authorization: [[spaces]] (and their role lists) are not used with source = cloud_controller; the Cloud Controller's spaces are.");
            }
        }
        _ if with_roles == 0 => log::warn!(
            "Authorization: static, and no [[spaces]] entry has role lists: every token with cloud_controller.write may create, change and delete instances in every listed space, and every reader sees them all. source=static spaces={}",
            rt.space_count()
        ),
        _ => log::info!(
            "Authorization: static, with role lists in {with_roles} of {} spaces; a space without lists is open to every writer. source=static",
            rt.space_count()
        ),
    }
}

/// The cache's time for an answer: `configured`, cut to what is left of the token's life.
fn ttl(configured: Duration, token_expires_at: i64, now: i64) -> Duration {
    let left = token_expires_at.saturating_sub(now);
    configured.min(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

/// An answer of another shape than asked: the cache keys each question to its own shape, so
/// this is never reached; refusing is the safe way out.
fn mismatch(question: Question) -> Undecided {
    Undecided {
        question,
        reason: "internal: a cached answer of another shape".into(),
    }
}

#[async_trait]
impl Authorizer for Authorization {
    async fn space(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<Option<SpaceFacts>, Undecided> {
        let Some(call) = self.call(cx) else {
            return Ok(static_roles::space(cx.rt, cx.caller, space_guid));
        };
        let ask = async {
            Ok(Answer::Space(
                self.cloud_controller.space(&call, space_guid).await?,
            ))
        };
        match self
            .cached(cx, Asked::Space(space_guid.into()), ask)
            .await?
        {
            Answer::Space(space) => Ok(space),
            _ => Err(mismatch(Question::Space)),
        }
    }

    async fn can_see_space(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<bool, Undecided> {
        if self.call(cx).is_none() {
            return Ok(static_roles::can_see(cx.rt, cx.caller, space_guid));
        }
        Ok(self.space(cx, space_guid).await?.is_some())
    }

    async fn is_space_developer(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<bool, Undecided> {
        let Some(call) = self.call(cx) else {
            return Ok(static_roles::is_space_developer(
                cx.rt, cx.caller, space_guid,
            ));
        };
        let ask = async {
            Ok(Answer::Yes(
                self.cloud_controller
                    .is_space_developer(&call, space_guid)
                    .await?,
            ))
        };
        match self.cached(cx, Asked::Role(space_guid.into()), ask).await? {
            Answer::Yes(yes) => Ok(yes),
            _ => Err(mismatch(Question::Role)),
        }
    }

    async fn instance_creation(&self, cx: &AuthzContext<'_>) -> Result<FeatureFlag, Undecided> {
        let Some(call) = self.call(cx) else {
            return Ok(static_roles::instance_creation());
        };
        let ask = async {
            Ok(Answer::Flag(
                self.cloud_controller.instance_creation(&call).await?,
            ))
        };
        match self.cached(cx, Asked::FeatureFlag, ask).await? {
            Answer::Flag(flag) => Ok(flag),
            _ => Err(mismatch(Question::FeatureFlag)),
        }
    }

    async fn organization_suspended(
        &self,
        cx: &AuthzContext<'_>,
        organization_guid: &str,
    ) -> Result<bool, Undecided> {
        let Some(call) = self.call(cx) else {
            return Ok(static_roles::organization_suspended());
        };
        let ask = async {
            Ok(Answer::Yes(
                self.cloud_controller
                    .organization_suspended(&call, organization_guid)
                    .await?,
            ))
        };
        let asked = Asked::Organization(organization_guid.into());
        match self.cached(cx, asked, ask).await? {
            Answer::Yes(suspended) => Ok(suspended),
            _ => Err(mismatch(Question::Organization)),
        }
    }

    async fn visible_spaces(&self, cx: &AuthzContext<'_>) -> Result<VisibleSpaces, Undecided> {
        let Some(call) = self.call(cx) else {
            return Ok(static_roles::visible_spaces(cx.rt, cx.caller));
        };
        if cx.caller.reads_everything() {
            return Ok(VisibleSpaces::All);
        }
        let ask = async {
            Ok(Answer::Spaces(Arc::new(
                self.cloud_controller.visible_spaces(&call).await?,
            )))
        };
        match self.cached(cx, Asked::VisibleSpaces, ask).await? {
            Answer::Spaces(spaces) => Ok(spaces.as_ref().clone()),
            _ => Err(mismatch(Question::VisibleSpaces)),
        }
    }

    async fn visible_organizations(
        &self,
        cx: &AuthzContext<'_>,
    ) -> Result<VisibleOrganizations, Undecided> {
        let Some(call) = self.call(cx) else {
            return Ok(static_roles::visible_organizations(cx.rt, cx.caller));
        };
        if cx.caller.reads_everything() {
            return Ok(VisibleOrganizations::All);
        }
        let ask = async {
            Ok(Answer::Organizations(Arc::new(
                self.cloud_controller.visible_organizations(&call).await?,
            )))
        };
        match self.cached(cx, Asked::VisibleOrganizations, ask).await? {
            Answer::Organizations(orgs) => Ok(orgs.as_ref().clone()),
            _ => Err(mismatch(Question::VisibleOrganizations)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_never_outlive_the_token() {
        let now = 1_800_000_000;
        let ten = Duration::from_secs(10);
        assert_eq!(ttl(ten, now + 3600, now), ten);
        assert_eq!(ttl(ten, now + 3, now), Duration::from_secs(3));
        assert_eq!(ttl(ten, now - 5, now), Duration::ZERO);
        assert_eq!(ttl(Duration::ZERO, now + 3600, now), Duration::ZERO);
    }
}
