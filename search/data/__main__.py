"""``python -m search.data``: see :mod:`search.data.cli`."""

from __future__ import annotations

import sys

from search.data.cli import main

if __name__ == "__main__":
    sys.exit(main())
