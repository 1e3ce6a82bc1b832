"""Serialization and the function cache both ends keep in step (no processes)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laneway.errors import RemoteError, SerializationError
from laneway.pool import exit_reason
from laneway.worker import FunctionPickler, decode_outcome, digest, dumps_args
from laneway.worker import is_loopback
from laneway.worker import ShipLedger, TaskRunner

from . import tasks


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=200), st.integers(1, 6))
def test_ledger_and_runner_caches_never_disagree(sequence, size):
    """Whatever order functions are used in, the sender ships code exactly when the worker lacks it."""
    fns = [FunctionPickler().dumps(lambda x, k=k: x + k) for k in range(13)]
    ledger, runner = ShipLedger(size), TaskRunner(size)
    for n, k in enumerate(sequence):
        d, code = fns[k]
        on_wire = ledger.to_send(d, code)
        assert decode_outcome(runner.run(n, d, on_wire, dumps_args((1,), None))) == 1 + k


def test_plain_functions_are_pickled_once_closures_every_time():
    fp = FunctionPickler()
    assert fp.dumps(tasks.inc) is fp.dumps(tasks.inc)
    box = [1]
    closure = lambda: box[0]  # noqa: E731
    first = fp.dumps(closure)
    box[0] = 2
    assert fp.dumps(closure) is not first  # state captured by value must be fresh
    with pytest.raises(SerializationError, match="callable"):
        fp.dumps(42)


def test_a_cached_function_pickle_goes_with_its_function_and_never_serves_another():
    import gc
    import types

    fp = FunctionPickler()
    for n in range(50):  # new functions often reuse a freed one's id
        fn = types.FunctionType(compile(f"lambda: {n}", "<gen>", "eval").co_consts[0], {})
        _, data = fp.dumps(fn)
        assert pickle.loads(data)() == n
        assert fp.dumps(fn)[1] is data  # the cached bytes while the function lives
        del fn
        gc.collect()
    assert not fp._memo  # no entry outlives its function


def test_a_modules_builtin_function_pickles_by_reference_as_cloudpickle_would_and_its_digest_is_blake2b():
    import hashlib
    import math

    import cloudpickle

    for fn in (abs, math.sqrt, len):
        name, data = FunctionPickler().dumps(fn)
        assert pickle.loads(data) is fn
        assert data == cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        assert name == digest(data) == hashlib.blake2b(data, digest_size=16).digest()
    # a builtin bound to an object carries the object: cloudpickle's, which may hold user code
    items: list = [lambda: 1]
    _, data = FunctionPickler().dumps(items.append)
    assert pickle.loads(data).__self__[0]() == 1


def test_a_module_function_goes_by_name_as_cloudpickle_sends_it_and_the_rest_by_value():
    import sys
    import types

    import cloudpickle

    def nested(x):
        return x

    fp = FunctionPickler()
    _, data = fp.dumps(tasks.inc)
    assert data == cloudpickle.dumps(tasks.inc, protocol=pickle.HIGHEST_PROTOCOL)
    assert b"cloudpickle" not in data and pickle.loads(data) is tasks.inc
    main_fn = types.FunctionType((lambda x: x).__code__, {"__name__": "__main__"}, "main_fn")
    main_fn.__module__ = "__main__"
    for by_value in (nested, lambda x: x, main_fn):  # cloudpickle's helpers rebuild these
        _, data = fp.dumps(by_value)
        assert b"cloudpickle" in data and pickle.loads(data)(3) == 3
    # A module registered to travel by value does, with cloudpickle; so does one whose package is.
    package, module = types.ModuleType("lw_by_value_pkg"), types.ModuleType("lw_by_value_pkg.tools")
    exec("def double(x):\n    return 2 * x", module.__dict__)
    sys.modules.update({"lw_by_value_pkg": package, "lw_by_value_pkg.tools": module})
    try:
        for registered in (module, package):
            assert b"cloudpickle" not in FunctionPickler().dumps(module.double)[1]
            cloudpickle.register_pickle_by_value(registered)
            try:
                _, data = FunctionPickler().dumps(module.double)
            finally:
                cloudpickle.unregister_pickle_by_value(registered)
            assert b"cloudpickle" in data and pickle.loads(data)(4) == 8
    finally:
        del sys.modules["lw_by_value_pkg"], sys.modules["lw_by_value_pkg.tools"]


def test_small_scalar_arguments_and_large_bytes_round_trip_out_of_band():
    from laneway.worker.codec import OOB_MIN, dumps_args_oob

    big = bytes(OOB_MIN)
    for args in [(1, 2.5, None, True, "s", b"b"), ("x" * OOB_MIN,), (big, 3)]:
        data, bufs, owned = dumps_args_oob(args, None)
        assert pickle.loads(data, buffers=bufs) == (args, None)
        assert owned == len(data)
    assert dumps_args_oob((big,), None)[1][0] is big  # by reference, never copied


def test_arguments_use_the_fast_pickler_only_for_plain_values():
    assert pickle.loads(dumps_args((1, "a", 2.5, None), None)) == ((1, "a", 2.5, None), None)
    assert pickle.loads(dumps_args((1,), {"b": [2]})) == ((1,), {"b": [2]})
    double = lambda x: 2 * x  # noqa: E731
    assert pickle.loads(dumps_args((double,), None))[0][0](4) == 8  # by value, via cloudpickle


def test_runner_reports_raising_unloadable_and_unpicklable_tasks_without_raising():
    runner = TaskRunner()
    d, code = FunctionPickler().dumps(tasks.boom)
    with pytest.raises(RemoteError) as info:
        decode_outcome(runner.run(1, d, code, dumps_args(("x",), None)))
    assert "in boom" in info.value.remote_traceback and "_runner.py" not in info.value.remote_traceback
    with pytest.raises(SerializationError, match="cannot unpickle the task's function"):
        decode_outcome(runner.run(2, digest(b"junk"), b"junk", dumps_args((), None)))
    with pytest.raises(SerializationError, match="no function"):
        decode_outcome(runner.run(3, b"?" * 16, b"", dumps_args((), None)))
    d, code = FunctionPickler().dumps(tasks.unpicklable_result)
    with pytest.raises(SerializationError, match="cannot be pickled back"):
        decode_outcome(runner.run(4, d, code, dumps_args((), None)))
    assert runner.tasks_done == 2 and runner.current is None


@pytest.mark.parametrize("code, text", [(-9, "killed by SIGKILL"), (-11, "killed by SIGSEGV"), (0, "exited with code 0"),
                                        (3, "exited with code 3"), (None, "vanished (exit status unknown)")])
def test_exit_reason(code, text):
    assert exit_reason(code) == text


@pytest.mark.parametrize("endpoint, loopback", [
    ("ipc:///tmp/x.sock", True), ("tcp://127.0.0.1:1", True), ("tcp://localhost:1", True), ("tcp://[::1]:1", True),
    ("tcp://0.0.0.0:1", False), ("tcp://192.168.1.5:1", False), ("tcp://no-such-host.invalid:1", False),
])
def test_is_loopback(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_small_builtin_results_travel_as_values_and_the_rest_as_pickles():
    """run_row: a small scalar is the DONE row's data itself; decode_row reads every form back."""
    from laneway.pool._results import decode_row
    from laneway.worker import wire
    from laneway.worker._runner import INLINE_VALUE_MAX

    runner = TaskRunner()
    d, code = FunctionPickler().dumps(tasks.sleep_then)
    cases = [(None, wire.VALUE), (0, wire.VALUE), (True, wire.VALUE), (2.5, wire.VALUE), ("s", wire.VALUE),
             (b"b", wire.VALUE), ("x" * INLINE_VALUE_MAX, wire.PLAIN), ([1, 2], wire.PICKLED)]
    for n, (value, form) in enumerate(cases):
        row = runner.run_row(n, d, code if n == 0 else b"", dumps_args((0, value), None))
        assert row[:3] == (n, True, form), value
        assert decode_row(row) == (True, value)
        assert type(decode_row(row)[1]) is type(value)
    d, code = FunctionPickler().dumps(tasks.boom)
    row = runner.run_row(9, d, code, dumps_args(("bad",), None))
    assert row[:3] == (9, False, wire.PICKLED)
    ok, err = decode_row(row)
    assert not ok and isinstance(err, RemoteError) and "bad" in str(err)


def test_short_scalar_arguments_are_inlinable_and_run_from_the_tuple_itself():
    from laneway.worker.codec import INLINE_ARG_MAX, inlinable

    assert inlinable((1, 2.5, None, True, 1j, "s", b"b")) and inlinable(())
    assert not inlinable(("x" * INLINE_ARG_MAX,)) and not inlinable(([1],)) and not inlinable((tasks,))
    d, code = FunctionPickler().dumps(tasks.add)
    assert TaskRunner().run_row(1, d, code, (2, 3)) == (1, True, 2, 5)
