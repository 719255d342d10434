"""``python -m vaekit.cli`` is the ``vaekit`` command, as ``python -m vaekit`` is."""

from vaekit.cli import main

raise SystemExit(main())
