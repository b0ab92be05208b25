//! Handlers of the catalog: `/v2/services`, `/v2/service_plans` and a space's services. One
//! resource of brokergate's is answered from the configuration (any other guid is not ours
//! and passes upstream); a list is the upstream's answer to the same request with
//! brokergate's entries after it (`cc::merge`), or the upstream's refusal as it came.

use std::sync::Arc;

use super::handler::{Answer, BoxFuture, Disposition, Request, UseCases};
use super::instances::page_of;
use super::Outcome;
use crate::cc::catalog::{render_plan, render_service, PlanView, ServiceView};
use crate::cc::merge::render_merged;
use crate::cc::{list, ApiError};
use crate::config::{Plan, Runtime, Service, Visibility};
use crate::service::{
    plan_matches, CatalogError, CatalogPage, MergedList, PlanFilter, ServiceFilter,
};

/// The `q` fields of the offering lists, as the Cloud Controller names them.
const SERVICE_FIELDS: &[&str] = &[
    "label",
    "provider",
    "active",
    "unique_id",
    "service_broker_guid",
];
/// The `q` fields of the plan lists.
const PLAN_FIELDS: &[&str] = &[
    "service_guid",
    "active",
    "unique_id",
    "name",
    "service_broker_guid",
];

fn page<'a>(req: &Request<'a>, path_and_query: &'a str) -> CatalogPage<'a> {
    CatalogPage {
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
        path_and_query,
    }
}

/// `GET /v2/services/:guid`.
pub fn read_service<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let guid = req.params.get("guid").unwrap_or_default();
        let target = req.path_and_query();
        match uc.catalog.service(req.rt, page(&req, &target), guid).await {
            Ok(service) => ok(render_service(&service_view(req.rt, &service))),
            Err(e) => refuse(out, &e, ApiError::service_not_found(guid)),
        }
    })
}

/// `GET /v2/services/:guid/service_plans`: one page of the offering's plans.
pub fn service_plans<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let guid = req.params.get("guid").unwrap_or_default();
        let q = match list::parse(req.query, PLAN_FIELDS) {
            Ok(q) => q,
            Err(e) => return e.into(),
        };
        let target = req.path_and_query();
        match uc
            .catalog
            .service_plans(req.rt, page(&req, &target), guid)
            .await
        {
            Ok(plans) => {
                let mut plans: Vec<&Plan> = plans
                    .into_iter()
                    .filter(|p| plan_matches(p, &plan_filters(&q)))
                    .collect();
                if q.direction == list::Direction::Desc {
                    plans.reverse();
                }
                let rendered = window(&plans, q.offset(), q.limit(), |p| plan_bytes(req.rt, p));
                ok(list::render_page(
                    req.path,
                    &q,
                    plans.len() as u64,
                    &rendered,
                ))
            }
            Err(e) => refuse(out, &e, ApiError::service_not_found(guid)),
        }
    })
}

/// `GET /v2/service_plans/:guid`.
pub fn read_plan<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let guid = req.params.get("guid").unwrap_or_default();
        let target = req.path_and_query();
        match uc.catalog.plan(req.rt, page(&req, &target), guid).await {
            Ok(plan) => ok(plan_bytes(req.rt, plan)),
            Err(e) => refuse(out, &e, ApiError::plan_not_found(guid)),
        }
    })
}

/// `GET /v2/services`: the upstream's offerings, then brokergate's.
pub fn list_services<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let q = match list::parse(req.query, SERVICE_FIELDS) {
            Ok(q) => q,
            Err(e) => return e.into(),
        };
        let filters = service_filters(&q);
        let target = req.path_and_query();
        let merged = match uc
            .catalog
            .services(req.rt, page(&req, &target), &filters)
            .await
        {
            Ok(merged) => merged,
            Err(e) => return refuse(out, &e, ApiError::not_found()),
        };
        if q.inline_relations_depth.is_none_or(|d| d < 1) {
            return merge(req.path, &q, merged, |s| service_bytes(req.rt, s));
        }
        // Each offering with the plans the caller sees inlined (a v1 gateway reads its
        // offerings' plans so, with `inline-relations-depth=2`).
        let mut own = Vec::with_capacity(merged.own.len());
        for service in &merged.own {
            let plans = match uc
                .catalog
                .service_plans(req.rt, page(&req, &target), &service.guid)
                .await
            {
                Ok(plans) => plans,
                Err(e) => return refuse(out, &e, ApiError::not_found()),
            };
            let rendered: Vec<Vec<u8>> = plans.iter().map(|p| plan_bytes(req.rt, p)).collect();
            let array = list::json_array(&rendered);
            let mut view = service_view(req.rt, service);
            view.service_plans = Some(&array);
            own.push(render_service(&view));
        }
        let inlined = MergedList {
            upstream: merged.upstream,
            own,
        };
        merge(req.path, &q, inlined, Vec::clone)
    })
}

/// `GET /v2/service_plans`: the upstream's plans, then brokergate's.
pub fn list_plans<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let q = match list::parse(req.query, PLAN_FIELDS) {
            Ok(q) => q,
            Err(e) => return e.into(),
        };
        let filters = plan_filters(&q);
        let target = req.path_and_query();
        match uc
            .catalog
            .plans(req.rt, page(&req, &target), &filters)
            .await
        {
            Ok(merged) => merge(req.path, &q, merged, |p| plan_bytes(req.rt, p)),
            Err(e) => refuse(out, &e, ApiError::not_found()),
        }
    })
}

/// `GET /v2/spaces/:guid/services`: the upstream's offerings in the space, then brokergate's
/// with a plan visible to the space's organization.
pub fn space_services<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let guid = req.params.get("guid").unwrap_or_default();
        let q = match list::parse(req.query, SERVICE_FIELDS) {
            Ok(q) => q,
            Err(e) => return e.into(),
        };
        let filters = service_filters(&q);
        let target = req.path_and_query();
        match uc
            .catalog
            .space_services(req.rt, page(&req, &target), guid, &filters)
            .await
        {
            Ok(merged) => merge(req.path, &q, merged, |s| service_bytes(req.rt, s)),
            Err(e) => refuse(out, &e, ApiError::space_not_found(guid)),
        }
    })
}

/// The merged page: the upstream's refusal as it came, or its page with brokergate's entries
/// filling the places it left (`cc::merge`).
fn merge<T>(
    path: &str,
    q: &list::ListQuery,
    merged: MergedList<T>,
    render: impl Fn(&T) -> Vec<u8>,
) -> Disposition {
    let MergedList { upstream, mut own } = merged;
    let upstream = match page_of(upstream, q.per_page) {
        Ok(page) => page,
        Err(answer) => return answer,
    };
    if q.direction == list::Direction::Desc {
        // Each list in its own order, reversed: brokergate's as the upstream reverses its own.
        own.reverse();
    }
    let own_window = upstream.own_window(q);
    let page = window(
        &own,
        own_window.offset,
        u64::from(own_window.limit),
        &render,
    );
    Disposition::Reply(Answer {
        status: 200,
        body: render_merged(path, q, &upstream, own.len() as u64, &page),
        location: None,
    })
}

/// `items[offset..offset + limit]`, rendered.
fn window<T>(items: &[T], offset: u64, limit: u64, render: impl Fn(&T) -> Vec<u8>) -> Vec<Vec<u8>> {
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    items.iter().skip(skip).take(take).map(render).collect()
}

fn ok(body: Vec<u8>) -> Disposition {
    Disposition::Reply(Answer {
        status: 200,
        body,
        location: None,
    })
}

/// A refusal; `not_found` is the resource's not-found error, for one brokergate hides.
fn refuse(out: &mut Outcome, e: &CatalogError, not_found: ApiError) -> Disposition {
    out.error = Some(e.to_string());
    match e {
        CatalogError::NotOurs => Disposition::NotOurs(not_found),
        CatalogError::InsufficientScope => {
            out.auth_failure = Some("insufficient_scope");
            ApiError::insufficient_scope().into()
        }
        CatalogError::ServiceHidden { .. }
        | CatalogError::PlanHidden { .. }
        | CatalogError::SpaceNotFound { .. } => not_found.into(),
        CatalogError::AuthorizationUnavailable(_) => ApiError::authorization_unavailable().into(),
        CatalogError::UpstreamDown(down) => {
            log::warn!(
                "The upstream Cloud Controller could not be asked for a merged list. error={down}"
            );
            ApiError::upstream_unavailable().into()
        }
    }
}

/// A filter's values, booleans read as the Cloud Controller reads them (`t` and `true` are
/// true, anything else false).
fn values_of(field: &str, values: &[String]) -> Vec<String> {
    if field != "active" {
        return values.to_vec();
    }
    values
        .iter()
        .map(|v| matches!(v.as_str(), "t" | "true").to_string())
        .collect()
}

fn service_filters(q: &list::ListQuery) -> Vec<(ServiceFilter, Vec<String>)> {
    q.filters
        .iter()
        .filter_map(|f| {
            let field = match f.field {
                "label" => ServiceFilter::Label,
                "provider" => ServiceFilter::Provider,
                "active" => ServiceFilter::Active,
                "unique_id" => ServiceFilter::UniqueId,
                "service_broker_guid" => ServiceFilter::ServiceBrokerGuid,
                // `parse` admits only SERVICE_FIELDS.
                _ => return None,
            };
            Some((field, values_of(f.field, &f.values)))
        })
        .collect()
}

fn plan_filters(q: &list::ListQuery) -> Vec<(PlanFilter, Vec<String>)> {
    q.filters
        .iter()
        .filter_map(|f| {
            let field = match f.field {
                "service_guid" => PlanFilter::ServiceGuid,
                "active" => PlanFilter::Active,
                "unique_id" => PlanFilter::UniqueId,
                "name" => PlanFilter::Name,
                "service_broker_guid" => PlanFilter::ServiceBrokerGuid,
                // `parse` admits only PLAN_FIELDS.
                _ => return None,
            };
            Some((field, values_of(f.field, &f.values)))
        })
        .collect()
}

fn service_view<'a>(rt: &Runtime, s: &'a Service) -> ServiceView<'a> {
    let l = &s.listing;
    ServiceView {
        guid: &s.guid,
        label: &s.label,
        provider: s.provider.as_deref(),
        url: &l.url,
        description: &s.description,
        long_description: l.long_description.as_deref(),
        version: &s.version,
        info_url: l.info_url.as_deref(),
        active: l.active,
        bindable: l.bindable,
        unique_id: &l.unique_id,
        extra: l.extra.as_deref(),
        tags: &l.tags,
        documentation_url: l.documentation_url.as_deref(),
        created_at: rt.loaded_at,
        service_plans: None,
    }
}

fn service_bytes(rt: &Runtime, s: &Arc<Service>) -> Vec<u8> {
    render_service(&service_view(rt, s))
}

pub(super) fn plan_bytes(rt: &Runtime, p: &Plan) -> Vec<u8> {
    render_plan(&PlanView {
        guid: &p.guid,
        name: &p.name,
        free: p.free,
        description: &p.description,
        service_guid: &p.service.guid,
        extra: p.extra.as_deref(),
        unique_id: &p.unique_id,
        public: p.visibility == Visibility::Public,
        active: p.active && p.service.listing.active,
        bindable: p.service.listing.bindable,
        created_at: rt.loaded_at,
    })
}
