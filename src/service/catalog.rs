//! The catalog of v1 offerings and plans, as a caller may see it: brokergate's own offerings
//! (from the configuration), each shown only where one of its plans is visible — a public
//! plan to everyone; a `public = false` plan to read-all tokens and to callers belonging to
//! one of its organizations (the Cloud Controller's `ServicePlan.user_visible`) — and, for the
//! lists, the upstream Cloud Controller's answer to the same request, which the edge merges
//! in front of brokergate's entries (`cc::merge`).

use std::sync::Arc;

use super::authorize::{Authorizer, AuthzContext, Undecided, VisibleOrganizations};
use super::upstream::{Upstream, UpstreamAnswer, UpstreamDown};
use crate::auth::{Identity, Scope};
use crate::config::{Plan, Runtime, Service};

/// A `q` field of the offering lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceFilter {
    Label,
    Provider,
    Active,
    UniqueId,
    /// brokergate's offerings have no broker: never matches them.
    ServiceBrokerGuid,
}

/// A `q` field of the plan lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFilter {
    ServiceGuid,
    Active,
    UniqueId,
    Name,
    /// brokergate's plans have no broker: never matches them.
    ServiceBrokerGuid,
}

/// One catalog request, as a command.
#[derive(Debug, Clone, Copy)]
pub struct CatalogPage<'a> {
    pub caller: &'a Identity,
    pub scope: Scope,
    pub request_id: &'a str,
    /// The client's path and query, sent to the upstream as they are.
    pub path_and_query: &'a str,
}

/// brokergate's entries of a list, all of them in order, and the upstream's answer to the
/// same request when it was asked.
#[derive(Debug)]
pub struct MergedList<T> {
    pub upstream: Option<UpstreamAnswer>,
    pub own: Vec<T>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not a guid brokergate serves: the edge passes the request on.
    #[error("not brokergate's")]
    NotOurs,
    #[error("token lacks cloud_controller.read")]
    InsufficientScope,
    /// brokergate's, but hidden from the caller: answered as not found.
    #[error("service {guid} is not visible to the caller")]
    ServiceHidden { guid: String },
    #[error("service plan {guid} is not visible to the caller")]
    PlanHidden { guid: String },
    /// No upstream to ask, and the space is not one the caller may see.
    #[error("space {guid} not found")]
    SpaceNotFound { guid: String },
    #[error("{0}")]
    AuthorizationUnavailable(Undecided),
    #[error("{0}")]
    UpstreamDown(UpstreamDown),
}

pub struct Catalog {
    authorizer: Arc<dyn Authorizer>,
    upstream: Arc<dyn Upstream>,
}

impl Catalog {
    pub fn new(authorizer: Arc<dyn Authorizer>, upstream: Arc<dyn Upstream>) -> Catalog {
        Catalog {
            authorizer,
            upstream,
        }
    }

    /// `GET /v2/services/:guid`.
    pub async fn service(
        &self,
        rt: &Runtime,
        cmd: CatalogPage<'_>,
        guid: &str,
    ) -> Result<Arc<Service>, CatalogError> {
        let service = offerings(rt)
            .into_iter()
            .find(|s| s.guid == guid)
            .ok_or(CatalogError::NotOurs)?;
        check_scope(&cmd)?;
        let seen = self.plans_seen(rt, &cmd).await?;
        if !seen.iter().any(|p| p.service.guid == guid) {
            return Err(CatalogError::ServiceHidden { guid: guid.into() });
        }
        Ok(service)
    }

    /// `GET /v2/services/:guid/service_plans`: the offering's plans the caller may see.
    pub async fn service_plans<'rt>(
        &self,
        rt: &'rt Runtime,
        cmd: CatalogPage<'_>,
        guid: &str,
    ) -> Result<Vec<&'rt Plan>, CatalogError> {
        if !rt.plans().any(|p| p.service.guid == guid) {
            return Err(CatalogError::NotOurs);
        }
        check_scope(&cmd)?;
        let plans: Vec<&Plan> = self
            .plans_seen(rt, &cmd)
            .await?
            .into_iter()
            .filter(|p| p.service.guid == guid)
            .collect();
        if plans.is_empty() {
            return Err(CatalogError::ServiceHidden { guid: guid.into() });
        }
        Ok(plans)
    }

    /// `GET /v2/service_plans/:guid`.
    pub async fn plan<'rt>(
        &self,
        rt: &'rt Runtime,
        cmd: CatalogPage<'_>,
        guid: &str,
    ) -> Result<&'rt Plan, CatalogError> {
        let plan = rt.plan(guid).ok_or(CatalogError::NotOurs)?;
        check_scope(&cmd)?;
        let orgs = self
            .organizations_for(rt, &cmd, std::iter::once(plan))
            .await?;
        if !visible(plan, &orgs) {
            return Err(CatalogError::PlanHidden { guid: guid.into() });
        }
        Ok(plan)
    }

    /// `GET /v2/services`: the upstream's list, and brokergate's offerings matching `filters`.
    pub async fn services(
        &self,
        rt: &Runtime,
        cmd: CatalogPage<'_>,
        filters: &[(ServiceFilter, Vec<String>)],
    ) -> Result<MergedList<Arc<Service>>, CatalogError> {
        check_scope(&cmd)?;
        let seen = self.plans_seen(rt, &cmd).await?;
        let own = offerings_of(&seen)
            .into_iter()
            .filter(|s| service_matches(s, filters))
            .collect();
        let upstream = self.ask_upstream(rt, &cmd).await?;
        Ok(MergedList { upstream, own })
    }

    /// `GET /v2/service_plans`: the upstream's list, and brokergate's plans matching
    /// `filters`. A `service_guid` filter naming only brokergate's offerings is not sent on:
    /// the upstream holds none of their plans.
    pub async fn plans<'rt>(
        &self,
        rt: &'rt Runtime,
        cmd: CatalogPage<'_>,
        filters: &[(PlanFilter, Vec<String>)],
    ) -> Result<MergedList<&'rt Plan>, CatalogError> {
        check_scope(&cmd)?;
        let own: Vec<&Plan> = self
            .plans_seen(rt, &cmd)
            .await?
            .into_iter()
            .filter(|p| plan_matches(p, filters))
            .collect();
        let only_ours = filters.iter().any(|(field, values)| {
            *field == PlanFilter::ServiceGuid
                && values
                    .iter()
                    .all(|v| rt.plans().any(|p| p.service.guid == *v))
        });
        let upstream = if only_ours {
            None
        } else {
            self.ask_upstream(rt, &cmd).await?
        };
        Ok(MergedList { upstream, own })
    }

    /// `GET /v2/spaces/:guid/services`: the upstream's answer (which decides whether the space
    /// exists for the caller), and brokergate's offerings with a plan visible to the space's
    /// organization.
    pub async fn space_services(
        &self,
        rt: &Runtime,
        cmd: CatalogPage<'_>,
        space_guid: &str,
        filters: &[(ServiceFilter, Vec<String>)],
    ) -> Result<MergedList<Arc<Service>>, CatalogError> {
        check_scope(&cmd)?;
        let upstream = self.ask_upstream(rt, &cmd).await?;
        if upstream.as_ref().is_some_and(|a| a.status != 200) {
            // The upstream's refusal (a space it does not show the caller) is the answer.
            return Ok(MergedList {
                upstream,
                own: Vec::new(),
            });
        }
        let cx = self.context(rt, &cmd);
        let space = self
            .authorizer
            .space(&cx, space_guid)
            .await
            .map_err(CatalogError::AuthorizationUnavailable)?;
        let org = match space {
            Some(space) => space.organization_guid,
            // The upstream showed the caller the space: one brokergate does not provision
            // into, whose organization it does not know — its public plans only.
            None if upstream.is_some() => None,
            None => {
                return Err(CatalogError::SpaceNotFound {
                    guid: space_guid.into(),
                })
            }
        };
        let in_space: Vec<&Plan> = rt
            .plans()
            .filter(|p| p.visibility.admits(org.as_deref()))
            .collect();
        let own = offerings_of(&in_space)
            .into_iter()
            .filter(|s| service_matches(s, filters))
            .collect();
        Ok(MergedList { upstream, own })
    }

    fn context<'a>(&self, rt: &'a Runtime, cmd: &CatalogPage<'a>) -> AuthzContext<'a> {
        AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        }
    }

    /// Every configured plan the caller may see, in catalog order (offering label, plan
    /// name, guid).
    async fn plans_seen<'rt>(
        &self,
        rt: &'rt Runtime,
        cmd: &CatalogPage<'_>,
    ) -> Result<Vec<&'rt Plan>, CatalogError> {
        let orgs = self.organizations_for(rt, cmd, rt.plans()).await?;
        let mut plans: Vec<&Plan> = rt.plans().filter(|p| visible(p, &orgs)).collect();
        plans.sort_by(|a, b| {
            (&a.service.label, &a.name, &a.guid).cmp(&(&b.service.label, &b.name, &b.guid))
        });
        Ok(plans)
    }

    /// The caller's organizations, asked only when one of `plans` is restricted to some and
    /// the token does not read everything.
    async fn organizations_for<'p>(
        &self,
        rt: &Runtime,
        cmd: &CatalogPage<'_>,
        mut plans: impl Iterator<Item = &'p Plan>,
    ) -> Result<VisibleOrganizations, CatalogError> {
        let restricted = plans.any(|p| !matches!(p.visibility, crate::config::Visibility::Public));
        if !restricted || cmd.caller.reads_everything() {
            return Ok(VisibleOrganizations::All);
        }
        self.authorizer
            .visible_organizations(&self.context(rt, cmd))
            .await
            .map_err(CatalogError::AuthorizationUnavailable)
    }

    async fn ask_upstream(
        &self,
        rt: &Runtime,
        cmd: &CatalogPage<'_>,
    ) -> Result<Option<UpstreamAnswer>, CatalogError> {
        self.upstream(rt, cmd.caller, cmd.path_and_query, cmd.request_id)
            .await
            .map_err(CatalogError::UpstreamDown)
    }

    /// Whether the space exists for the caller (a summary without an upstream).
    pub async fn space_exists(
        &self,
        rt: &Runtime,
        caller: &Identity,
        request_id: &str,
        space_guid: &str,
    ) -> Result<bool, CatalogError> {
        let cx = AuthzContext {
            rt,
            caller,
            request_id,
        };
        self.authorizer
            .space(&cx, space_guid)
            .await
            .map(|space| space.is_some())
            .map_err(CatalogError::AuthorizationUnavailable)
    }

    /// The upstream's answer to the caller's request, for a list merged elsewhere (the
    /// instance lists); `None` without an upstream.
    pub async fn upstream(
        &self,
        rt: &Runtime,
        caller: &Identity,
        path_and_query: &str,
        request_id: &str,
    ) -> Result<Option<UpstreamAnswer>, UpstreamDown> {
        if rt.upstream.is_none() {
            return Ok(None);
        }
        self.upstream
            .get(rt, caller, path_and_query, request_id)
            .await
            .map(Some)
    }
}

fn check_scope(cmd: &CatalogPage<'_>) -> Result<(), CatalogError> {
    if cmd.caller.allows(cmd.scope) {
        Ok(())
    } else {
        Err(CatalogError::InsufficientScope)
    }
}

/// Whether the caller, belonging to `orgs`, may see `plan`.
fn visible(plan: &Plan, orgs: &VisibleOrganizations) -> bool {
    match &plan.visibility {
        crate::config::Visibility::Public => true,
        crate::config::Visibility::Organizations(allowed) => {
            allowed.iter().any(|o| orgs.contains(o))
        }
    }
}

/// Every configured offering, in catalog order (label, then guid).
fn offerings(rt: &Runtime) -> Vec<Arc<Service>> {
    let plans: Vec<&Plan> = rt.plans().collect();
    offerings_of(&plans)
}

/// The offerings of `plans`, each once, in catalog order.
fn offerings_of(plans: &[&Plan]) -> Vec<Arc<Service>> {
    let mut services: Vec<Arc<Service>> = Vec::new();
    for plan in plans {
        if !services.iter().any(|s| s.guid == plan.service.guid) {
            services.push(plan.service.clone());
        }
    }
    services.sort_by(|a, b| (&a.label, &a.guid).cmp(&(&b.label, &b.guid)));
    services
}

fn service_matches(s: &Service, filters: &[(ServiceFilter, Vec<String>)]) -> bool {
    filters.iter().all(|(field, values)| {
        let value = match field {
            ServiceFilter::Label => Some(s.label.clone()),
            ServiceFilter::Provider => s.provider.clone(),
            ServiceFilter::Active => Some(s.listing.active.to_string()),
            ServiceFilter::UniqueId => Some(s.listing.unique_id.clone()),
            ServiceFilter::ServiceBrokerGuid => None,
        };
        value.is_some_and(|v| values.contains(&v))
    })
}

/// Whether `p` matches every filter (a filter matches when the field equals any of its
/// values).
pub fn plan_matches(p: &Plan, filters: &[(PlanFilter, Vec<String>)]) -> bool {
    filters.iter().all(|(field, values)| {
        let value = match field {
            PlanFilter::ServiceGuid => Some(p.service.guid.clone()),
            PlanFilter::Active => Some((p.active && p.service.listing.active).to_string()),
            PlanFilter::UniqueId => Some(p.unique_id.clone()),
            PlanFilter::Name => Some(p.name.clone()),
            PlanFilter::ServiceBrokerGuid => None,
        };
        value.is_some_and(|v| values.contains(&v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fake_authorizer::FakeAuthorizer;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct CountingUpstream {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Upstream for CountingUpstream {
        async fn get(
            &self,
            _: &Runtime,
            _: &Identity,
            _: &str,
            _: &str,
        ) -> Result<UpstreamAnswer, UpstreamDown> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(UpstreamAnswer {
                status: 200,
                body: bytes::Bytes::from_static(br#"{"total_results":0,"resources":[]}"#),
            })
        }
    }

    fn runtime() -> Runtime {
        let toml = r#"
[auth]
symmetric_secrets = ["s"]
[upstream]
url = "http://127.0.0.1:9"
[authorization]
source = "static"
[[brokers]]
name = "b"
url = "http://127.0.0.1:9"
token = "t"
[[services]]
guid = "SVC-OPEN"
label = "open"
version = "1"
broker = "b"
[[services]]
guid = "SVC-PRIVATE"
label = "private"
version = "1"
broker = "b"
[[plans]]
guid = "P-OPEN"
service = "SVC-OPEN"
name = "free"
unique_id = "u1"
[[plans]]
guid = "P-PRIVATE"
service = "SVC-PRIVATE"
name = "gold"
unique_id = "u2"
public = false
organizations = ["ORG-A"]
"#;
        let file = crate::config::parse(toml, Vec::new()).unwrap();
        Runtime::from_file(&file, &|_| None).unwrap()
    }

    fn user() -> Identity {
        Identity::new("u", None, vec!["cloud_controller.read".into()])
    }

    fn cmd(caller: &Identity) -> CatalogPage<'_> {
        CatalogPage {
            caller,
            scope: Scope::Read,
            request_id: "rid",
            path_and_query: "/v2/services",
        }
    }

    #[tokio::test]
    async fn a_restricted_plan_and_its_offering_are_shown_to_its_organizations_only() {
        let rt = runtime();
        let authorizer = Arc::new(FakeAuthorizer::default());
        let catalog = Catalog::new(authorizer.clone(), Arc::new(CountingUpstream::default()));
        let caller = user();
        *authorizer.organizations.lock().unwrap() = Some(vec!["ORG-B".into()]);
        let listed = catalog.services(&rt, cmd(&caller), &[]).await.unwrap();
        let labels: Vec<&str> = listed.own.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["open"]);
        let hidden = catalog.plan(&rt, cmd(&caller), "P-PRIVATE").await;
        assert!(
            matches!(hidden, Err(CatalogError::PlanHidden { .. })),
            "{hidden:?}"
        );
        let hidden = catalog.service(&rt, cmd(&caller), "SVC-PRIVATE").await;
        assert!(
            matches!(hidden, Err(CatalogError::ServiceHidden { .. })),
            "{hidden:?}"
        );

        *authorizer.organizations.lock().unwrap() = Some(vec!["ORG-A".into()]);
        let listed = catalog.services(&rt, cmd(&caller), &[]).await.unwrap();
        let labels: Vec<&str> = listed.own.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["open", "private"]);
        catalog.plan(&rt, cmd(&caller), "P-PRIVATE").await.unwrap();

        // Unknown guids are not ours.
        let other = catalog.plan(&rt, cmd(&caller), "P-UPSTREAM").await;
        assert!(matches!(other, Err(CatalogError::NotOurs)), "{other:?}");
    }

    #[tokio::test]
    async fn a_plan_filter_naming_only_brokergates_offerings_skips_the_upstream() {
        let rt = runtime();
        let upstream = Arc::new(CountingUpstream::default());
        let catalog = Catalog::new(Arc::new(FakeAuthorizer::default()), upstream.clone());
        let caller = user();
        let ours = [(PlanFilter::ServiceGuid, vec!["SVC-OPEN".to_string()])];
        let listed = catalog.plans(&rt, cmd(&caller), &ours).await.unwrap();
        assert!(listed.upstream.is_none());
        assert_eq!(listed.own.len(), 1);
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 0);
        let mixed = [(
            PlanFilter::ServiceGuid,
            vec!["SVC-OPEN".to_string(), "SVC-UPSTREAM".to_string()],
        )];
        let listed = catalog.plans(&rt, cmd(&caller), &mixed).await.unwrap();
        assert!(listed.upstream.is_some());
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
        // Without filters, both.
        let listed = catalog.plans(&rt, cmd(&caller), &[]).await.unwrap();
        assert_eq!(listed.own.len(), 2);
        // A reader without the scope is refused before anything is asked.
        let nobody = Identity::new("n", None, vec![]);
        let refused = catalog.plans(&rt, cmd(&nobody), &[]).await;
        assert!(
            matches!(refused, Err(CatalogError::InsufficientScope)),
            "{refused:?}"
        );
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    }
}
