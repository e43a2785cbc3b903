-- Lines that tasks write through their logger, kept per attempt.
--
-- Workers insert the lines in batches. The retention sweep deletes a run's lines in the
-- statement that deletes the run, as it does for events, so there is no foreign key: a key
-- would make every insert lock the run row and wait for completions of the same run.

CREATE TABLE task_logs (
    run_id    uuid        NOT NULL,
    -- Lines of one run get increasing ids in the order they were stored: workers serialize
    -- their inserts per run, so a reader that pages with `id > after` misses no line.
    id        bigint      GENERATED ALWAYS AS IDENTITY,
    task_idx  integer     NOT NULL,
    attempt   integer     NOT NULL,
    level     text        NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    at        timestamptz NOT NULL,
    message   text        NOT NULL,
    -- The primary key pages a run's lines in order.
    PRIMARY KEY (run_id, id)
);

-- Pages one task's lines in order; an attempt filter reads the task's lines of other
-- attempts too, which the per-attempt size limit keeps small.
CREATE INDEX task_logs_task ON task_logs (run_id, task_idx, id);
