-- Retention of finished runs, and the indexes that the retention sweep and the dead-letter
-- list read.

-- Per-workflow retention. A workflow without a row keeps its finished runs for the
-- default age that each process is configured with. A NULL age keeps them forever.
CREATE TABLE workflow_retention (
    workflow           text        PRIMARY KEY,
    retention_seconds  bigint      CHECK (retention_seconds > 0),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The sweep looks up each workflow's runs that finished before that workflow's cutoff, so it
-- never walks the runs that a longer retention keeps. Unfinished runs have no entry, and
-- updates that leave `workflow` and `finished_at` alone (task counts) stay eligible for HOT.
CREATE INDEX runs_retention ON runs (workflow, finished_at) WHERE finished_at IS NOT NULL;

-- Dead letters: tasks that failed for good, newest first. A claimed row is `running`, so
-- claims add no entries to this index.
CREATE INDEX task_runs_failed ON task_runs (finished_at DESC, run_id DESC, idx DESC)
    WHERE status = 'failed';
