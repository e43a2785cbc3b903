-- Projects: every run, stored workflow spec, service, schedule and retention setting belongs
-- to one, and API tokens grant a role in one.
--
-- Runs name their project as text without a foreign key: the API only submits to projects
-- its token names, and a key check on every run insert would cost the submit path a lookup.

CREATE TABLE projects (
    name        text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO projects (name) VALUES ('default');

-- A token is shown once; only the SHA-256 of its secret is kept. Tokens carry 256 random
-- bits, so a fast hash is enough: there is nothing to guess a password-style search with.
CREATE TABLE api_tokens (
    id          uuid        PRIMARY KEY,
    project     text        NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    role        text        NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    name        text        NOT NULL DEFAULT '',
    secret_hash bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX api_tokens_project ON api_tokens (project, created_at);

-- Runs: the list endpoints page through these indexes with the project always given.
ALTER TABLE runs ADD COLUMN project text NOT NULL DEFAULT 'default';

DROP INDEX runs_status;
DROP INDEX runs_workflow;
DROP INDEX runs_idempotency_key;
CREATE INDEX runs_project ON runs (project, id DESC);
CREATE INDEX runs_project_status ON runs (project, status, id DESC);
CREATE INDEX runs_project_workflow ON runs (project, workflow, id DESC);
CREATE UNIQUE INDEX runs_idempotency_key ON runs (project, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

DROP INDEX runs_retention;
CREATE INDEX runs_retention ON runs (project, workflow, finished_at) WHERE finished_at IS NOT NULL;

-- Workflows defined in Rust are shared by every project and stored with the empty project;
-- a spec submitted through the API belongs to the submitting project.
ALTER TABLE workflows ADD COLUMN project text NOT NULL DEFAULT '';
UPDATE workflows SET project = 'default' WHERE source = 'spec';
ALTER TABLE workflows DROP CONSTRAINT workflows_pkey;
ALTER TABLE workflows ADD PRIMARY KEY (project, name, version);
DROP INDEX workflows_latest;
CREATE INDEX workflows_latest ON workflows (name, project, created_at DESC);

ALTER TABLE services ADD COLUMN project text NOT NULL DEFAULT 'default';
ALTER TABLE services DROP CONSTRAINT services_pkey;
ALTER TABLE services ADD PRIMARY KEY (project, name);

ALTER TABLE schedules ADD COLUMN project text NOT NULL DEFAULT 'default';
ALTER TABLE schedules DROP CONSTRAINT schedules_pkey;
ALTER TABLE schedules ADD PRIMARY KEY (project, name);

ALTER TABLE workflow_retention ADD COLUMN project text NOT NULL DEFAULT 'default';
ALTER TABLE workflow_retention DROP CONSTRAINT workflow_retention_pkey;
ALTER TABLE workflow_retention ADD PRIMARY KEY (project, workflow);
