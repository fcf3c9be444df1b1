"""Real photos: align a face, project it into a generator (W, then W+) and tune the generator around it (PTI).

Public API::

    from dragkit.invert import InvertConfig, invert_photo, write_outputs
    result = invert_photo(G, "me.jpg", InvertConfig(), align=True, pti=True, progress=callback)
    write_outputs(result, "me", base_model="default", base_sha256=..., photo_sha256=...)

This layer uses :mod:`dragkit.nn` and :mod:`dragkit.io`; the CLI and the studio use it. See docs/inversion.md.
"""

from __future__ import annotations

from dragkit.invert.pipeline import InversionResult, invert_photo, write_outputs
from dragkit.invert.project import InvertConfig, pivotal_tuning, project

__all__ = ["InversionResult", "InvertConfig", "invert_photo", "pivotal_tuning", "project", "write_outputs"]
