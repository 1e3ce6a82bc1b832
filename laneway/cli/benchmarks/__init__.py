"""The benchmark scripts run by ``laneway bench``.

Each module is a standalone script (``python -m laneway.cli.benchmarks.pool_throughput``
or ``laneway bench pool_throughput``) that measures laneway against its baselines in
the same run. They ship inside the package so ``laneway bench`` works from a wheel.
"""
