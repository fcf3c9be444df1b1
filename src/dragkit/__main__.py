"""``python -m dragkit`` — same as the ``dragkit`` console script."""

from __future__ import annotations

import sys

from dragkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
