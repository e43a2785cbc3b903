-- Durable waits (timers, signals, child runs) and concurrency keys.
--
-- A task that waits gives its worker slot back and sits in status `waiting` with `run_at`
-- set to when it must look again: its timer's deadline, its signal's timeout, or never
-- ('infinity') until a signal or a child run wakes it by moving `run_at` to now.

ALTER TABLE task_runs DROP CONSTRAINT task_runs_status_check;
ALTER TABLE task_runs ADD CONSTRAINT task_runs_status_check
    CHECK (status IN ('blocked', 'ready', 'running', 'waiting', 'succeeded', 'failed', 'cancelled', 'skipped'));

-- What the task's earlier attempts recorded about their waits: timer deadlines, signal
-- timeouts and the ids of child runs, by the key the task code gave each wait.
ALTER TABLE task_runs ADD COLUMN waits jsonb NOT NULL DEFAULT '{}';
-- Signal names a waiting task waits for, so that a delivery wakes only those tasks.
ALTER TABLE task_runs ADD COLUMN waiting_for text[];
-- When a signal or a child run last woke the task; a wait written by an attempt that
-- started before then resumes at once, since what it waits for may already be there.
ALTER TABLE task_runs ADD COLUMN woken_at timestamptz;

-- A task with a concurrency key runs only while fewer than `concurrency_limit` tasks with
-- the same key are running or waiting.
ALTER TABLE task_runs ADD COLUMN concurrency_key text;
ALTER TABLE task_runs ADD COLUMN concurrency_limit integer;

-- Keyed tasks leave the plain claim path: they are admitted through their key's counter.
DROP INDEX task_runs_ready;
CREATE INDEX task_runs_ready ON task_runs (queue, priority DESC, run_at)
    WHERE status = 'ready' AND concurrency_key IS NULL;
CREATE INDEX task_runs_ready_keyed ON task_runs (queue, priority DESC, run_at)
    WHERE status = 'ready' AND concurrency_key IS NOT NULL;
CREATE INDEX task_runs_waiting ON task_runs (queue, run_at) WHERE status = 'waiting';

-- Holders of each concurrency key: tasks with the key that are running or waiting.
-- `granted` is scratch space for the claim statement, which reads back how many tasks one
-- update admitted.
CREATE TABLE concurrency_keys (
    key      text    PRIMARY KEY,
    holders  integer NOT NULL DEFAULT 0 CHECK (holders >= 0),
    granted  integer NOT NULL DEFAULT 0
);

-- Child runs point at the task that started them.
ALTER TABLE runs ADD COLUMN parent_run_id uuid;
ALTER TABLE runs ADD COLUMN parent_task_idx integer;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- Signals delivered to runs. They are kept, so a signal sent before a task waits for it is
-- found when the task does.
CREATE TABLE signals (
    run_id   uuid        NOT NULL,
    id       bigint      GENERATED ALWAYS AS IDENTITY,
    name     text        NOT NULL,
    payload  jsonb       NOT NULL DEFAULT 'null',
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, id)
);
CREATE INDEX signals_name ON signals (run_id, name, id);
