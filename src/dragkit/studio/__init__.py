"""dragkit studio: the interactive web editor (``dragkit studio``; docs/studio.md).

:mod:`dragkit.studio.server` builds the FastAPI app (``create_app``), :mod:`dragkit.studio.sessions` holds the
per-tab sessions and the single model worker, :mod:`dragkit.studio.protocol` validates every client message,
:mod:`dragkit.studio.models` lists and loads the models a tab may pick; ``static/`` is the front end.
Importing this package imports none of them (FastAPI is an optional dependency: ``pip install dragkit[studio]``).
"""

from __future__ import annotations
