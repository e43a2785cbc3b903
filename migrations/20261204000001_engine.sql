-- The durable task-graph engine: workflows, runs, task runs, workers and the event history.
--
-- Statuses are short text values checked by constraints rather than enum types, so a later
-- migration can add a status without ALTER TYPE inside a transaction.

CREATE TABLE workflows (
    name        text        NOT NULL,
    version     text        NOT NULL,
    spec        jsonb       NOT NULL,
    source      text        NOT NULL CHECK (source IN ('rust', 'spec')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE INDEX workflows_latest ON workflows (name, created_at DESC);

CREATE TABLE task_kinds (
    kind          text        PRIMARY KEY,
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    id               uuid        PRIMARY KEY,
    workflow         text        NOT NULL,
    workflow_version text        NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    input            jsonb       NOT NULL DEFAULT 'null',
    idempotency_key  text,
    tasks_total      integer     NOT NULL,
    tasks_succeeded  integer     NOT NULL DEFAULT 0,
    tasks_failed     integer     NOT NULL DEFAULT 0,
    tasks_skipped    integer     NOT NULL DEFAULT 0,
    tasks_cancelled  integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);

-- Run ids are UUIDv7, so ordering by id is ordering by creation time: the list endpoints
-- page through these indexes with a keyset cursor on id.
CREATE UNIQUE INDEX runs_idempotency_key ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_status ON runs (status, id DESC);
CREATE INDEX runs_workflow ON runs (workflow, id DESC);

CREATE TABLE task_runs (
    run_id             uuid        NOT NULL,
    idx                integer     NOT NULL,
    name               text        NOT NULL,
    kind               text        NOT NULL,
    status             text        NOT NULL
        CHECK (status IN ('blocked', 'ready', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')),
    queue              text        NOT NULL DEFAULT 'default',
    priority           smallint    NOT NULL DEFAULT 0,
    run_at             timestamptz NOT NULL DEFAULT now(),
    pending_parents    integer     NOT NULL,
    parents            integer[]   NOT NULL,
    children           integer[]   NOT NULL,
    input              jsonb       NOT NULL DEFAULT 'null',
    max_attempts       integer     NOT NULL,
    initial_backoff_ms integer     NOT NULL,
    max_backoff_ms     integer     NOT NULL,
    timeout_ms         integer,
    attempt            integer     NOT NULL DEFAULT 0,
    attempt_limit      integer     NOT NULL,
    attempt_id         uuid,
    worker_id          uuid,
    lease_expires_at   timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    output             jsonb,
    error              text,
    PRIMARY KEY (run_id, idx)
);

-- The claim query walks this index in order and skips locked rows; it only holds ready tasks,
-- so it stays small however many finished tasks the table keeps.
CREATE INDEX task_runs_ready ON task_runs (queue, priority DESC, run_at) WHERE status = 'ready';

-- The reaper finds attempts whose lease lapsed through this index of running tasks.
CREATE INDEX task_runs_leases ON task_runs (lease_expires_at) WHERE status = 'running';

CREATE TABLE workers (
    id            uuid        PRIMARY KEY,
    hostname      text        NOT NULL,
    pid           integer     NOT NULL,
    queue         text        NOT NULL,
    slots         integer     NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- One row per state change of a run or a task. Rows are only appended, and the primary key
-- doubles as the index that serves a run's history in order.
CREATE TABLE events (
    run_id    uuid        NOT NULL,
    id        bigint      GENERATED ALWAYS AS IDENTITY,
    task_idx  integer,
    kind      text        NOT NULL,
    attempt   integer,
    at        timestamptz NOT NULL DEFAULT now(),
    detail    jsonb,
    PRIMARY KEY (run_id, id)
);
