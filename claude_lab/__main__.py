"""``python -m claude_lab``: the command line (see claude_lab._cli)."""

from claude_lab._cli import main

raise SystemExit(main())
