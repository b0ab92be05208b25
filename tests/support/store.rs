//! The one test-side reader of a gateway's store: the integration tests ask it which rows
//! exist and have it make commits fail; only this file knows the schema's SQL.

use std::time::Duration;

use super::gateway::GatewayConfig;

/// One row of `service_instances`, as the tests look at it.
#[derive(Debug, Clone)]
pub struct Row {
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub organization_guid: Option<String>,
    pub service_plan_guid: String,
    pub broker: String,
    pub broker_service_id: Option<String>,
    pub gateway_data: Option<String>,
    pub credentials: Option<String>,
    pub dashboard_url: Option<String>,
    pub creator_user_id: String,
    /// `reserved` or `created`.
    pub state: String,
}

fn db(config: &GatewayConfig) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(config.sqlite_path()).expect("open the store");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

fn select_rows(config: &GatewayConfig, filter: &str, args: &[&str]) -> Vec<Row> {
    let conn = db(config);
    let sql = format!(
        "SELECT guid, name, space_guid, organization_guid, service_plan_guid, broker,
                broker_service_id, gateway_data, credentials, dashboard_url, creator_user_id, state
         FROM service_instances WHERE {filter} ORDER BY created_at, guid"
    );
    let mut stmt = conn.prepare(&sql).expect("prepare");
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok(Row {
                guid: r.get(0)?,
                name: r.get(1)?,
                space_guid: r.get(2)?,
                organization_guid: r.get(3)?,
                service_plan_guid: r.get(4)?,
                broker: r.get(5)?,
                broker_service_id: r.get(6)?,
                gateway_data: r.get(7)?,
                credentials: r.get(8)?,
                dashboard_url: r.get(9)?,
                creator_user_id: r.get(10)?,
                state: r.get(11)?,
            })
        })
        .expect("query");
    rows.collect::<Result<_, _>>().expect("read rows")
}

/// Rows named `name`, in any space, oldest first.
pub fn rows_named(config: &GatewayConfig, name: &str) -> Vec<Row> {
    select_rows(config, "name = ?1", &[name])
}

/// Rows named `name` in `space_guid`.
pub fn rows_named_in(config: &GatewayConfig, space_guid: &str, name: &str) -> Vec<Row> {
    select_rows(config, "space_guid = ?1 AND name = ?2", &[space_guid, name])
}

pub fn reserved_rows(config: &GatewayConfig) -> Vec<Row> {
    select_rows(config, "state = 'reserved'", &[])
}

pub fn row_by_guid(config: &GatewayConfig, guid: &str) -> Option<Row> {
    select_rows(config, "guid = ?1", &[guid]).pop()
}

pub fn assert_no_reserved_rows(config: &GatewayConfig) {
    let reserved: Vec<(String, String)> = reserved_rows(config)
        .into_iter()
        .map(|r| (r.guid, r.name))
        .collect();
    assert!(reserved.is_empty(), "reservations left: {reserved:?}");
}

/// From now on every commit of a create fails inside the store (a trigger aborts the row's
/// change to `created`), until [`allow_commits`]. The gateway must have created the schema.
pub fn fail_commits(config: &GatewayConfig) {
    db(config)
        .execute_batch(
            "CREATE TRIGGER fail_commit BEFORE UPDATE ON service_instances
             WHEN NEW.state = 'created'
             BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .expect("create the fail_commit trigger");
}

/// From now on every commit of a bind or key fails inside the store, until
/// [`allow_handle_commits`].
pub fn fail_handle_commits(config: &GatewayConfig) {
    db(config)
        .execute_batch(
            "CREATE TRIGGER fail_handle_commit BEFORE UPDATE ON service_handles
             WHEN NEW.state = 'created'
             BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .expect("create the fail_handle_commit trigger");
}

pub fn allow_handle_commits(config: &GatewayConfig) {
    db(config)
        .execute_batch("DROP TRIGGER fail_handle_commit;")
        .expect("drop the fail_handle_commit trigger");
}

pub fn allow_commits(config: &GatewayConfig) {
    db(config)
        .execute_batch("DROP TRIGGER fail_commit;")
        .expect("drop the fail_commit trigger");
}
