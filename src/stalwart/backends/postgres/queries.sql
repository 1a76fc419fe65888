-- Every statement the PostgreSQL backend runs, one atomic step each.
-- {schema} is replaced by the backend's quoted schema name; %(name)s are parameters.
-- Times are the client's clock, passed as %(now)s.
--
-- Lock order: a statement that may wait for several message rows locks them in id order
-- first (a ``SELECT ... ORDER BY id FOR UPDATE`` step driving the write), so two statements
-- never each hold a row the other waits for: no deadlock between, say, a heartbeat's extend
-- and a settle of the same leases listed in other orders. Statements that lock with
-- SKIP LOCKED (claim, recover, expire_results, prune_*) never wait, so they cannot deadlock.
-- enqueue inserts in the order sent, which the backend makes by key, then id (_lock_order).
-- Rows to lock are looked up by primary key (``id = ANY(ids)``), and the write finds each
-- locked row by primary key too, trusting the state read under the lock (nobody changes a
-- row we hold): no plan joins the batch twice nor scans a whole state's index per row.
-- The lock is FOR NO KEY UPDATE, the one the update itself takes (FOR UPDATE to delete).

-- name: enqueue
-- Store new messages (a duplicate id or idempotency key is skipped), count them as
-- accepted for their queue and job, create their job, and wake waiters of their queues.
WITH input AS (
    SELECT * FROM unnest(
        %(ids)s::text[], %(tasks)s::text[], %(queues)s::text[], %(bodies)s::bytea[],
        %(priorities)s::int[], %(etas)s::float8[], %(max_deliveries)s::int[],
        %(job_ids)s::text[], %(keys)s::text[], %(created)s::float8[]
    ) WITH ORDINALITY AS i(id, task, queue, body, priority, eta, max_deliveries, job_id,
                           idempotency_key, created_at, ord)
), ins AS (
    INSERT INTO {schema}.messages (id, task, queue, body, priority, state, eta,
                                   max_deliveries, job_id, idempotency_key, created_at,
                                   updated_at)
    SELECT id, task, queue, body, priority,
           CASE WHEN eta IS NULL OR eta <= %(now)s THEN 'queued' ELSE 'scheduled' END,
           eta, max_deliveries, job_id, idempotency_key, created_at, %(now)s
    FROM input ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING id, queue, job_id
), counted AS (
    INSERT INTO {schema}.counter_deltas (queue, job_id, accepted)
    SELECT queue, job_id, count(*) FROM ins GROUP BY queue, job_id
), new_jobs AS (
    INSERT INTO {schema}.jobs (id, name, created_at)
    SELECT DISTINCT job_id,
           CASE WHEN job_id = %(job_id)s THEN %(job_name)s ELSE job_id END,
           CASE WHEN job_id = %(job_id)s THEN %(job_created_at)s ELSE %(now)s END
    FROM ins WHERE job_id IS NOT NULL ORDER BY 1
    ON CONFLICT (id) DO NOTHING
), woken AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM ins) q
)
SELECT id, (SELECT count(*) FROM woken) FROM ins;

-- name: enqueue_lookup
-- The stored id for messages that were not inserted: same id, or same idempotency key.
SELECT i.ord, coalesce(by_id.id, by_key.id)
FROM unnest(%(ids)s::text[], %(keys)s::text[], %(ords)s::int[]) AS i(id, key, ord)
LEFT JOIN {schema}.messages by_id ON by_id.id = i.id
LEFT JOIN {schema}.messages by_key ON by_key.idempotency_key = i.key;

-- name: claim
-- Lease up to %(limit)s ready messages, highest priority then oldest id first. Locked rows
-- are skipped, so concurrent claimers never wait for each other nor get the same message.
-- Each queue is read in index order on its own (one ordered scan per queue, never a sort of
-- a backlog); with several queues, rows locked here but not picked are free again at commit.
WITH queued AS (
    SELECT c.id, c.priority
    FROM unnest(%(queues)s::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT id, priority FROM {schema}.messages
        WHERE state = 'queued' AND queue = q.name
        ORDER BY priority DESC, id LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) c
), due AS (
    SELECT id, priority FROM {schema}.messages
    WHERE state = 'scheduled' AND queue = ANY(%(queues)s::text[]) AND eta <= %(now)s
    ORDER BY priority DESC, id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM (SELECT * FROM queued UNION ALL SELECT * FROM due) r
    ORDER BY priority DESC, id LIMIT %(limit)s
)
UPDATE {schema}.messages m SET
    state = 'running',
    token = replace(gen_random_uuid()::text, '-', ''),
    lease_expires_at = %(now)s + %(lease_seconds)s,
    deliveries = m.deliveries + 1,
    updated_at = %(now)s,
    attempts = m.attempts || jsonb_build_array(jsonb_build_object(
        'delivery', m.deliveries + 1, 'worker_id', %(worker_id)s::text,
        'started_at', %(now)s::float8))
FROM picked WHERE m.id = picked.id
RETURNING m.id, m.token, m.task, m.queue, m.body, m.priority, m.deliveries, m.retries,
          m.max_deliveries, m.job_id, m.lease_expires_at;

-- name: extend
WITH held AS (
    SELECT m.id, m.state FROM {schema}.messages m
    JOIN (SELECT DISTINCT id, token FROM unnest(%(ids)s::text[], %(tokens)s::text[])
          AS l(id, token)) l ON m.id = l.id AND m.token = l.token
    WHERE m.id = ANY(%(ids)s::text[])
    ORDER BY m.id
    FOR NO KEY UPDATE OF m
)
UPDATE {schema}.messages m SET lease_expires_at = %(now)s + %(lease_seconds)s
FROM held WHERE m.id = held.id AND held.state = 'running'
RETURNING m.id, m.token;

-- name: settle
-- Apply a batch of outcomes (fencing rule in stalwart.backends.base), count the final
-- transitions, and wake waiters of queues that got a message back, in one statement.
WITH o AS (
    SELECT * FROM unnest(
        %(ids)s::text[], %(tokens)s::text[], %(kinds)s::text[], %(results)s::text[],
        %(ttls)s::float8[], %(ats)s::float8[], %(errors)s::jsonb[], %(started)s::bool[],
        %(outcomes)s::text[]
    ) WITH ORDINALITY AS o(id, token, kind, result, ttl, at, error, started, outcome, ord)
), locked AS (
    -- Each outcome whose row carries its token, with the row's state once locked: a settle
    -- that waited for a concurrent one of the same lease sees that one applied.
    SELECT o.*, m.state
    FROM o JOIN {schema}.messages m ON m.id = o.id AND m.token = o.token
    WHERE m.id = ANY(%(ids)s::text[])
    ORDER BY m.id
    FOR NO KEY UPDATE OF m
), upd AS (
    UPDATE {schema}.messages m SET
        state = CASE
            WHEN o.kind = 'complete' THEN 'succeeded'
            WHEN o.kind = 'bury' THEN 'dead'
            WHEN o.kind = 'reschedule' THEN
                CASE WHEN o.at <= %(now)s THEN 'queued' ELSE 'scheduled' END
            WHEN o.started AND m.deliveries >= m.max_deliveries THEN 'dead'
            ELSE 'queued'
        END,
        token = CASE WHEN o.kind = 'release' THEN NULL ELSE m.token END,
        lease_expires_at = NULL,
        updated_at = %(now)s,
        result = CASE WHEN o.kind = 'complete' THEN o.result ELSE m.result END,
        result_expires_at = CASE WHEN o.kind = 'complete' THEN %(now)s + o.ttl
                                 ELSE m.result_expires_at END,
        retries = m.retries + (o.kind = 'reschedule')::int,
        eta = CASE WHEN o.kind = 'reschedule' THEN o.at ELSE m.eta END,
        deliveries = m.deliveries - (o.kind = 'release' AND NOT o.started)::int,
        error = CASE WHEN o.kind = 'complete' OR (o.kind = 'release' AND NOT o.started)
                     THEN m.error ELSE o.error END,
        attempts = CASE WHEN o.kind = 'release' AND NOT o.started THEN m.attempts - (-1)
                        ELSE {schema}.end_attempt(m.attempts, %(now)s, o.outcome, o.error) END
    FROM locked o
    WHERE m.id = o.id AND o.state = 'running'
    RETURNING o.ord, m.queue, m.job_id, m.state
), counted AS (
    INSERT INTO {schema}.counter_deltas (queue, job_id, succeeded, dead)
    SELECT queue, job_id, count(*) FILTER (WHERE state = 'succeeded'),
           count(*) FILTER (WHERE state = 'dead')
    FROM upd WHERE state IN ('succeeded', 'dead') GROUP BY queue, job_id
), woken AS (
    SELECT pg_notify(%(channel)s, queue)
    FROM (SELECT DISTINCT queue FROM upd WHERE state IN ('queued', 'scheduled')) q
)
SELECT o.ord, upd.ord IS NOT NULL, locked.ord IS NOT NULL AND locked.state <> 'running',
       (SELECT count(*) FROM woken)
FROM o LEFT JOIN upd ON upd.ord = o.ord LEFT JOIN locked ON locked.ord = o.ord
ORDER BY o.ord;

-- name: progress
UPDATE {schema}.messages
SET progress = jsonb_build_object('done', %(done)s::float8, 'total', %(total)s::float8,
                                  'note', %(note)s::text, 'updated_at', %(now)s::float8)
WHERE id = %(id)s AND token = %(token)s AND state = 'running'
RETURNING id;

-- name: recover
-- Expired leases back to queued, or dead (worker-lost) past max_deliveries.
WITH expired AS (
    SELECT id FROM {schema}.messages
    WHERE state = 'running' AND lease_expires_at < %(now)s
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), err AS (
    SELECT m.id,
           jsonb_build_object(
               'reason', CASE WHEN m.deliveries >= m.max_deliveries THEN 'worker-lost'
                              ELSE 'lease-expired' END,
               'exc_type', NULL,
               'message', 'lease expired after delivery ' || m.deliveries,
               'traceback', NULL) AS error
    FROM {schema}.messages m JOIN expired USING (id)
), upd AS (
    UPDATE {schema}.messages m SET
        state = CASE WHEN m.deliveries >= m.max_deliveries THEN 'dead' ELSE 'queued' END,
        token = NULL,
        lease_expires_at = NULL,
        updated_at = %(now)s,
        error = err.error,
        attempts = {schema}.end_attempt(m.attempts, %(now)s, 'lease-expired', err.error)
    FROM err WHERE m.id = err.id AND m.state = 'running'
    RETURNING m.id, m.queue, m.job_id, m.state
), counted AS (
    INSERT INTO {schema}.counter_deltas (queue, job_id, dead)
    SELECT queue, job_id, count(*) FROM upd WHERE state = 'dead' GROUP BY queue, job_id
), woken AS (
    SELECT pg_notify(%(channel)s, queue)
    FROM (SELECT DISTINCT queue FROM upd WHERE state = 'queued') q
)
SELECT id, state, (SELECT count(*) FROM woken) FROM upd ORDER BY id;

-- name: fold_counts
-- Move a batch of counter deltas into the folded totals, atomically: readers see each delta
-- either in counter_deltas or in the totals, never both, never neither.
WITH batch AS (
    DELETE FROM {schema}.counter_deltas
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM {schema}.counter_deltas
                           LIMIT %(limit)s FOR UPDATE SKIP LOCKED))
    RETURNING queue, job_id, accepted, succeeded, dead, cancelled
), queues AS (
    INSERT INTO {schema}.queue_counts AS c (queue, accepted, succeeded, dead, cancelled)
    SELECT queue, sum(accepted), sum(succeeded), sum(dead), sum(cancelled)
    FROM batch GROUP BY queue ORDER BY 1
    ON CONFLICT (queue) DO UPDATE SET
        accepted = c.accepted + excluded.accepted, succeeded = c.succeeded + excluded.succeeded,
        dead = c.dead + excluded.dead, cancelled = c.cancelled + excluded.cancelled
), jobs AS (
    INSERT INTO {schema}.jobs AS j (id, name, created_at, accepted, succeeded, dead, cancelled)
    SELECT job_id, job_id, 0, sum(accepted), sum(succeeded), sum(dead), sum(cancelled)
    FROM batch WHERE job_id IS NOT NULL GROUP BY job_id ORDER BY 1
    ON CONFLICT (id) DO UPDATE SET
        accepted = j.accepted + excluded.accepted, succeeded = j.succeeded + excluded.succeeded,
        dead = j.dead + excluded.dead, cancelled = j.cancelled + excluded.cancelled
)
SELECT count(*) FROM batch;

-- name: expire_results
UPDATE {schema}.messages SET result = NULL
WHERE id IN (
    SELECT id FROM {schema}.messages
    WHERE result IS NOT NULL AND result_expires_at <= %(now)s
    LIMIT %(limit)s FOR UPDATE SKIP LOCKED
);

-- name: prune_done
-- Retention: delete a small batch of old succeeded and cancelled rows (counters keep them).
DELETE FROM {schema}.messages
WHERE id IN (
    SELECT id FROM {schema}.messages
    WHERE state IN ('succeeded', 'cancelled') AND updated_at < %(before)s
    ORDER BY updated_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
);

-- name: prune_dead
DELETE FROM {schema}.messages
WHERE id IN (
    SELECT id FROM {schema}.messages
    WHERE state = 'dead' AND updated_at < %(before)s
    LIMIT %(limit)s FOR UPDATE SKIP LOCKED
);

-- name: prune_workers
DELETE FROM {schema}.workers WHERE expires_at < %(before)s;

-- name: cancel
WITH locked AS (
    SELECT id FROM {schema}.messages
    WHERE id = ANY(%(ids)s::text[]) AND state IN ('queued', 'scheduled')
    ORDER BY id
    FOR NO KEY UPDATE
), upd AS (
    UPDATE {schema}.messages m SET
        state = 'cancelled', updated_at = %(now)s, lease_expires_at = NULL,
        error = '{"reason": "cancelled", "exc_type": null, "message": null, "traceback": null}'
    FROM locked WHERE m.id = locked.id
    RETURNING m.id, m.queue, m.job_id
), counted AS (
    INSERT INTO {schema}.counter_deltas (queue, job_id, cancelled)
    SELECT queue, job_id, count(*) FROM upd GROUP BY queue, job_id
)
SELECT id FROM upd;

-- name: requeue_dead
-- Dead messages back to queued with a full budget; they leave the dead counters.
WITH locked AS (
    SELECT id FROM {schema}.messages
    WHERE state = 'dead'
      AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    ORDER BY id
    FOR NO KEY UPDATE
), upd AS (
    UPDATE {schema}.messages m SET
        state = 'queued', retries = 0, deliveries = 0, eta = NULL, token = NULL,
        lease_expires_at = NULL, updated_at = %(now)s
    FROM locked WHERE m.id = locked.id
    RETURNING m.id, m.queue, m.job_id
), counted AS (
    INSERT INTO {schema}.counter_deltas (queue, job_id, dead)
    SELECT queue, job_id, -count(*) FROM upd GROUP BY queue, job_id
), woken AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM upd) q
)
SELECT count(*), (SELECT count(*) FROM woken) FROM upd;

-- name: purge_dead
WITH locked AS (
    SELECT id FROM {schema}.messages
    WHERE state = 'dead'
      AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    ORDER BY id
    FOR UPDATE
)
DELETE FROM {schema}.messages m USING locked WHERE m.id = locked.id;

-- name: message
SELECT {columns} FROM {schema}.messages WHERE id = %(id)s;

-- name: messages
SELECT {columns} FROM {schema}.messages
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
ORDER BY id LIMIT %(limit)s;

-- name: queue_stats
-- Folded counters plus unfolded deltas per queue, and live counts from the partial indexes
-- of each live state, all from one snapshot.
WITH d AS (
    SELECT queue, sum(accepted) AS accepted, sum(succeeded) AS succeeded, sum(dead) AS dead,
           sum(cancelled) AS cancelled
    FROM {schema}.counter_deltas GROUP BY queue
), names AS (
    SELECT queue FROM {schema}.queue_counts UNION SELECT queue FROM d
)
SELECT n.queue,
       (coalesce(c.accepted, 0) + coalesce(d.accepted, 0))::bigint,
       coalesce(q.n, 0), coalesce(s.n, 0), coalesce(r.n, 0),
       (coalesce(c.succeeded, 0) + coalesce(d.succeeded, 0))::bigint,
       (coalesce(c.dead, 0) + coalesce(d.dead, 0))::bigint,
       (coalesce(c.cancelled, 0) + coalesce(d.cancelled, 0))::bigint
FROM names n
LEFT JOIN {schema}.queue_counts c ON c.queue = n.queue
LEFT JOIN d ON d.queue = n.queue
LEFT JOIN (SELECT queue, count(*) AS n FROM {schema}.messages WHERE state = 'queued'
           GROUP BY queue) q ON q.queue = n.queue
LEFT JOIN (SELECT queue, count(*) AS n FROM {schema}.messages WHERE state = 'scheduled'
           GROUP BY queue) s ON s.queue = n.queue
LEFT JOIN (SELECT queue, count(*) AS n FROM {schema}.messages WHERE state = 'running'
           GROUP BY queue) r ON r.queue = n.queue
ORDER BY n.queue;

-- name: job
SELECT j.id, j.name, j.created_at, (j.accepted + coalesce(d.accepted, 0))::bigint,
       (SELECT count(*) FROM {schema}.messages m WHERE m.job_id = j.id AND m.state = 'queued'),
       (SELECT count(*) FROM {schema}.messages m
        WHERE m.job_id = j.id AND m.state = 'scheduled'),
       (SELECT count(*) FROM {schema}.messages m WHERE m.job_id = j.id AND m.state = 'running'),
       (j.succeeded + coalesce(d.succeeded, 0))::bigint,
       (j.dead + coalesce(d.dead, 0))::bigint,
       (j.cancelled + coalesce(d.cancelled, 0))::bigint,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(m.id, m.progress) ORDER BY m.id), '[]')
        FROM {schema}.messages m
        WHERE m.job_id = j.id AND m.state = 'running' AND m.progress IS NOT NULL)
FROM {schema}.jobs j
LEFT JOIN LATERAL (
    SELECT sum(accepted) AS accepted, sum(succeeded) AS succeeded, sum(dead) AS dead,
           sum(cancelled) AS cancelled
    FROM {schema}.counter_deltas WHERE job_id = j.id
) d ON true
WHERE j.id = %(id)s;

-- name: newest_jobs
SELECT id FROM {schema}.jobs ORDER BY created_at DESC, id DESC LIMIT %(limit)s;

-- name: register_worker
INSERT INTO {schema}.workers AS w (id, info, last_seen, expires_at)
VALUES (%(id)s, %(info)s::jsonb, %(now)s, %(expires_at)s)
ON CONFLICT (id) DO UPDATE
    SET info = excluded.info, last_seen = excluded.last_seen, expires_at = excluded.expires_at;

-- name: unregister_worker
DELETE FROM {schema}.workers WHERE id = %(id)s;

-- name: workers
SELECT info, last_seen FROM {schema}.workers WHERE expires_at >= %(now)s ORDER BY id;

-- name: next_due
-- When waiting: is a scheduled message due now, and when does the next eta or lease end?
SELECT
    EXISTS (SELECT 1 FROM {schema}.messages
            WHERE state = 'scheduled' AND queue = ANY(%(queues)s::text[])
              AND eta <= %(now)s),
    least(
        (SELECT min(eta) FROM {schema}.messages
         WHERE state = 'scheduled' AND queue = ANY(%(queues)s::text[]) AND eta > %(now)s),
        (SELECT min(lease_expires_at) FROM {schema}.messages
         WHERE state = 'running' AND queue = ANY(%(queues)s::text[])
           AND lease_expires_at >= %(now)s));

-- name: server_info
SELECT current_setting('synchronous_commit'), current_setting('fsync'),
       current_setting('server_version'), clock_timestamp()::text,
       extract(epoch FROM clock_timestamp())::float8;
