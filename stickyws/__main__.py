"""``python -m stickyws``: the same entry point as the installed ``stickyws`` program."""

from stickyws.cli import main

raise SystemExit(main())
