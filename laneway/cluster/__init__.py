"""Several orchestrator nodes on one PostgreSQL database: claiming with leases, failover, fencing.

``Orchestrator(store="postgresql://...", node="a")`` makes the orchestrator a
node of the cluster of every node on that database; ``orch.cluster`` (a
:class:`ClusterNode`) joins on first use, so register tools and executors
first. Any node submits; one node runs each command or workflow; results are
read from any node::

    with Orchestrator(store="postgresql://db/app", node="a") as orch:
        orch.lanes.tools.register(fetch, name="fetch")
        orch.cluster.register_executor("summarize", summarize)
        h = orch.cluster.submit("query", "fetch", {"url": "https://example.org"})
        print(h.result(timeout=30))
        wf = orch.cluster.submit_workflow([TaskDefinition("s", agent_type="summarize")])
        print(wf.wait(timeout=60).results)

Protocol (all in PostgreSQL, no consensus of our own)
    A node holds a lease row (``<prefix>nodes``) that its heartbeat renews
    every ``heartbeat_s``; the lease can be extended only before it expires.
    Queued commands and workflows are claimed with ``FOR UPDATE SKIP LOCKED``
    in lane-priority, then priority, then round-robin-by-caller, then age
    order; nodes are woken by LISTEN/NOTIFY, with a slow poll (``poll_s``) as
    the fallback. When a lease expires, the next heartbeat of any other node
    declares that node dead (bumping its epoch) and puts its running work back
    in the queue, where a live node claims it: adoption within about
    ``lease_s + heartbeat_s`` (3.75 s by default). Every commit (a command's
    result, each workflow version) checks the committing node's epoch and lease
    in the same transaction, under a row lock that declaring it dead also
    takes: a node that was paused or cut off past its lease commits nothing,
    then rejoins under a new epoch.

Guarantees
    Each command's record is finished exactly once; a command running on a
    node that dies runs again on the adopter (at-least-once execution). A
    workflow resumes from its last stored version on the adopting node:
    completed tasks are never run again; the task in flight may run again,
    with its last checkpoint, and ``ctx.idempotency_key`` (the same on every
    attempt) lets a tool make its effect exactly-once.

Semantics across nodes
    Lane priorities and task priorities order claims cluster-wide, and a
    lane's callers take turns cluster-wide. Rate limits (``LaneConfig.rate_limit``)
    and ``max_concurrency`` are enforced per node, by each node's lanes: with N
    nodes a lane may run N times its local limit. Cancelling a cluster
    command is not supported yet.
"""

from laneway.cluster._node import ClusterNode
from laneway.cluster._records import ClusterHandle, ClusterStats, ClusterWorkflow, NodeInfo, NodeState, ResultFuture

__all__ = ["ClusterHandle", "ClusterNode", "ClusterStats", "ClusterWorkflow", "NodeInfo", "NodeState", "ResultFuture"]
