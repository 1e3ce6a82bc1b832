"""The code swarm, runnable from a source checkout: ``python examples/code_swarm.py --help``.

The example itself ships inside the package (``laneway/cli/swarm/``) so that
``laneway demo`` runs the same code from an installed wheel; read it there.
"""

from laneway.cli.swarm.code_swarm import main

if __name__ == "__main__":
    raise SystemExit(main())
