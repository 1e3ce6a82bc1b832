"""The flagship example run by ``laneway demo``: an α-role agent swarm analyzing a Python source tree.

``code_analysis`` holds the pure analysis functions (no laneway imports);
``code_swarm`` wires them to agents, lanes, the pool and a workflow. Both ship
inside the package so ``laneway demo`` works from an installed wheel;
``examples/code_swarm.py`` in the source checkout is a thin script over them.
"""
