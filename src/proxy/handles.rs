//! Handlers of `/v2/service_bindings` and `/v2/service_keys` (and an instance's
//! `service_bindings` and `service_keys`): both are v1 handles, so each handler here serves
//! both kinds, told apart by a [`HandleKind`]. A binding, key or instance brokergate does not
//! hold is not ours: it passes upstream.

use super::handler::{Answer, BoxFuture, Disposition, Request, UseCases};
use super::instances::{read_verdict, refuse, refuse_read, upstream_page};
use super::{errors, Outcome};
use crate::cc::envelope::Credentials;
use crate::cc::handles::{binding_url, key_url, render_binding, render_key, BindingView, KeyView};
use crate::cc::merge::{render_merged, UpstreamPage};
use crate::cc::{list, request};
use crate::clock;
use crate::service::{Bind, BindError, ListHandles, ReadError, ReadHandle, Unbind, VisibleHandles};
use crate::store::{HandleField, HandleKind, HandleQuery, HandleRecord, Holder, ListQuery};

/// The `q` fields of each list, as the Cloud Controller names them.
const BINDING_FIELDS: &[&str] = &["service_instance_guid", "app_guid", "name"];
const KEY_FIELDS: &[&str] = &["service_instance_guid", "name"];

fn fields(kind: HandleKind) -> &'static [&'static str] {
    match kind {
        HandleKind::Binding => BINDING_FIELDS,
        HandleKind::Key => KEY_FIELDS,
    }
}

fn collection(kind: HandleKind) -> &'static str {
    match kind {
        HandleKind::Binding => "/v2/service_bindings",
        HandleKind::Key => "/v2/service_keys",
    }
}

/// `POST /v2/service_bindings`.
pub fn create_binding<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let body = match request::decode_binding(req.body) {
            Ok(body) => body,
            Err(e) => return e.into(),
        };
        let holder = Holder::App {
            app_guid: body.app_guid,
            name: body.name,
        };
        create(
            uc,
            req,
            out,
            &body.service_instance_guid,
            holder,
            body.parameters,
        )
        .await
    })
}

/// `POST /v2/service_keys`.
pub fn create_key<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let body = match request::decode_key(req.body) {
            Ok(body) => body,
            Err(e) => return e.into(),
        };
        let holder = Holder::Key { name: body.name };
        create(
            uc,
            req,
            out,
            &body.service_instance_guid,
            holder,
            body.parameters,
        )
        .await
    })
}

async fn create(
    uc: &UseCases,
    req: Request<'_>,
    out: &mut Outcome,
    instance_guid: &str,
    holder: Holder,
    parameters: Option<Box<serde_json::value::RawValue>>,
) -> Disposition {
    let command = Bind {
        instance_guid,
        holder,
        parameters,
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
        now: clock::now_unix(),
    };
    let outcome = uc.binder.bind(req.rt, command).await;
    out.broker = outcome.trace.broker;
    out.broker_call = outcome.trace.broker_call;
    out.authorization = outcome.trace.authorization;
    match outcome.result {
        Ok(handle) => {
            let guid = &handle.reservation.guid;
            let location = match handle.reservation.holder.kind() {
                HandleKind::Binding => binding_url(guid),
                HandleKind::Key => key_url(guid),
            };
            Disposition::Reply(Answer {
                status: 201,
                body: render(&handle, true),
                location: Some(location),
            })
        }
        // An instance the real Cloud Controller may hold.
        Err(e @ BindError::InstanceNotFound { .. }) => Disposition::NotOurs(errors::from_bind(&e)),
        Err(e) => refuse_bind(out, req.request_id, &e),
    }
}

/// `DELETE /v2/service_bindings/:guid`.
pub fn delete_binding<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(delete(HandleKind::Binding, uc, req, out))
}

/// `DELETE /v2/service_keys/:guid`.
pub fn delete_key<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(delete(HandleKind::Key, uc, req, out))
}

async fn delete(
    kind: HandleKind,
    uc: &UseCases,
    req: Request<'_>,
    out: &mut Outcome,
) -> Disposition {
    // Validated, otherwise meaningless for synchronous v1 brokers.
    for flag in ["accepts_incomplete", "async"] {
        if let Err(e) = request::flag(req.query, flag) {
            return e.into();
        }
    }
    let command = Unbind {
        guid: req.params.get("guid").unwrap_or_default(),
        kind,
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
        now: clock::now_unix(),
    };
    let outcome = uc.binder.unbind(req.rt, command).await;
    out.broker = outcome.trace.broker;
    out.broker_call = outcome.trace.broker_call;
    out.authorization = outcome.trace.authorization;
    match outcome.result {
        Ok(()) => Disposition::Reply(Answer::no_content()),
        Err(e @ BindError::HandleNotFound { .. }) => Disposition::NotOurs(errors::from_bind(&e)),
        Err(e) => refuse_bind(out, req.request_id, &e),
    }
}

/// `GET /v2/service_bindings/:guid`.
pub fn read_binding<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(read(HandleKind::Binding, uc, req, out))
}

/// `GET /v2/service_keys/:guid`.
pub fn read_key<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(read(HandleKind::Key, uc, req, out))
}

async fn read(kind: HandleKind, uc: &UseCases, req: Request<'_>, out: &mut Outcome) -> Disposition {
    let command = ReadHandle {
        guid: req.params.get("guid").unwrap_or_default(),
        kind,
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
    };
    let result = uc.reader.read_handle(req.rt, command).await;
    out.authorization = read_verdict(&result);
    match result {
        Ok(seen) => Disposition::Reply(Answer {
            status: 200,
            body: render(&seen.handle, seen.secrets_visible),
            location: None,
        }),
        Err(e @ ReadError::HandleNotFound { .. }) => Disposition::NotOurs(errors::from_read(&e)),
        Err(e) => refuse_read(out, req.request_id, &e),
    }
}

/// `GET /v2/service_bindings`.
pub fn list_bindings<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(list_of(HandleKind::Binding, None, uc, req, out))
}

/// `GET /v2/service_keys`.
pub fn list_keys<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(list_of(HandleKind::Key, None, uc, req, out))
}

/// `GET /v2/service_instances/:guid/service_bindings`.
pub fn instance_bindings<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    let guid = req.params.get("guid").unwrap_or_default().to_string();
    Box::pin(async move { list_of(HandleKind::Binding, Some(&guid), uc, req, out).await })
}

/// `GET /v2/service_instances/:guid/service_keys`.
pub fn instance_keys<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    let guid = req.params.get("guid").unwrap_or_default().to_string();
    Box::pin(async move { list_of(HandleKind::Key, Some(&guid), uc, req, out).await })
}

/// A page of bindings or keys; with `instance_guid`, only that instance's (and its page links
/// are on the instance's path).
async fn list_of(
    kind: HandleKind,
    instance_guid: Option<&str>,
    uc: &UseCases,
    req: Request<'_>,
    out: &mut Outcome,
) -> Disposition {
    list_filtered(kind, instance_guid, None, uc, req, out).await
}

/// `GET /v2/apps/:guid/service_bindings`: the upstream's bindings of the app, then
/// brokergate's.
pub fn app_bindings<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    let app = req.params.get("guid").unwrap_or_default().to_string();
    Box::pin(
        async move { list_filtered(HandleKind::Binding, None, Some(&app), uc, req, out).await },
    )
}

/// Whether every instance guid the query filters on is one brokergate holds.
async fn instances_all_ours(uc: &UseCases, query: &HandleQuery) -> bool {
    let Some((_, guids)) = query
        .list
        .conditions
        .iter()
        .find(|(field, _)| *field == HandleField::InstanceGuid)
    else {
        return false;
    };
    for guid in guids {
        if !uc.reader.holds_instance(guid).await {
            return false;
        }
    }
    true
}

/// A page of bindings or keys, held to one instance or one app when given.
async fn list_filtered(
    kind: HandleKind,
    instance_guid: Option<&str>,
    app_guid: Option<&str>,
    uc: &UseCases,
    req: Request<'_>,
    out: &mut Outcome,
) -> Disposition {
    let page = match list::parse(req.query, fields(kind)) {
        Ok(page) => page,
        Err(e) => {
            out.error = Some(e.description.clone());
            return e.into();
        }
    };
    let mut query = store_query(kind, &page, instance_guid);
    if let Some(app) = app_guid {
        query
            .list
            .conditions
            .push((HandleField::AppGuid, vec![app.to_string()]));
    }
    // One instance's handles are brokergate's alone; the collections (all, or an app's) are
    // the upstream's followed by brokergate's, unless the filter names only brokergate's
    // instances.
    let only_ours = instance_guid.is_some()
        || query
            .list
            .conditions
            .iter()
            .any(|(field, _)| *field == HandleField::InstanceGuid)
            && instances_all_ours(uc, &query).await;
    let upstream = if only_ours {
        UpstreamPage::empty()
    } else {
        let target = req.path_and_query();
        match upstream_page(uc, &req, &target, page.per_page).await {
            Ok(upstream) => upstream,
            Err(answer) => return answer,
        }
    };
    let own_window = upstream.own_window(&page);
    query.list.offset = own_window.offset;
    query.list.limit = own_window.limit;
    let command = ListHandles {
        query: &query,
        instance_guid,
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
    };
    let path = match instance_guid {
        Some(guid) => {
            let sub = match kind {
                HandleKind::Binding => "service_bindings",
                HandleKind::Key => "service_keys",
            };
            format!("{}/{sub}", crate::cc::envelope::instance_url(guid))
        }
        None => collection(kind).to_string(),
    };
    let result = uc.reader.list_handles(req.rt, command).await;
    out.authorization = read_verdict(&result);
    match result {
        Ok(VisibleHandles {
            total,
            handles,
            secrets_visible,
        }) => {
            let resources: Vec<Vec<u8>> =
                handles.iter().map(|h| render(h, secrets_visible)).collect();
            let path = if app_guid.is_some() { req.path } else { &path };
            Disposition::Reply(Answer {
                status: 200,
                body: render_merged(path, &page, &upstream, total, &resources),
                location: None,
            })
        }
        Err(e @ ReadError::NotFound { .. }) => Disposition::NotOurs(errors::from_read(&e)),
        Err(e) => refuse_read(out, req.request_id, &e),
    }
}

/// The store's form of a parsed handle list, narrowed to one instance when given.
fn store_query(
    kind: HandleKind,
    page: &list::ListQuery,
    instance_guid: Option<&str>,
) -> HandleQuery {
    let mut conditions: Vec<(HandleField, Vec<String>)> = page
        .filters
        .iter()
        .filter_map(|f| {
            let field = match f.field {
                "service_instance_guid" => HandleField::InstanceGuid,
                "app_guid" => HandleField::AppGuid,
                "name" => HandleField::Name,
                // `parse` admits only the kind's fields.
                _ => return None,
            };
            Some((field, f.values.clone()))
        })
        .collect();
    if let Some(guid) = instance_guid {
        conditions.push((HandleField::InstanceGuid, vec![guid.to_string()]));
    }
    HandleQuery {
        kind,
        list: ListQuery {
            conditions,
            descending: page.direction == list::Direction::Desc,
            offset: page.offset(),
            limit: u32::try_from(page.limit()).unwrap_or(list::MAX_PER_PAGE),
        },
    }
}

/// A binding or key resource; without `secrets`, credentials redacted.
pub(super) fn render(handle: &HandleRecord, secrets: bool) -> Vec<u8> {
    let r = &handle.reservation;
    // Only committed handles are read or listed; a reservation has nothing to show yet.
    let Some(grant) = handle.grant() else {
        return b"{}".to_vec();
    };
    let credentials = if secrets {
        Credentials::Shown(&grant.credentials)
    } else {
        Credentials::REDACTED
    };
    match &r.holder {
        Holder::App { app_guid, name } => {
            let options = crate::service::binding_options(&r.binding_options);
            render_binding(&BindingView {
                guid: &r.guid,
                app_guid,
                service_instance_guid: &r.instance_guid,
                credentials,
                binding_options: &options,
                gateway_data: &grant.configuration,
                gateway_name: &grant.handle_id,
                syslog_drain_url: grant.syslog_drain_url.as_deref(),
                name: name.as_deref(),
                created_at: r.created_at,
            })
        }
        Holder::Key { name } => render_key(&KeyView {
            guid: &r.guid,
            name,
            service_instance_guid: &r.instance_guid,
            credentials,
            created_at: r.created_at,
        }),
    }
}

fn refuse_bind(out: &mut Outcome, request_id: &str, e: &BindError) -> Disposition {
    let store = match e {
        BindError::Store(store_err) => Some(store_err),
        _ => None,
    };
    let scope = matches!(e, BindError::InsufficientScope);
    refuse(out, request_id, e, scope, store, errors::from_bind(e))
}
