"""``python -m backup``: the ``pgbackup`` command, for where the console script is not on PATH."""

import sys

from backup.cli import main

sys.exit(main())
