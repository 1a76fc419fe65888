"""The Redis backend: every state transition is one Lua script, keys hash-tagged per queue.

URL: ``redis://[user:password@]host:port/db?prefix=NAME`` (also ``rediss://`` and
``unix:///path.sock?db=0&prefix=NAME``); ``prefix`` namespaces every key (default
``stalwart``). ``retention`` (seconds succeeded and cancelled messages are kept) and
``dead_retention`` (seconds dead ones are kept) default to none: kept until purged, as
the contract reads; set them, since Redis holds everything in memory. Pruning runs inside
``recover_expired``, which every worker calls. Every connection takes its keepalive and
timeouts from :class:`stalwart.net.ConnectionSettings`.

Keys. A queue's keys share the hash tag ``{prefix:queue}``, so each per-queue script touches
one cluster slot:

* ``m:<id>`` hash per message, ``a:<id>`` its attempts (a list of JSON records);
* ``ready`` sorted set scored ``9 - priority``: equal scores sort by member, the id, so
  the head is the highest priority and then the oldest id (ids sort by creation time);
* ``sched`` by eta, ``running`` by lease expiry, ``rexp`` results by expiry, ``done_t``
  and ``dead_t`` final messages by the time they ended (for retention);
* ``purged`` tombstones of deleted messages until the store-wide indexes forget them;
* ``s:<state>`` one set per state (score 0, so id order) for listing by state;
* ``stats`` counters per state plus ``accepted``; ``j:<job>`` the same per (job, queue);
  ``jp:<job>`` running members of a job that reported progress;
* ``wake`` a short list of wake tokens that ``wait`` blocks on.

What spans queues lives under ``{prefix}``: ``idx`` (message id -> queue), ``ikeys``
(idempotency key -> id), ``queues``, ``jobs``/``jobs_t``/``jq:<job>`` (a job's name, time
and the queues its members sit in), ``workers``/``workers_t``. The design stays correct
without cross-slot atomicity:

* enqueue runs ``reserve.lua`` in the ``{prefix}`` slot (claims the id and the idempotency
  key, creates the job), then ``enqueue.lua`` per queue, which stores only messages whose
  hash is missing: both inside one ``store.lua`` call, one round trip per batch. That call
  writes across slots, which a single server allows; on Cluster the two steps would be two
  calls, which the rules here keep correct. A retry after a lost reply finds its own
  reservation and completes the store; nothing is counted twice. The first reservation of
  an id or key is authoritative: a later message with that id, or that key, resolves to the
  reserved id. While that id's message is stored, nothing more is stored; while it is not,
  the later message's content is stored under the reserved id, in the reserved queue. The
  store is idempotent by id, so whichever producer's store lands first is the message and
  the other does nothing: one message per key, and a reservation whose producer died is
  stored by the next enqueue. Whether a message is stored is read across slots, which a
  single server allows; on Cluster it would move to the client (see reserve.lua).
* A lease token is ``<random>.<queue>``, so complete, retry, fail, release, extend and
  progress go straight to the queue's slot with no lookup.
* Job counters are kept per (job, queue) in the queue's slot, in the same script as the
  message's transition, and summed on read.
* A claim over several queues reads each queue's head (``heads.lua``), merges them by
  (priority, id) in the client, then claims each queue's share atomically; a message a
  competitor took in between is replaced by that queue's next one.
* ``cancel`` and ``message`` find the queue through ``idx``, then act in its slot.
* Deleting (purge, retention) leaves a tombstone in the queue's slot until the client has
  dropped the id and key from ``idx`` and ``ikeys``; a later call finishes what a lost
  reply left undone.

Retrying after a lost reply: enqueue and settle are idempotent (by id, by token), and so
are extend, cancel, requeue and purge. A claim whose reply is lost leaves its leases with
nobody; they come back after the lease time, like a crashed worker's. A process that made
an enqueue's two steps as two calls (as this backend did before ``store.lua``) and died
between them, or whose second call kept failing, leaves the id and key reserved but not
stored: the next enqueue with that id or key stores its message under the reserved id.
Two producers racing with one key store one message, whichever is first; both are
answered its id.

No operation scans the keyspace. Claim, extend, settle and recover are O(log n) per message.
Time is the client's clock, passed to each script; the server's clock is never read (except
by ``server_info``, to report skew). ``wait`` blocks with BLPOP on the queues' wake lists:
enqueue, retry, release, recover and requeue push a token in the same script. On Redis
Cluster, a ``wait`` over queues in different slots would need one blocking call per node;
this client issues one BLPOP, which a single server accepts for any keys.
"""

from __future__ import annotations

from .backend import RedisBackend

__all__ = ["RedisBackend"]
