"""``python -m claude_lab``: the command line (see claude_lab.cli)."""

from claude_lab.cli import main

raise SystemExit(main())
