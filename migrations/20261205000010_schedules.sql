-- Cron schedules that start runs of stored workflows.
--
-- Schedulers claim a due row with FOR UPDATE SKIP LOCKED and, in the same transaction,
-- insert the tick's run and move next_tick_at past the tick, so each tick starts one run.

CREATE TABLE schedules (
    name          text        PRIMARY KEY,
    cron          text        NOT NULL,
    timezone      text        NOT NULL,
    workflow      text        NOT NULL,
    input         jsonb       NOT NULL DEFAULT 'null',
    missed        text        NOT NULL CHECK (missed IN ('skip', 'run_once')),
    paused        boolean     NOT NULL DEFAULT false,
    next_tick_at  timestamptz NOT NULL,
    last_tick_at  timestamptz,
    last_run_id   uuid,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Serves both the claim of due schedules and the earliest next tick that idle schedulers
-- sleep until; paused schedules are left out, so neither reads them.
CREATE INDEX schedules_due ON schedules (next_tick_at) WHERE NOT paused;
