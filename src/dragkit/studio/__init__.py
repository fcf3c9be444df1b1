"""dragkit studio: the interactive web editor (``dragkit studio``; docs/studio.md).

:mod:`dragkit.studio.server` builds the FastAPI app (``create_app``); :mod:`dragkit.studio.sessions` holds the
per-tab sessions, their manager and the drag loop; :mod:`dragkit.studio.handlers` carries out each client message
(one function per message type); :mod:`dragkit.studio.protocol` validates every client message;
:mod:`dragkit.studio.worker` is the single model worker thread and the per-tab outbox; :mod:`dragkit.studio.codec`
encodes images for messages and files; :mod:`dragkit.studio.mask` paints mask strokes;
:mod:`dragkit.studio.models` lists and loads the models a tab may pick; ``static/`` is the front end.
Importing this package imports none of them (FastAPI is an optional dependency: ``pip install dragkit[studio]``).
"""

from __future__ import annotations
