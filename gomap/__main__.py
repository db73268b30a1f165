"""``python -m gomap``: the gomap command."""

from ._cli import main

raise SystemExit(main())
