"""The default pool backend: worker OS processes over ZeroMQ (ipc locally, CurveZMQ tcp for remote hosts).

Example:
    >>> from laneway.pool.zmq import ZmqBackend
    >>> ZmqBackend().name
    'zmq'
"""

from laneway.pool.zmq._backend import ZmqBackend

__all__ = ["ZmqBackend"]
