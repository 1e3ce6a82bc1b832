"""``python -m laneway``: the same CLI as the ``laneway`` console script."""

from laneway.cli import main

raise SystemExit(main())
