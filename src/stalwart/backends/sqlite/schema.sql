-- stalwart's SQLite schema, version 1 (PRAGMA user_version).
--
-- Every statement is idempotent; the backend runs them in one BEGIN IMMEDIATE transaction
-- on first use and then sets user_version. Times are epoch seconds (REAL) from the
-- backend's clock, never from SQLite's.

-- One row per message, from enqueue to purge. ``seq`` is the insertion order (used for
-- recovery order and stable listing); ``id`` is the sortable public id (FIFO order).
CREATE TABLE IF NOT EXISTS messages (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    task                TEXT NOT NULL,
    queue               TEXT NOT NULL,
    priority            INTEGER NOT NULL DEFAULT 0,
    state               TEXT NOT NULL,
    eta                 REAL,
    token               TEXT,          -- newest claim's token, kept until the next claim,
                                       -- a release or a recovery (the fencing rule)
    lease_expires_at    REAL,          -- set only while running
    deliveries          INTEGER NOT NULL DEFAULT 0,
    retries             INTEGER NOT NULL DEFAULT 0,
    max_deliveries      INTEGER NOT NULL,
    job_id              TEXT,
    idempotency_key     TEXT UNIQUE,
    body                BLOB NOT NULL,
    result              TEXT,
    result_expires_at   REAL,
    error_reason        TEXT,
    error_type          TEXT,
    error_message       TEXT,
    error_traceback     TEXT,
    progress_done       REAL,
    progress_total      REAL,
    progress_note       TEXT,
    progress_updated_at REAL,
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL
);

-- claim: queued rows of one queue in priority/FIFO order, read from the front.
CREATE INDEX IF NOT EXISTS messages_queued
    ON messages (queue, priority DESC, id) WHERE state = 'queued';

-- claim: scheduled rows of one queue whose eta has passed.
CREATE INDEX IF NOT EXISTS messages_scheduled
    ON messages (queue, eta) WHERE state = 'scheduled';

-- recover_expired: running rows by lease expiry.
CREATE INDEX IF NOT EXISTS messages_running
    ON messages (lease_expires_at) WHERE state = 'running';

-- recover_expired: results past their TTL.
CREATE INDEX IF NOT EXISTS messages_result_ttl
    ON messages (result_expires_at) WHERE result IS NOT NULL;

-- the dead-letter store, by queue, oldest first.
CREATE INDEX IF NOT EXISTS messages_dead
    ON messages (queue, id) WHERE state = 'dead';

-- retention of old final rows (only when the ``retention`` option is set).
CREATE INDEX IF NOT EXISTS messages_final
    ON messages (updated_at) WHERE state IN ('succeeded', 'cancelled');

-- inspection of one queue, oldest first (queue and id never change: cheap to keep).
CREATE INDEX IF NOT EXISTS messages_queue ON messages (queue, id);

-- job counts by state, and the progress of a job's running members.
CREATE INDEX IF NOT EXISTS messages_job
    ON messages (job_id, state) WHERE job_id IS NOT NULL;

-- One row per delivery; the newest (highest seq) of a message is its open attempt.
CREATE TABLE IF NOT EXISTS attempts (
    seq             INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL,
    delivery        INTEGER NOT NULL,
    worker_id       TEXT NOT NULL,
    started_at      REAL NOT NULL,
    ended_at        REAL,
    outcome         TEXT,
    error_reason    TEXT,
    error_type      TEXT,
    error_message   TEXT,
    error_traceback TEXT
);

CREATE INDEX IF NOT EXISTS attempts_message ON attempts (message_id, seq);

-- Per-queue counters, changed in the same transaction as each final transition.
CREATE TABLE IF NOT EXISTS queue_counts (
    queue     TEXT PRIMARY KEY,
    accepted  INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    dead      INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0
);

-- Jobs and their counters, kept like the queue counters.
CREATE TABLE IF NOT EXISTS jobs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    accepted   INTEGER NOT NULL DEFAULT 0,
    succeeded  INTEGER NOT NULL DEFAULT 0,
    dead       INTEGER NOT NULL DEFAULT 0,
    cancelled  INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS jobs_newest ON jobs (created_at, id);

-- The worker registry; ``seq`` keeps registration order across refreshes.
CREATE TABLE IF NOT EXISTS workers (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    hostname    TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    queues      TEXT NOT NULL,     -- JSON list
    concurrency INTEGER NOT NULL,
    pool        TEXT NOT NULL,
    started_at  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    meta        TEXT NOT NULL,     -- JSON object
    expires_at  REAL NOT NULL
);
