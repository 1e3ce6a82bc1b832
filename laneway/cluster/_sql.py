"""The cluster's tables and statements (PostgreSQL), in one place so the protocol reads as a whole.

Tables (prefix default ``laneway_cluster_``):

* ``nodes``: one row per node name: its ``epoch`` (the fencing token, bumped on
  every join and when the node is declared dead), ``alive`` and ``lease_until``
  (database clock). A heartbeat extends the lease only while it has not yet
  expired, so a node that was paused past its lease can never revive it.
* ``commands``: durable lane commands: queued, running (``owner``/``owner_epoch``)
  or finished (``done``/``failed``, with the result or error, ``finished_by``
  and ``finished_epoch``). Claimed with ``FOR UPDATE SKIP LOCKED``.
* ``workflows``: which node runs which workflow (the workflow's own state lives
  in a :class:`~laneway.store.PostgresStore` with prefix ``<prefix>wf_``).
* ``adoptions``: one row per node declared dead: when its lease ended, who
  adopted its work and when (the failover time).
* ``turns``: per (lane and level, caller) counters, for round-robin among callers.

Every commit a node makes (a command's result, a workflow version) first
locks its own ``nodes`` row ``FOR SHARE`` and checks ``epoch``, ``alive`` and
``lease_until`` in the same transaction; declaring a node dead updates that
row, so the two serialise and the old owner can never commit after the takeover.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}nodes (
    node TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    alive BOOLEAN NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    pid INTEGER,
    host TEXT
);
CREATE TABLE IF NOT EXISTS {p}commands (
    id TEXT PRIMARY KEY,
    seq BIGSERIAL,
    lane TEXT NOT NULL,
    lane_priority INTEGER NOT NULL,
    level INTEGER NOT NULL,
    turn BIGINT NOT NULL,
    caller TEXT NOT NULL,
    tool TEXT NOT NULL,
    params BYTEA NOT NULL,
    timeout DOUBLE PRECISION,
    state TEXT NOT NULL,
    owner TEXT,
    owner_epoch BIGINT,
    claims INTEGER NOT NULL DEFAULT 0,
    submitted_by TEXT NOT NULL,
    submitted_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at TIMESTAMPTZ,
    finished_by TEXT,
    finished_epoch BIGINT,
    result BYTEA,
    error TEXT,
    error_blob BYTEA
);
CREATE INDEX IF NOT EXISTS {p}commands_queued ON {p}commands (lane_priority, level, turn, seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS {p}commands_running ON {p}commands (owner, owner_epoch) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS {p}turns (
    lane TEXT NOT NULL,
    caller TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (lane, caller)
);
CREATE TABLE IF NOT EXISTS {p}workflows (
    id TEXT PRIMARY KEY,
    seq BIGSERIAL,
    state TEXT NOT NULL,
    owner TEXT,
    owner_epoch BIGINT,
    claims INTEGER NOT NULL DEFAULT 0,
    submitted_by TEXT NOT NULL,
    finished_at TIMESTAMPTZ,
    finished_by TEXT,
    finished_epoch BIGINT,
    status BYTEA
);
CREATE INDEX IF NOT EXISTS {p}workflows_queued ON {p}workflows (seq) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS {p}adoptions (
    node TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    adopted_by TEXT NOT NULL,
    adopted_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (node, epoch)
);
"""

#: Serialises schema creation: concurrent ``CREATE TABLE IF NOT EXISTS`` can race in PostgreSQL.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

JOIN = """
INSERT INTO {p}nodes (node, epoch, alive, lease_until, pid, host)
VALUES (%(node)s, 1, true, clock_timestamp() + make_interval(secs => %(lease)s), %(pid)s, %(host)s)
ON CONFLICT (node) DO UPDATE SET epoch = {p}nodes.epoch + 1, alive = true,
    lease_until = EXCLUDED.lease_until, joined_at = clock_timestamp(), pid = EXCLUDED.pid, host = EXCLUDED.host
WHERE NOT {p}nodes.alive OR {p}nodes.lease_until < clock_timestamp() OR %(rejoin)s
RETURNING epoch
"""

# Only an unexpired lease is extended: a node back from a pause finds it expired and must rejoin.
RENEW = """
UPDATE {p}nodes SET lease_until = clock_timestamp() + make_interval(secs => %s)
WHERE node = %s AND epoch = %s AND alive AND lease_until > clock_timestamp()
RETURNING 1
"""

FENCE = "SELECT 1 FROM {p}nodes WHERE node = %s AND epoch = %s AND alive AND lease_until > clock_timestamp() FOR SHARE"

LEAVE = "UPDATE {p}nodes SET alive = false, epoch = epoch + 1, lease_until = clock_timestamp() WHERE node = %s AND epoch = %s"

# Declaring a node dead bumps its epoch under the row lock its commits take FOR SHARE.
DECLARE_DEAD = """
WITH dead AS (
    UPDATE {p}nodes SET alive = false, epoch = epoch + 1
    WHERE alive AND lease_until < clock_timestamp()
    RETURNING node, epoch - 1 AS epoch, lease_until
)
INSERT INTO {p}adoptions (node, epoch, lease_until, adopted_by)
SELECT node, epoch, lease_until, %s FROM dead
ON CONFLICT DO NOTHING
RETURNING node, epoch
"""

# Work whose owner (node, epoch) is no longer a live lease goes back to the queue.
REQUEUE_ORPHANS = """
UPDATE {p}{table} t SET state = 'queued', owner = NULL, owner_epoch = NULL
WHERE t.state = 'running' AND NOT EXISTS (
    SELECT 1 FROM {p}nodes n WHERE n.node = t.owner AND n.epoch = t.owner_epoch AND n.alive)
RETURNING t.id
"""

# Round-robin among a lane's callers: a command's turn is its caller's count at its level in the
# lane ("lane/level" keys the turns), never below the last turn claimed there, so a newcomer
# takes its turn now, not behind another caller's backlog, and an old count gives no head start.
SUBMIT = """
WITH f AS (
    SELECT COALESCE(MAX(n), 0) AS floor FROM {p}turns WHERE lane = %(turns)s AND caller = ''
), t AS (
    INSERT INTO {p}turns AS t (lane, caller, n) SELECT %(turns)s, %(caller)s, f.floor + 1 FROM f
    ON CONFLICT (lane, caller) DO UPDATE SET n = GREATEST(t.n + 1, EXCLUDED.n)
    RETURNING n
), ins AS (
    INSERT INTO {p}commands (id, lane, lane_priority, level, turn, caller, tool, params, timeout, state, submitted_by)
    SELECT %(id)s, %(lane)s, %(lane_priority)s, %(level)s, t.n, %(caller)s, %(tool)s, %(params)s, %(timeout)s,
           'queued', %(node)s FROM t
    RETURNING seq
)
SELECT pg_notify(%(channel)s, 'n') FROM ins
"""

# The floor row (caller '') of each lane records the highest turn claimed so far.
CLAIM = """
WITH live AS (
    SELECT 1 FROM {p}nodes WHERE node = %(node)s AND epoch = %(epoch)s AND alive AND lease_until > clock_timestamp()
), picked AS (
    SELECT id FROM {p}commands WHERE state = 'queued' AND EXISTS (SELECT 1 FROM live)
    ORDER BY lane_priority, level, turn, seq LIMIT %(n)s FOR UPDATE SKIP LOCKED
)
UPDATE {p}commands c SET state = 'running', owner = %(node)s, owner_epoch = %(epoch)s, claims = c.claims + 1
FROM picked WHERE c.id = picked.id
RETURNING c.id, c.lane, c.level, c.turn, c.caller, c.tool, c.params, c.timeout
"""

RAISE_FLOOR = """
INSERT INTO {p}turns AS t (lane, caller, n) SELECT lane, '', max(turn) FROM unnest(%s::text[], %s::bigint[]) AS u(lane, turn)
GROUP BY lane ON CONFLICT (lane, caller) DO UPDATE SET n = GREATEST(t.n, EXCLUDED.n)
"""

RELEASE = """
UPDATE {p}{table} SET state = 'queued', owner = NULL, owner_epoch = NULL
WHERE id = ANY(%s) AND owner = %s AND owner_epoch = %s AND state = 'running'
"""

FINISH = """
UPDATE {p}commands c SET state = v.state, result = v.result, error = v.error, error_blob = v.error_blob,
    finished_at = clock_timestamp(), finished_by = %(node)s, finished_epoch = %(epoch)s
FROM unnest(%(ids)s::text[], %(states)s::text[], %(results)s::bytea[], %(errors)s::text[], %(blobs)s::bytea[])
    AS v(id, state, result, error, error_blob)
WHERE c.id = v.id AND c.owner = %(node)s AND c.owner_epoch = %(epoch)s AND c.state = 'running'
RETURNING c.id
"""

RESULTS = "SELECT id, state, result, error, error_blob FROM {p}commands WHERE id = ANY(%s) AND state IN ('done', 'failed')"

WF_SUBMIT = """
WITH ins AS (INSERT INTO {p}workflows (id, state, submitted_by) VALUES (%s, 'queued', %s) RETURNING seq)
SELECT pg_notify(%s, 'w') FROM ins
"""

WF_CLAIM = """
WITH live AS (
    SELECT 1 FROM {p}nodes WHERE node = %(node)s AND epoch = %(epoch)s AND alive AND lease_until > clock_timestamp()
), picked AS (
    SELECT id FROM {p}workflows WHERE state = 'queued' AND EXISTS (SELECT 1 FROM live)
    ORDER BY seq LIMIT %(n)s FOR UPDATE SKIP LOCKED
)
UPDATE {p}workflows w SET state = 'running', owner = %(node)s, owner_epoch = %(epoch)s, claims = w.claims + 1
FROM picked WHERE w.id = picked.id
RETURNING w.id
"""

WF_FINISH = """
UPDATE {p}workflows SET state = 'done', status = %(status)s, finished_at = clock_timestamp(),
    finished_by = %(node)s, finished_epoch = %(epoch)s
WHERE id = %(id)s AND owner = %(node)s AND owner_epoch = %(epoch)s AND state = 'running'
RETURNING id
"""

WF_RESULT = "SELECT status FROM {p}workflows WHERE id = %s AND state = 'done'"
