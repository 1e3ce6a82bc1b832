"""The ZeroMQ message kinds between a pool (ROUTER) and its workers (DEALER).

Every message is ``[kind, body?, payload frames...]`` (the ROUTER adds the worker's
identity in front). ``HELLO`` and ``BEAT`` bodies are JSON, so the pool parses nothing
executable from a peer it has not admitted; ``TASKS`` and ``DONE`` bodies are stdlib
pickles of plain tuples, exchanged only with admitted workers, and the user's pickled
objects follow as frames of their own: never pickled a second time, sent zero-copy.

Worker to pool:
    ``HELLO``  ``[pid, host, token_hex]``: the worker is connected (``token`` proves a local
    worker was spawned by this pool; remote workers send ``b""``).
    ``DONE``   ``[(task_id, ok, plain), ...]`` then one frame per outcome, its ``data``;
    in the order the tasks ran.
    ``BEAT``   ``[rss, cpu]``: sent from the worker's heartbeat socket, whose identity is
    the worker's id plus :data:`HB_SUFFIX`.

Pool to worker:
    ``TASKS``  ``[(task_id, digest, has_fn, n_buffers), ...]`` then, per task, its
    ``fn_bytes`` frame (only if ``has_fn``: a worker gets a function's code once), its
    ``args_bytes`` frame (pickle protocol 5) and ``n_buffers`` frames of out-of-band buffers.
    ``PING``   the pool is alive (remote workers rejoin when pings stop).
    ``STOP``   finish what was sent, then exit.
    ``REJOIN`` the pool no longer knows this id: reconnect under a new one.
"""

from __future__ import annotations

HELLO = b"H"
DONE = b"D"
BEAT = b"B"
TASKS = b"T"
PING = b"P"
STOP = b"S"
REJOIN = b"R"

#: Identity suffix of a worker's heartbeat socket.
HB_SUFFIX = b"#hb"
