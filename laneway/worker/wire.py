"""The ZeroMQ message kinds between a pool (ROUTER) and its workers (DEALER).

Every message is ``[kind, body?, payload frames...]`` (the ROUTER adds the worker's
identity in front). ``HELLO`` and ``BEAT`` bodies are JSON, so the pool parses nothing
executable from a peer it has not admitted; ``TASKS`` and ``DONE`` bodies are stdlib
pickles of plain tuples, exchanged only with admitted workers. Small pickled user
objects ride inside them; large ones (:data:`INLINE_MAX` and up) follow as frames of
their own, never pickled a second time and sent zero-copy.

Worker to pool:
    ``HELLO``  ``[pid, host, token_hex]``: the worker is connected (``token`` proves a local
    worker was spawned by this pool; remote workers send ``b""``).
    ``DONE``   ``([(task_id, ok, form, data), ...], busy_s)``: rows in the order the tasks
    ran, and the seconds the worker spent on them (unpickling, running, pickling: its own
    work, never the time a task spent in transit or waiting in a socket, which the pool
    must not mistake for slow tasks when it sizes the worker's window); then one frame
    per ``data`` that is ``None`` with a ``form`` other than :data:`VALUE`: that
    outcome's large ``data``. (A bare list of rows, from an older worker, has no ``busy_s``.) ``form`` says what ``data`` is: :data:`PICKLED` (a pickle,
    or an error record if not ``ok``), :data:`PLAIN` (a stdlib pickle of a builtin
    scalar) or :data:`VALUE` (a small builtin scalar itself, not pickled twice: most tiny
    tasks' results, which the pool then settles without unpickling anything).
    ``BEAT``   ``[rss, cpu]``: sent from the worker's heartbeat socket, whose identity is
    the worker's id plus :data:`HB_SUFFIX`.

Local workers (the pool spawned them) skip ZeroMQ on the data path both ways, and start
without it: their ``HELLO`` and ``BEAT`` go as reply datagrams (below) flagged
:data:`REPLY_HELLO` and :data:`REPLY_BEAT`, and a local worker imports ZeroMQ and connects
its DEALER (sending the ``HELLO`` above) only when the pool asks it to (a task datagram with
sequence number 0, :data:`CONNECT_SEQ`; it connects as it reads it, before the task datagrams
queued behind it), which the pool does when it first has something only ZeroMQ carries for it,
or once it keeps the worker busy (a batch sent while another is unanswered: its socket is
soon full): a program whose tasks come one at a time never loads ZeroMQ on either side. Until that
ZeroMQ ``HELLO``, the pool keeps what only the ROUTER can carry to it (``SEQ_TASKS``), and a
``STOP`` goes as a task datagram with sequence number :data:`STOP_SEQ`, after the tasks sent
before it (kept, and the worker asked to connect, if something kept must go first or the
worker's socket is full).

Tasks: each ``TASKS`` message to a local worker carries a sequence number (8 bytes,
big-endian, from 1), and goes as one datagram ``seq + header`` to the worker's own Unix
socket (:attr:`WorkerConfig.task_path`) when it has no payload frames and fits in
:data:`REPLY_CHUNK`; otherwise, or when the worker's socket is full, over ZeroMQ as
``SEQ_TASKS`` ``[seq, header, payload frames...]``. The worker runs them in sequence
order whichever way each came, and on ``STOP`` first runs the datagrams already queued.

Replies: ``DONE`` bodies go as datagrams on a
Unix socket the pool binds in its private directory (:attr:`WorkerConfig.reply_path`),
straight to whichever pool thread reads, with no ZeroMQ I/O thread on either side.
Each datagram is ``token (16 bytes) + flag + data``: the token the pool gave the
worker names and authenticates it, and a DONE body longer than :data:`REPLY_CHUNK`
goes as several datagrams, every one but the last flagged :data:`REPLY_MORE`. Large
data stays inside the body's pickle (no frames). Every DONE of such a worker takes
this path, so the pool reads its outcomes in the order it sent them.

Pool to worker:
    ``TASKS``  ``[(task_id, digest, fn_bytes_or_empty, args, n_buffers), ...]``
    then, per task, its ``args_bytes`` frame if ``args`` is ``None`` in the header, and its
    ``n_buffers`` out-of-band buffers (pickle protocol 5), one frame each. ``args`` is the
    pickled ``(args, kwargs)``, or a tuple: the positional arguments themselves, builtin
    scalars and short strings only (``codec.inlinable``), riding in the header's pickle.
    ``PING``   the pool is alive (remote workers rejoin when pings stop).
    ``STOP``   finish what was sent, then exit.
    ``REJOIN`` the pool no longer knows this id: reconnect under a new one.
"""

from __future__ import annotations

HELLO = b"H"
DONE = b"D"
BEAT = b"B"
TASKS = b"T"
SEQ_TASKS = b"Q"  #: a local worker's TASKS over ZeroMQ: ``[seq, header, payload frames...]``
PING = b"P"
STOP = b"S"
REJOIN = b"R"

#: Forms of a DONE row's data (see DONE above); False and True from older workers read as the first two.
PICKLED, PLAIN, VALUE = 0, 1, 2

#: Pickled payloads this big or bigger travel as frames of their own, not inside a header.
INLINE_MAX = 64 * 1024

#: Identity suffix of a worker's heartbeat socket.
HB_SUFFIX = b"#hb"

#: Bytes of a DONE body per reply datagram (see "Local workers' replies" above).
REPLY_CHUNK = 60_000
#: A reply datagram's flag: more of this DONE body follows / this datagram ends it.
REPLY_MORE, REPLY_END = b"+", b"."
#: Length of the token in front of every reply datagram.
REPLY_TOKEN = 16
#: Length of the sequence number in front of a local worker's TASKS.
SEQ_BYTES = 8
#: Reply datagram flags of a local worker's HELLO (body: JSON ``[pid, host]``) and BEAT (JSON ``[rss, cpu]``).
REPLY_HELLO, REPLY_BEAT = b"h", b"b"
#: The sequence number of a task datagram that carries no tasks: the pool asks the worker to connect over ZeroMQ.
CONNECT_SEQ = 0
#: The sequence number of a task datagram that carries no tasks: ``STOP``, to a worker not connected over ZeroMQ.
STOP_SEQ = (1 << 8 * SEQ_BYTES) - 1
