"""``python -m jobs``: the ``fairfleet`` command, for an environment without its console script."""

import sys

from jobs.lib.command import main

if __name__ == "__main__":
    sys.exit(main())
