-- The first schema: messages (one row each, attempts inline), counters per queue and per
-- job, and the worker registry. Runs with search_path set to the backend's own schema.
--
-- Times are epoch seconds (double precision) from the client's clock, never now(), so that
-- every backend agrees on time and tests can move it.

CREATE TABLE messages (
    id                text PRIMARY KEY,
    task              text NOT NULL,
    queue             text NOT NULL,
    body              bytea NOT NULL,
    priority          integer NOT NULL DEFAULT 0,
    state             text NOT NULL CHECK (state IN ('scheduled', 'queued', 'running',
                                                     'succeeded', 'dead', 'cancelled')),
    eta               double precision,
    retries           integer NOT NULL DEFAULT 0,
    deliveries        integer NOT NULL DEFAULT 0,
    max_deliveries    integer NOT NULL,
    job_id            text,
    idempotency_key   text,
    created_at        double precision NOT NULL,
    updated_at        double precision NOT NULL,
    token             text,
    lease_expires_at  double precision,
    result            text,
    result_expires_at double precision,
    error             jsonb,
    progress          jsonb,
    attempts          jsonb NOT NULL DEFAULT '[]'
);

-- Every index but the primary key is partial: millions of final rows cost claim, settle and
-- recovery nothing, because the live states live in small indexes of their own.
CREATE UNIQUE INDEX messages_idempotency_key ON messages (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- claim: ready messages of one queue in priority then FIFO order
CREATE INDEX messages_queued ON messages (queue, priority DESC, id) WHERE state = 'queued';
-- claim of due scheduled messages; wait()'s earliest eta
CREATE INDEX messages_scheduled ON messages (queue, eta) WHERE state = 'scheduled';
-- recover_expired; wait()'s earliest lease expiry
CREATE INDEX messages_running ON messages (lease_expires_at) WHERE state = 'running';
-- job counters and progress of live members
CREATE INDEX messages_job_live ON messages (job_id, state)
    WHERE job_id IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
-- the dead-letter store, listed per queue, oldest first
CREATE INDEX messages_dead ON messages (queue, id) WHERE state = 'dead';
-- retention: final rows pruned oldest first, in small batches
CREATE INDEX messages_done ON messages (updated_at) WHERE state IN ('succeeded', 'cancelled');
-- results dropped past their TTL
CREATE INDEX messages_result_ttl ON messages (result_expires_at)
    WHERE result IS NOT NULL AND result_expires_at IS NOT NULL;

-- Counters (see stalwart.backends.base). Each transition appends its change to
-- counter_deltas in the statement that makes it: appends never wait for each other, so
-- concurrent completes on one queue commit together instead of queueing on one hot row.
-- recover_expired folds the deltas into queue_counts and jobs in small batches; readers
-- add the unfolded deltas to the folded totals in one snapshot.
CREATE TABLE counter_deltas (
    queue     text NOT NULL,
    job_id    text,
    accepted  integer NOT NULL DEFAULT 0,
    succeeded integer NOT NULL DEFAULT 0,
    dead      integer NOT NULL DEFAULT 0,
    cancelled integer NOT NULL DEFAULT 0
);
CREATE INDEX counter_deltas_job ON counter_deltas (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE queue_counts (
    queue     text PRIMARY KEY,
    accepted  bigint NOT NULL DEFAULT 0,
    succeeded bigint NOT NULL DEFAULT 0,
    dead      bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0
);

CREATE TABLE jobs (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at double precision NOT NULL,
    accepted   bigint NOT NULL DEFAULT 0,
    succeeded  bigint NOT NULL DEFAULT 0,
    dead       bigint NOT NULL DEFAULT 0,
    cancelled  bigint NOT NULL DEFAULT 0
);
CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC);

CREATE TABLE workers (
    id         text PRIMARY KEY,
    info       jsonb NOT NULL,
    last_seen  double precision NOT NULL,
    expires_at double precision NOT NULL
);

-- Close the open attempt (the last one, if it has no end yet) with its outcome.
CREATE FUNCTION end_attempt(attempts jsonb, at double precision, outcome text, error jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_array_length(attempts) > 0 AND (attempts -> -1 -> 'ended_at') IS NULL
        THEN jsonb_set(attempts, '{-1}', (attempts -> -1)
             || jsonb_build_object('ended_at', at, 'outcome', outcome, 'error', error))
        ELSE attempts
    END
$$;
