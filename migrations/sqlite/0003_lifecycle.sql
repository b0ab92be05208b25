-- The lifecycle: an instance's last operation (create or update; a delete in flight is its
-- state), the indexes lists are served from, and the handles (bindings and service keys) of
-- an instance. Columns are added in place: no rebuild of the instances table.
ALTER TABLE service_instances ADD COLUMN last_operation TEXT NOT NULL DEFAULT 'create'
    CHECK (last_operation IN ('create', 'update'));

-- Lists are in creation order: rowid order (a row's rowid is one past the largest at its
-- insert, and VACUUM renumbers in that order). Each filter CC's `q` offers has an index, whose
-- entries sort by rowid within a key: a filtered page needs no sort. The space's is the
-- per-space name index (its rows sort cheaply: a space holds few instances).
CREATE INDEX service_instances_by_name ON service_instances (name);
CREATE INDEX service_instances_by_plan ON service_instances (service_plan_guid);
CREATE INDEX service_instances_by_organization ON service_instances (organization_guid);
CREATE INDEX service_instances_by_gateway_name ON service_instances (broker_service_id);

CREATE TABLE service_handles (
    guid              TEXT PRIMARY KEY,
    instance_guid     TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('binding', 'key')),
    app_guid          TEXT,
    name              TEXT,
    binding_options   TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (length(state) BETWEEN 1 AND 32),
    handle_id         TEXT,
    gateway_data      TEXT,
    credentials       TEXT,
    syslog_drain_url  TEXT,
    creator_user_id   TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    CHECK (kind <> 'binding' OR app_guid IS NOT NULL),
    CHECK (kind <> 'key' OR (name IS NOT NULL AND app_guid IS NULL)),
    CHECK (state = 'reserved'
           OR (handle_id IS NOT NULL AND gateway_data IS NOT NULL AND credentials IS NOT NULL))
);
-- One binding per app and instance; key names unique per instance. Each also serves the lists
-- of an instance's bindings or keys.
CREATE UNIQUE INDEX service_handles_one_per_app
    ON service_handles (instance_guid, app_guid) WHERE kind = 'binding';
CREATE UNIQUE INDEX service_handles_key_names
    ON service_handles (instance_guid, name) WHERE kind = 'key';
CREATE INDEX service_handles_by_app ON service_handles (app_guid) WHERE kind = 'binding';
