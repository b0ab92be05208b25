//! Handlers of `/v2/service_instances`: HTTP in, a use-case command, a Cloud Controller answer
//! out. An answer that shows an instance is rendered by [`render`], whoever asked.

use super::handler::{Answer, BoxFuture, Disposition, Request, UseCases};
use super::handles::render as render_handle;
use super::{errors, Outcome};
use crate::cc::envelope::{
    instance_url, render_instance, Credentials, Inlined, InstanceView, LastOperationView,
};
use crate::cc::merge::{render_merged, UpstreamPage};
use crate::cc::ApiError;
use crate::cc::{list, request};
use crate::clock;
use crate::config::Runtime;
use crate::service::{
    DeleteError, DeleteInstance, ListHandles, ListInstances, Provision, ProvisionError, ReadError,
    ReadInstance, UpdateError, UpdateInstance, UpstreamAnswer, Verdict,
};
use crate::store::{
    CreatedInstance, HandleField, HandleKind, HandleQuery, InstanceField, InstanceQuery, ListQuery,
    StoreError,
};
use serde_json::value::RawValue;

/// The `q` fields of the instance list, as the Cloud Controller names them.
const LIST_FIELDS: &[&str] = &[
    "name",
    "space_guid",
    "service_plan_guid",
    "gateway_name",
    "organization_guid",
];

/// `POST /v2/service_instances[?accepts_incomplete=…]`: steps 1 and 2 of the Cloud
/// Controller's order (decode the body, the `accepts_incomplete` flag) are the wire's; the
/// provisioning use case runs the rest. A plan brokergate does not serve is not ours.
pub fn create<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let body = match request::decode(req.body) {
            Ok(body) => body,
            Err(e) => return e.into(),
        };
        // Validated, otherwise meaningless for synchronous v1 brokers.
        if let Err(e) = request::accepts_incomplete(req.query) {
            return e.into();
        }
        let command = Provision {
            name: body.name,
            space_guid: body.space_guid,
            service_plan_guid: body.service_plan_guid,
            tags: body.tags,
            parameters: body.parameters,
            gateway_data: body.gateway_data,
            caller: req.caller,
            scope: req.scope,
            request_id: req.request_id,
            now: clock::now_unix(),
        };
        let outcome = uc.provisioner.provision(req.rt, command).await;
        out.broker = outcome.trace.broker;
        out.broker_call = outcome.trace.broker_call;
        out.authorization = outcome.trace.authorization;
        match outcome.result {
            Ok(created) => {
                let guid = &created.reservation.guid;
                Disposition::Reply(Answer {
                    status: 201,
                    body: render(req.rt, &created, true),
                    location: Some(instance_url(guid)),
                })
            }
            // A plan the real Cloud Controller serves.
            Err(e @ ProvisionError::UnknownPlan) => {
                Disposition::NotOurs(errors::from_provision(&e))
            }
            Err(e) => {
                let store = match &e {
                    ProvisionError::Store(store_err) => Some(store_err),
                    _ => None,
                };
                let scope = matches!(e, ProvisionError::InsufficientScope);
                refuse(
                    out,
                    req.request_id,
                    &e,
                    scope,
                    store,
                    errors::from_provision(&e),
                )
            }
        }
    })
}

/// `GET /v2/service_instances/:guid`: an instance brokergate holds, its secrets shown to
/// callers who may write; any other guid is not ours.
pub fn read<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let guid = req.params.get("guid").unwrap_or_default();
        let command = ReadInstance {
            guid,
            caller: req.caller,
            scope: req.scope,
            request_id: req.request_id,
        };
        let result = uc.reader.read(req.rt, command).await;
        out.authorization = read_verdict(&result);
        match result {
            Ok(seen) => Disposition::Reply(Answer {
                status: 200,
                body: render(req.rt, &seen.instance, seen.secrets_visible),
                location: None,
            }),
            Err(e @ ReadError::NotFound { .. }) => Disposition::NotOurs(errors::from_read(&e)),
            Err(e) => refuse_read(out, req.request_id, &e),
        }
    })
}

/// `GET /v2/service_instances`: the upstream's instances, then the ones brokergate holds in
/// spaces the caller may see, a page at a time (`cc::merge`), filtered by CC's `q` on both.
pub fn list<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(list_merged(uc, req, out, None))
}

/// `GET /v2/spaces/:guid/service_instances`: as the list, held to one space; with
/// `inline-relations-depth=1` brokergate's instances carry their `service_plan`,
/// `service_bindings` and `service_keys` (the cf CLI's legacy `delete-service` reads them).
pub fn space_list<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let space = req.params.get("guid").unwrap_or_default().to_string();
        list_merged(uc, req, out, Some(space)).await
    })
}

async fn list_merged(
    uc: &UseCases,
    req: Request<'_>,
    out: &mut Outcome,
    space: Option<String>,
) -> Disposition {
    let page = match list::parse_preserving(
        req.query,
        LIST_FIELDS,
        &["return_user_provided_service_instances"],
    ) {
        Ok(page) => page,
        Err(e) => {
            out.error = Some(e.description.clone());
            return e.into();
        }
    };
    // A plan filter naming brokergate's plans only: the upstream holds none of them.
    let only_ours = page.filters.iter().any(|f| {
        f.field == "service_plan_guid" && f.values.iter().all(|v| req.rt.plan(v).is_some())
    });
    let target = req.path_and_query();
    let upstream = if only_ours {
        UpstreamPage::empty()
    } else {
        match upstream_page(uc, &req, &target, page.per_page).await {
            Ok(upstream) => upstream,
            Err(answer) => return answer,
        }
    };
    let own_window = upstream.own_window(&page);
    let mut query = store_query(&page);
    query.offset = own_window.offset;
    query.limit = own_window.limit;
    if let Some(space) = &space {
        query
            .conditions
            .push((InstanceField::SpaceGuid, vec![space.clone()]));
    }
    let command = ListInstances {
        query: &query,
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
    };
    let result = uc.reader.list(req.rt, command).await;
    out.authorization = read_verdict(&result);
    let seen = match result {
        Ok(seen) => seen,
        Err(e) => return refuse_read(out, req.request_id, &e),
    };
    let inline = page.inline_relations_depth.is_some_and(|d| d >= 1);
    let mut resources = Vec::with_capacity(seen.instances.len());
    for instance in &seen.instances {
        let body = if inline {
            match inlined(uc, &req, instance, seen.secrets_visible).await {
                Ok(body) => body,
                Err(e) => return refuse_read(out, req.request_id, &e),
            }
        } else {
            render(req.rt, instance, seen.secrets_visible)
        };
        resources.push(body);
    }
    Disposition::Reply(Answer {
        status: 200,
        body: render_merged(req.path, &page, &upstream, seen.total, &resources),
        location: None,
    })
}

/// The upstream's page for a merged list: empty without an upstream; its refusal, or 502 when
/// it is down or answers something other than a v2 list, is the answer (`Err`).
pub(super) async fn upstream_page(
    uc: &UseCases,
    req: &Request<'_>,
    path_and_query: &str,
    per_page: u32,
) -> Result<UpstreamPage, Disposition> {
    match uc
        .catalog
        .upstream(req.rt, req.caller, path_and_query, req.request_id)
        .await
    {
        Ok(answer) => page_of(answer, per_page),
        Err(down) => {
            log::warn!(
                "The upstream Cloud Controller could not be asked for a merged list. error={down}"
            );
            Err(ApiError::upstream_unavailable().into())
        }
    }
}

/// The upstream's answer as the page a merged list starts with: empty when there is no
/// upstream; its refusal as it came, or 502 for an answer that is not a v2 list, is the
/// answer (`Err`).
pub(super) fn page_of(
    answer: Option<UpstreamAnswer>,
    per_page: u32,
) -> Result<UpstreamPage, Disposition> {
    match answer {
        None => Ok(UpstreamPage::empty()),
        Some(answer) if answer.status != 200 => Err(Disposition::Reply(Answer {
            status: answer.status,
            body: answer.body.to_vec(),
            location: None,
        })),
        Some(answer) => UpstreamPage::parse(&answer.body, per_page).map_err(|e| {
            log::warn!(
                "The upstream's answer to a merged list is not a v2 list; answering 502. error={e}"
            );
            ApiError::upstream_bad_list().into()
        }),
    }
}

/// Most bindings or keys inlined into one instance.
const MAX_INLINED: u32 = 50;

/// An instance with its plan, bindings and keys inlined.
async fn inlined(
    uc: &UseCases,
    req: &Request<'_>,
    instance: &CreatedInstance,
    secrets: bool,
) -> Result<Vec<u8>, ReadError> {
    let guid = &instance.reservation.guid;
    let handles = |kind| HandleQuery {
        kind,
        list: ListQuery {
            conditions: vec![(HandleField::InstanceGuid, vec![guid.clone()])],
            descending: false,
            offset: 0,
            limit: MAX_INLINED,
        },
    };
    let mut lists = Vec::new();
    for kind in [HandleKind::Binding, HandleKind::Key] {
        let query = handles(kind);
        let command = ListHandles {
            query: &query,
            instance_guid: Some(guid),
            caller: req.caller,
            scope: req.scope,
            request_id: req.request_id,
        };
        let seen = uc.reader.list_handles(req.rt, command).await?;
        let rendered: Vec<Vec<u8>> = seen
            .handles
            .iter()
            .map(|h| render_handle(h, seen.secrets_visible))
            .collect();
        lists.push(list::json_array(&rendered));
    }
    let plan = req
        .rt
        .plan(&instance.reservation.service_plan_guid)
        .map(|p| super::catalog::plan_bytes(req.rt, p));
    let plan = plan.and_then(|p| RawValue::from_string(String::from_utf8(p).ok()?).ok());
    let (bindings, keys) = (&lists[0], &lists[1]);
    let inline = Inlined {
        service_plan: plan.as_deref(),
        service_bindings: bindings,
        service_keys: keys,
    };
    Ok(render_with(req.rt, instance, secrets, Some(inline)))
}

/// `GET /v2/service_instances/:guid/shared_to`: brokergate's instances are never shared, so
/// an empty list of spaces (the Cloud Controller's answer for an unshared instance).
pub fn shared_to<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let guid = req.params.get("guid").unwrap_or_default();
        let page = match list::parse(req.query, &[]) {
            Ok(page) => page,
            Err(e) => return e.into(),
        };
        match visible(uc, &req, out, guid).await {
            Ok(()) => {
                let path = format!("{}/shared_to", instance_url(guid));
                let none: [Vec<u8>; 0] = [];
                Disposition::Reply(Answer {
                    status: 200,
                    body: list::render_page(&path, &page, 0, &none),
                    location: None,
                })
            }
            Err(answer) => answer,
        }
    })
}

/// `GET /v2/service_instances/:guid/shared_from`: 204, as the Cloud Controller answers for an
/// instance that is not shared from another space.
pub fn shared_from<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let guid = req.params.get("guid").unwrap_or_default();
        match visible(uc, &req, out, guid).await {
            Ok(()) => Disposition::Reply(Answer::no_content()),
            Err(answer) => answer,
        }
    })
}

/// Whether the caller may read instance `guid`; the refusal (or, for a guid brokergate does
/// not hold, the pass-through) otherwise.
async fn visible(
    uc: &UseCases,
    req: &Request<'_>,
    out: &mut Outcome,
    guid: &str,
) -> Result<(), Disposition> {
    let command = ReadInstance {
        guid,
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
    };
    let result = uc.reader.read(req.rt, command).await;
    out.authorization = read_verdict(&result);
    match result {
        Ok(_) => Ok(()),
        Err(e @ ReadError::NotFound { .. }) => Err(Disposition::NotOurs(errors::from_read(&e))),
        Err(e) => Err(refuse_read(out, req.request_id, &e)),
    }
}

/// `PUT /v2/service_instances/:guid`: a rename or retag of an instance brokergate holds
/// (201, as the Cloud Controller answers an update); any other guid is not ours.
pub fn update<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let guid = req.params.get("guid").unwrap_or_default();
        let body = match request::decode_update(req.body) {
            Ok(body) => body,
            Err(e) => return e.into(),
        };
        let command = UpdateInstance {
            guid,
            name: body.name,
            tags: body.tags,
            space_guid: body.space_guid,
            service_plan_guid: body.service_plan_guid,
            parameters: body.parameters.is_some(),
            caller: req.caller,
            scope: req.scope,
            request_id: req.request_id,
            now: clock::now_unix(),
        };
        let result = uc.updater.update(req.rt, command).await;
        out.authorization = match &result {
            Ok(_) => Some(Verdict::Allowed),
            Err(e) => e.authorization(),
        };
        match result {
            Ok(updated) => Disposition::Reply(Answer {
                status: 201,
                body: render(req.rt, &updated, true),
                location: None,
            }),
            Err(e @ UpdateError::NotFound { .. }) => Disposition::NotOurs(errors::from_update(&e)),
            Err(e) => {
                let store = match &e {
                    UpdateError::Store(store_err) => Some(store_err),
                    _ => None,
                };
                let scope = matches!(e, UpdateError::InsufficientScope);
                refuse(
                    out,
                    req.request_id,
                    &e,
                    scope,
                    store,
                    errors::from_update(&e),
                )
            }
        }
    })
}

/// `DELETE /v2/service_instances/:guid[?recursive=true]`: deprovisioned at the broker, then
/// removed (204); any other guid is not ours.
pub fn delete<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        // `accepts_incomplete` and `async` are validated, otherwise meaningless for v1.
        let mut recursive = false;
        for flag in ["recursive", "accepts_incomplete", "async"] {
            match request::flag(req.query, flag) {
                Ok(value) => recursive |= flag == "recursive" && value,
                Err(e) => return e.into(),
            }
        }
        let command = DeleteInstance {
            guid: req.params.get("guid").unwrap_or_default(),
            recursive,
            caller: req.caller,
            scope: req.scope,
            request_id: req.request_id,
            now: clock::now_unix(),
        };
        let outcome = uc.deleter.delete(req.rt, command).await;
        out.broker = outcome.trace.broker;
        out.broker_call = outcome.trace.broker_call;
        out.authorization = outcome.trace.authorization;
        match outcome.result {
            Ok(()) => Disposition::Reply(Answer::no_content()),
            Err(e @ DeleteError::NotFound { .. }) => Disposition::NotOurs(errors::from_delete(&e)),
            Err(e) => {
                let store = match &e {
                    DeleteError::Store(store_err) => Some(store_err),
                    _ => None,
                };
                let scope = matches!(e, DeleteError::InsufficientScope);
                refuse(
                    out,
                    req.request_id,
                    &e,
                    scope,
                    store,
                    errors::from_delete(&e),
                )
            }
        }
    })
}

/// The store's form of a parsed list query.
fn store_query(page: &list::ListQuery) -> InstanceQuery {
    let conditions = page
        .filters
        .iter()
        .filter_map(|f| {
            let field = match f.field {
                "name" => InstanceField::Name,
                "space_guid" => InstanceField::SpaceGuid,
                "service_plan_guid" => InstanceField::ServicePlanGuid,
                "gateway_name" => InstanceField::GatewayName,
                "organization_guid" => InstanceField::OrganizationGuid,
                // `parse` admits only LIST_FIELDS.
                _ => return None,
            };
            Some((field, f.values.clone()))
        })
        .collect();
    ListQuery {
        conditions,
        descending: page.direction == list::Direction::Desc,
        offset: page.offset(),
        limit: u32::try_from(page.limit()).unwrap_or(list::MAX_PER_PAGE),
    }
}

/// What a read's authorization came to: allowed when it succeeded (the visibility is its last
/// check).
pub(super) fn read_verdict<T>(result: &Result<T, ReadError>) -> Option<Verdict> {
    match result {
        Ok(_) => Some(Verdict::Allowed),
        Err(e) => e.authorization(),
    }
}

/// A read's or a list's refusal, recorded as [`refuse`] does.
pub(super) fn refuse_read(out: &mut Outcome, request_id: &str, e: &ReadError) -> Disposition {
    let store = match e {
        ReadError::Store(store_err) => Some(store_err),
        _ => None,
    };
    let scope = matches!(e, ReadError::InsufficientScope);
    refuse(out, request_id, e, scope, store, errors::from_read(e))
}

/// A use case's refusal, as every handler records it: a missing scope is counted as an auth
/// failure, a store failure logged (its words never reach the client), and `api` answered.
pub(super) fn refuse(
    out: &mut Outcome,
    request_id: &str,
    error: &dyn std::fmt::Display,
    insufficient_scope: bool,
    store: Option<&StoreError>,
    api: ApiError,
) -> Disposition {
    if insufficient_scope {
        out.auth_failure = Some("insufficient_scope");
    }
    if let Some(store_err) = store {
        log::error!("Store failure. request_id={request_id} error={store_err}");
    }
    out.error = Some(error.to_string());
    api.into()
}

/// The instance resource; without `secrets`, credentials and dashboard URL redacted. The
/// offering comes from the configuration `rt` serves with.
pub(super) fn render(rt: &Runtime, created: &CreatedInstance, secrets: bool) -> Vec<u8> {
    render_with(rt, created, secrets, None)
}

/// [`render`], with relations inlined when given.
fn render_with(
    rt: &Runtime,
    created: &CreatedInstance,
    secrets: bool,
    inline: Option<Inlined<'_>>,
) -> Vec<u8> {
    let (r, p) = (&created.reservation, &created.provisioned);
    let (credentials, dashboard_url) = if secrets {
        (
            Credentials::Shown(&p.credentials),
            p.dashboard_url.as_deref(),
        )
    } else {
        (Credentials::REDACTED, Some(""))
    };
    render_instance(&InstanceView {
        guid: &r.guid,
        name: &r.name,
        credentials,
        service_plan_guid: &r.service_plan_guid,
        space_guid: &r.space_guid,
        gateway_data: &p.gateway_data,
        dashboard_url,
        tags: &r.tags,
        service_guid: rt
            .plan(&r.service_plan_guid)
            .map(|plan| plan.service.guid.as_str()),
        last_operation: if created.deleting {
            LastOperationView::DELETE_IN_PROGRESS
        } else {
            LastOperationView::succeeded(created.last_operation.as_str())
        },
        created_at: r.created_at,
        updated_at: created.updated_at,
        inline,
    })
}
