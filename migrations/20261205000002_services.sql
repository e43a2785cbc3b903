-- Long-lived services: a service is a run whose service task stays running, reports its
-- address once ready, and is started again whenever it fails or its worker dies.

-- The address a running service task reported, and when it became ready. A restart
-- clears both until the new attempt reports again.
ALTER TABLE task_runs ADD COLUMN address text;
ALTER TABLE task_runs ADD COLUMN ready_at timestamptz;

CREATE TABLE services (
    name              text        PRIMARY KEY,
    -- The run that serves now; the service's address is its service task's address.
    run_id            uuid        NOT NULL,
    -- A run replacing the current one: it takes over once its service task is ready.
    candidate_run_id  uuid,
    -- The run that a replacement took over from, stopped at retire_at so that clients
    -- that read the old address just before the switch still reach it.
    retiring_run_id   uuid,
    retire_at         timestamptz,
    drain_ms          integer     NOT NULL DEFAULT 2000,
    stopped           boolean     NOT NULL DEFAULT false,
    generation        integer     NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX services_retiring ON services (retire_at) WHERE retiring_run_id IS NOT NULL;

-- Kinds that some worker registered as services.
ALTER TABLE task_kinds ADD COLUMN service boolean NOT NULL DEFAULT false;
