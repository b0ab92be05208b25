-- The schema SQLite reached in its migration 3, in one step: instances, their handles
-- (bindings and service keys), and the indexes the lists are served from.
--
-- Credentials and the broker's other JSON answers are TEXT, not JSONB: JSONB reorders keys and
-- drops duplicates, and the broker's answer must come back byte for byte.
--
-- Creation order is `seq` (SQLite's rowid): an identity, so the lists' order needs no clock.
-- Each list index ends in `seq`, so a page filtered on one value is read in order, no sort.

CREATE TABLE service_instances (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY,
    guid              TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    space_guid        TEXT NOT NULL,
    organization_guid TEXT,
    service_plan_guid TEXT NOT NULL,
    broker            TEXT NOT NULL,
    broker_service_id TEXT,
    gateway_data      TEXT,
    credentials       TEXT,
    dashboard_url     TEXT,
    -- A JSON array of strings, as SQLite keeps it.
    tags              TEXT NOT NULL,
    creator_user_id   TEXT NOT NULL,
    creator_email     TEXT,
    -- Named, so a later state is one DROP/ADD CONSTRAINT away.
    state             TEXT NOT NULL
        CONSTRAINT service_instances_state CHECK (state IN ('reserved', 'created', 'deleting')),
    -- Unix seconds, as the records hold them.
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT,
    -- NULL outside a reservation, delete or unbind; a NULL lease in flight counts as expired.
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    last_operation    TEXT NOT NULL DEFAULT 'create'
        CONSTRAINT service_instances_last_operation CHECK (last_operation IN ('create', 'update')),
    -- The only constraint a client's request can run into (StoreError::NameTaken): the
    -- error mapping matches this name.
    CONSTRAINT service_instances_name_per_space UNIQUE (space_guid, name),
    CONSTRAINT service_instances_provisioned CHECK (state = 'reserved'
        OR (broker_service_id IS NOT NULL AND gateway_data IS NOT NULL
            AND credentials IS NOT NULL))
);

-- Lists show created and deleting instances only: each list index holds just those (its
-- predicate is the lists' own `state <> 'reserved'`), so a reservation costs none of them and
-- a count can be read from the index alone.
CREATE INDEX service_instances_listed ON service_instances (seq)
    WHERE state <> 'reserved';
CREATE INDEX service_instances_by_space ON service_instances (space_guid, seq)
    WHERE state <> 'reserved';
CREATE INDEX service_instances_by_name ON service_instances (name, seq)
    WHERE state <> 'reserved';
CREATE INDEX service_instances_by_plan ON service_instances (service_plan_guid, seq)
    WHERE state <> 'reserved';
CREATE INDEX service_instances_by_organization ON service_instances (organization_guid, seq)
    WHERE state <> 'reserved';
CREATE INDEX service_instances_by_gateway_name ON service_instances (broker_service_id, seq)
    WHERE state <> 'reserved';

CREATE TABLE service_handles (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY,
    guid              TEXT PRIMARY KEY,
    -- No cascade: an instance is removed only once its handles are (finish_delete checks).
    instance_guid     TEXT NOT NULL
        CONSTRAINT service_handles_instance REFERENCES service_instances (guid),
    kind              TEXT NOT NULL
        CONSTRAINT service_handles_kind CHECK (kind IN ('binding', 'key')),
    app_guid          TEXT,
    name              TEXT,
    binding_options   TEXT NOT NULL,
    state             TEXT NOT NULL
        CONSTRAINT service_handles_state CHECK (state IN ('reserved', 'created', 'deleting')),
    handle_id         TEXT,
    gateway_data      TEXT,
    credentials       TEXT,
    syslog_drain_url  TEXT,
    creator_user_id   TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    CONSTRAINT service_handles_binding_app CHECK (kind <> 'binding' OR app_guid IS NOT NULL),
    CONSTRAINT service_handles_key_name
        CHECK (kind <> 'key' OR (name IS NOT NULL AND app_guid IS NULL)),
    CONSTRAINT service_handles_granted CHECK (state = 'reserved'
        OR (handle_id IS NOT NULL AND gateway_data IS NOT NULL AND credentials IS NOT NULL))
);

-- One binding per app and instance (StoreError::AppBound); key names unique per instance
-- (StoreError::KeyNameTaken). The error mapping matches these names.
CREATE UNIQUE INDEX service_handles_one_per_app
    ON service_handles (instance_guid, app_guid) WHERE kind = 'binding';
CREATE UNIQUE INDEX service_handles_key_names
    ON service_handles (instance_guid, name) WHERE kind = 'key';
-- An instance's handles of either kind (the foreign key's checks, a delete's), in order.
CREATE INDEX service_handles_by_instance ON service_handles (instance_guid, seq);
CREATE INDEX service_handles_by_kind ON service_handles (kind, seq);
CREATE INDEX service_handles_by_app ON service_handles (app_guid, seq) WHERE kind = 'binding';
CREATE INDEX service_handles_by_name ON service_handles (name, seq);
