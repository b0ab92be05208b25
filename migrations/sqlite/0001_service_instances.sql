-- The schema of every store made before migrations (user_version 1), unchanged.
CREATE TABLE IF NOT EXISTS service_instances (
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
    tags              TEXT NOT NULL,
    creator_user_id   TEXT NOT NULL,
    creator_email     TEXT,
    state             TEXT NOT NULL CHECK (state IN ('reserved', 'created')),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER,
    UNIQUE (space_guid, name)
);
