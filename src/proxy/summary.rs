//! `GET /v2/spaces/:guid/summary`, what `cf services` reads: the upstream's summary of the
//! space with brokergate's instances there added to `services[]` and the names of those
//! bound to each app added to its `service_names`. Without an upstream, brokergate's part
//! alone, for a space the caller may see.

use serde_json::{json, Map, Value};

use super::handler::{Answer, BoxFuture, Disposition, Request, UseCases};
use super::instances::{read_verdict, refuse_read};
use super::Outcome;
use crate::cc::envelope::timestamp;
use crate::cc::ApiError;
use crate::config::Runtime;
use crate::service::{CatalogError, ListHandles, ListInstances};
use crate::store::{
    CreatedInstance, HandleField, HandleKind, HandleQuery, HandleRecord, Holder, InstanceField,
    ListQuery,
};

/// Most of brokergate's instances one summary shows; a space with more is refused (503)
/// rather than summarised short.
const MAX_INSTANCES: u32 = 1000;
/// Most of their bindings read.
const MAX_BINDINGS: u32 = 10_000;

pub fn space_summary<'a>(
    uc: &'a UseCases,
    req: Request<'a>,
    out: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async move {
        let space = req.params.get("guid").unwrap_or_default();
        let target = req.path_and_query();
        let upstream = match uc
            .catalog
            .upstream(req.rt, req.caller, &target, req.request_id)
            .await
        {
            Ok(answer) => answer,
            Err(down) => {
                log::warn!("The upstream Cloud Controller could not be asked for a space summary. error={down}");
                return ApiError::upstream_unavailable().into();
            }
        };
        let mut summary = match upstream {
            Some(answer) if answer.status != 200 => {
                return Disposition::Reply(Answer {
                    status: answer.status,
                    body: answer.body.to_vec(),
                    location: None,
                })
            }
            Some(answer) => match serde_json::from_slice::<Map<String, Value>>(&answer.body) {
                Ok(summary) => summary,
                Err(e) => {
                    log::warn!("The upstream's space summary is not a JSON object; answering 502. error={e}");
                    return ApiError::upstream_bad_list().into();
                }
            },
            None => match uc
                .catalog
                .space_exists(req.rt, req.caller, req.request_id, space)
                .await
            {
                Ok(true) => {
                    let mut own = Map::new();
                    own.insert("guid".into(), json!(space));
                    own.insert("name".into(), json!(""));
                    own.insert("apps".into(), json!([]));
                    own.insert("services".into(), json!([]));
                    own
                }
                Ok(false) => return ApiError::space_not_found(space).into(),
                Err(CatalogError::AuthorizationUnavailable(_)) => {
                    return ApiError::authorization_unavailable().into()
                }
                Err(e) => {
                    out.error = Some(e.to_string());
                    return ApiError::space_not_found(space).into();
                }
            },
        };

        let (instances, secrets_visible) = match own_instances(uc, &req, out, space).await {
            Ok(seen) => seen,
            Err(answer) => return answer,
        };
        let bindings = match bindings_of(uc, &req, out, &instances).await {
            Ok(bindings) => bindings,
            Err(answer) => return answer,
        };
        add_services(req.rt, &mut summary, &instances, &bindings, secrets_visible);
        add_service_names(&mut summary, &instances, &bindings);
        // A map of JSON values always serializes.
        let body = serde_json::to_vec(&summary).unwrap_or_default();
        Disposition::Reply(Answer {
            status: 200,
            body,
            location: None,
        })
    })
}

/// brokergate's instances in the space that the caller may see, and whether it may see their
/// dashboard URLs.
async fn own_instances(
    uc: &UseCases,
    req: &Request<'_>,
    out: &mut Outcome,
    space: &str,
) -> Result<(Vec<CreatedInstance>, bool), Disposition> {
    let query = ListQuery {
        conditions: vec![(InstanceField::SpaceGuid, vec![space.to_string()])],
        descending: false,
        offset: 0,
        limit: MAX_INSTANCES,
    };
    let command = ListInstances {
        query: &query,
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
    };
    let result = uc.reader.list(req.rt, command).await;
    out.authorization = read_verdict(&result);
    let seen = result.map_err(|e| refuse_read(out, req.request_id, &e))?;
    if seen.total > u64::from(MAX_INSTANCES) {
        log::warn!("A space holds more of brokergate's instances than a summary shows. space_guid={space} instances={}", seen.total);
        return Err(ApiError::service_unavailable(
            "The space holds too many service instances to summarise.",
        )
        .into());
    }
    Ok((seen.instances, seen.secrets_visible))
}

/// The bindings of `instances`.
async fn bindings_of(
    uc: &UseCases,
    req: &Request<'_>,
    out: &mut Outcome,
    instances: &[CreatedInstance],
) -> Result<Vec<HandleRecord>, Disposition> {
    if instances.is_empty() {
        return Ok(Vec::new());
    }
    let guids = instances
        .iter()
        .map(|i| i.reservation.guid.clone())
        .collect();
    let query = HandleQuery {
        kind: HandleKind::Binding,
        list: ListQuery {
            conditions: vec![(HandleField::InstanceGuid, guids)],
            descending: false,
            offset: 0,
            limit: MAX_BINDINGS,
        },
    };
    let command = ListHandles {
        query: &query,
        instance_guid: None,
        caller: req.caller,
        scope: req.scope,
        request_id: req.request_id,
    };
    let seen = uc
        .reader
        .list_handles(req.rt, command)
        .await
        .map_err(|e| refuse_read(out, req.request_id, &e))?;
    Ok(seen.handles)
}

fn app_of(binding: &HandleRecord) -> Option<&str> {
    match &binding.reservation.holder {
        Holder::App { app_guid, .. } => Some(app_guid),
        Holder::Key { .. } => None,
    }
}

/// `services[]` entries for brokergate's instances, after the upstream's.
fn add_services(
    rt: &Runtime,
    summary: &mut Map<String, Value>,
    instances: &[CreatedInstance],
    bindings: &[HandleRecord],
    secrets_visible: bool,
) {
    let services = summary
        .entry("services")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(services) = services else {
        return;
    };
    for instance in instances {
        let r = &instance.reservation;
        let bound = bindings
            .iter()
            .filter(|b| b.reservation.instance_guid == r.guid)
            .count();
        let plan = rt.plan(&r.service_plan_guid);
        let operation_at = timestamp(instance.updated_at.unwrap_or(r.created_at));
        let (kind, state) = if instance.deleting {
            ("delete", "in progress")
        } else {
            (instance.last_operation.as_str(), "succeeded")
        };
        services.push(json!({
            "guid": r.guid,
            "name": r.name,
            "bound_app_count": bound,
            "last_operation": {
                "type": kind,
                "state": state,
                "description": "",
                "updated_at": operation_at,
                "created_at": operation_at,
            },
            "dashboard_url": if secrets_visible {
                json!(instance.provisioned.dashboard_url)
            } else {
                json!("")
            },
            "shared_from": null,
            "shared_to": [],
            "service_broker_name": null,
            "service_plan": {
                "guid": r.service_plan_guid,
                "name": plan.map(|p| p.name.as_str()).unwrap_or_default(),
                "maintenance_info": {},
                "service": {
                    "guid": plan.map(|p| p.service.guid.as_str()).unwrap_or_default(),
                    "label": plan.map(|p| p.service.label.as_str()).unwrap_or_default(),
                    "provider": plan.and_then(|p| p.service.provider.as_deref()),
                    "version": plan.map(|p| p.service.version.as_str()).unwrap_or_default(),
                },
            },
        }));
    }
}

/// Each app's `service_names` gains the names of brokergate's instances bound to it.
fn add_service_names(
    summary: &mut Map<String, Value>,
    instances: &[CreatedInstance],
    bindings: &[HandleRecord],
) {
    let Some(Value::Array(apps)) = summary.get_mut("apps") else {
        return;
    };
    for app in apps.iter_mut() {
        let Some(app) = app.as_object_mut() else {
            continue;
        };
        let Some(app_guid) = app.get("guid").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let names: Vec<Value> = bindings
            .iter()
            .filter(|b| app_of(b) == Some(app_guid.as_str()))
            .filter_map(|b| {
                instances
                    .iter()
                    .find(|i| i.reservation.guid == b.reservation.instance_guid)
                    .map(|i| json!(i.reservation.name))
            })
            .collect();
        if names.is_empty() {
            continue;
        }
        let entry = app
            .entry("service_names")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.extend(names);
        }
    }
}
