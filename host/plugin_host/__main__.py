"""``python -m plugin_host``: the same as the ``plugin-host`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
