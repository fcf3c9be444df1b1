"""``dragkit models list`` and ``dragkit models fetch NAME``: the model registry and cache on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dragkit.io import registry


def register(sub: Any) -> None:
    """Add the ``models`` command (sub-commands ``list`` and ``fetch``)."""
    p = sub.add_parser(
        "models",
        help="list registered models and fetch them into the cache",
        description=f"Registered models and the local cache (${registry.ENV_HOME} overrides the cache directory).",
    )
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    p_list = msub.add_parser("list", help="name, resolution, source, size, licence, cached?")
    p_list.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p_list.set_defaults(func=_list)
    p_fetch = msub.add_parser("fetch", help="download (and convert) a model into the cache; prints its path")
    p_fetch.add_argument("name", help="a registered model name (see `dragkit models list`)")
    p_fetch.add_argument("--force", action="store_true", help="rebuild even if already cached")
    p_fetch.add_argument("--no-progress", action="store_true", help="no progress bars")
    p_fetch.set_defaults(func=_fetch)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _rows() -> list[dict[str, Any]]:
    rows = []
    for m in registry.list_models():
        h, w = m.resolution
        rows.append(
            {
                "name": m.name,
                "resolution": f"{w}x{h}",
                "source": m.source,
                "size": _size(m.size),
                "licence": m.licence,
                "cached": registry.is_cached(m.name),
                "family": m.family,
                "description": m.description,
            }
        )
    return rows


def _list(args: argparse.Namespace) -> int:
    rows = _rows()
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    cols = ["name", "resolution", "size", "cached", "source", "licence"]
    cells = [[("yes" if r[c] else "no") if c == "cached" else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    print(f"\ncache: {registry.cache_dir()}  (set ${registry.ENV_HOME} to move it)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    path = registry.fetch(args.name, force=args.force, progress=not args.no_progress and sys.stderr.isatty())
    print(path)
    return 0
