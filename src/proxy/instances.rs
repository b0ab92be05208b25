//! Handlers of `/v2/service_instances`: HTTP in, a use-case command, a Cloud Controller answer
//! out. An answer that shows an instance is rendered by [`render`], whoever asked.

use super::handler::{Answer, BoxFuture, Disposition, Request, UseCases};
use super::{errors, Outcome};
use crate::cc::envelope::{
    instance_url, render_instance, Credentials, InstanceView, LastOperationView,
};
use crate::cc::ApiError;
use crate::cc::{list, request};
use crate::clock;
use crate::config::Runtime;
use crate::service::{
    DeleteError, DeleteInstance, ListInstances, Provision, ProvisionError, ReadError, ReadInstance,
    UpdateError, UpdateInstance, Verdict,
};
use crate::store::{CreatedInstance, InstanceField, InstanceQuery, ListQuery, StoreError};

/// The `q` fields of the instance list, as the Cloud Controller names them.
const LIST_FIELDS: &[&str] = &[
    "name",
    "space_guid",
    "service_plan_guid",
    "gateway_name",
    "organization_guid",
];

/// The path the list's page links are built on.
const LIST_PATH: &str = "/v2/service_instances";

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

/// `GET /v2/service_instances`: the instances brokergate holds, a page at a time, filtered
/// by CC's `q` (with an `[upstream]`, only brokergate's own: the upstream's are not merged).
pub fn list<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
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
        let query = store_query(&page);
        let command = ListInstances {
            query: &query,
            caller: req.caller,
            scope: req.scope,
            request_id: req.request_id,
        };
        let result = uc.reader.list(req.rt, command).await;
        out.authorization = read_verdict(&result);
        match result {
            Ok(seen) => {
                let resources: Vec<Vec<u8>> = seen
                    .instances
                    .iter()
                    .map(|instance| render(req.rt, instance, seen.secrets_visible))
                    .collect();
                Disposition::Reply(Answer {
                    status: 200,
                    body: list::render_page(LIST_PATH, &page, seen.total, &resources),
                    location: None,
                })
            }
            Err(e) => refuse_read(out, req.request_id, &e),
        }
    })
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
    })
}
