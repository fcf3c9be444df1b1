"""The studio's wire protocol: every message a browser tab may send, validated before anything runs.

Client → server messages are JSON text frames on ``/ws``; each is an object with a ``type`` and optionally an
integer ``id`` that the server echoes as ``reply_to`` in its answer. Unknown types, unknown or missing fields,
wrong JSON types (``"5"`` for an integer, ``true`` for a number), NaN/Infinity and out-of-range numbers are all
rejected with a :class:`ProtocolError` that the server turns into an ``{"type": "error"}`` message — the
connection stays open. Points are ``[x, y]`` in image pixels; whether they lie inside the current image is
checked by :func:`check_point` because that depends on the session's image size.

Server → client messages are built by :mod:`dragkit.studio.server` and documented in ``docs/studio.md``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from dragkit.errors import InvalidInputError

#: Largest seed accepted (NumPy's RandomState takes 32-bit seeds).
MAX_SEED = 2**32 - 1
MAX_CLASS = 2**20  # class labels of conditional models: [0, c_dim) and never above this
#: Bounds of the studio's controls. They are generous: they exist to reject nonsense, not to steer the user.
MAX_STEPS = 10_000
MAX_POINTS = 64
MAX_STROKE_POINTS = 4096
PSI_RANGE = (-1.0, 2.0)
LR_RANGE = (1e-6, 1.0)
MAX_MASK_LAMBDA = 1000.0
MAX_LATENT_REG = 100.0

Finite = Annotated[float, Field(allow_inf_nan=False)]
Point = tuple[Finite, Finite]  # (x, y) in image pixels


class ProtocolError(InvalidInputError):
    """A message could not be accepted. ``code`` is a short machine-readable reason sent to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[int, Field(ge=0, le=2**53)] | None = None


class NewImage(_Message):
    """Start over from a new latent: ``model`` (an id from the model list; ``None`` keeps the current one),
    ``seed`` in [0, 2³²), truncation ``psi``, ``w_plus`` (optimise W+ instead of one shared w) and, for a
    conditional model, ``class_idx`` in [0, c_dim) (default: the tab's class on the same model, else 0)."""

    type: Literal["new_image"]
    model: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    psi: Annotated[Finite, Field(ge=PSI_RANGE[0], le=PSI_RANGE[1])] = 0.7
    w_plus: bool | None = None
    class_idx: Annotated[int, Field(ge=0, le=MAX_CLASS)] | None = None


class SetConfig(_Message):
    """Change drag options: learning rate, point tracker, step budget per Start, the fixed region's hold strength λ
    (``mask_lambda``), the pull back toward the start latent γ (``latent_reg``), the quality guard (``guard``), W vs
    W+.

    ``tracker`` is a name of :data:`dragkit.engine.trackers.TRACKERS` (the ``hello`` message lists them); an
    unknown name is refused when the message is applied, with the list of known ones.
    """

    type: Literal["set_config"]
    lr: Annotated[Finite, Field(ge=LR_RANGE[0], le=LR_RANGE[1])] | None = None
    tracker: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    max_steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = None
    mask_lambda: Annotated[Finite, Field(ge=0, le=MAX_MASK_LAMBDA)] | None = None
    latent_reg: Annotated[Finite, Field(ge=0, le=MAX_LATENT_REG)] | None = None
    guard: bool | None = None
    w_plus: bool | None = None


class AddPoint(_Message):
    """Add one handle and its target."""

    type: Literal["add_point"]
    handle: Point
    target: Point


class MovePoint(_Message):
    """Move handle and/or target number ``index`` (at least one of them)."""

    type: Literal["move_point"]
    index: Annotated[int, Field(ge=0, lt=MAX_POINTS)]
    handle: Point | None = None
    target: Point | None = None


class RemovePoint(_Message):
    """Delete handle/target pair number ``index``."""

    type: Literal["remove_point"]
    index: Annotated[int, Field(ge=0, lt=MAX_POINTS)]


class ClearPoints(_Message):
    type: Literal["clear_points"]


class MaskStroke(_Message):
    """Paint a polyline of discs of ``radius`` pixels: ``movable`` marks pixels free to change, ``fixed``
    marks pixels that must stay (docs/architecture.md §3 step 4)."""

    type: Literal["mask_stroke"]
    points: Annotated[list[Point], Field(min_length=1, max_length=MAX_STROKE_POINTS)]
    radius: Annotated[Finite, Field(gt=0, le=4096)]
    mode: Literal["movable", "fixed"]


class MaskClear(_Message):
    type: Literal["mask_clear"]


class Start(_Message):
    type: Literal["start"]


class Stop(_Message):
    type: Literal["stop"]


class Undo(_Message):
    """Undo ``count`` edits or drag steps (each drag step is one), or with ``drag`` the whole last drag."""

    type: Literal["undo"]
    count: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 1
    drag: bool = False


class Redo(_Message):
    """Redo ``count`` undone edits or drag steps."""

    type: Literal["redo"]
    count: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 1


class Reset(_Message):
    """Back to the session's first latent, keeping the points (their handles return to where they started)."""

    type: Literal["reset"]


ClientMessage = Annotated[
    NewImage
    | SetConfig
    | AddPoint
    | MovePoint
    | RemovePoint
    | ClearPoints
    | MaskStroke
    | MaskClear
    | Start
    | Stop
    | Undo
    | Redo
    | Reset,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


def parse_client_message(raw: str | bytes, max_bytes: int) -> ClientMessage:
    """Validate one WebSocket text frame.

    Raises :class:`ProtocolError` with code ``too_large`` (over ``max_bytes``), ``bad_json`` (not a JSON object
    with a string ``type``), ``unknown_type`` or ``invalid`` (fields wrong, missing, extra, NaN or out of range).
    """
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise ProtocolError("too_large", f"message of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0] if errors else {"type": "", "loc": (), "msg": str(exc)}
        kind = str(first.get("type", ""))
        if kind == "json_invalid" or (kind in ("dict_type", "model_attributes_type") and not first.get("loc")):
            raise ProtocolError("bad_json", "message is not a JSON object") from None
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            raise ProtocolError("unknown_type", f"unknown or missing message type: {first.get('msg')}") from None
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise ProtocolError("invalid", f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))) from None


def check_point(p: Point, width: int, height: int, what: str = "point") -> tuple[float, float]:
    """Return ``p`` as floats if it lies on the image (0 ≤ x ≤ width−1, 0 ≤ y ≤ height−1); raise otherwise."""
    x, y = float(p[0]), float(p[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ProtocolError("invalid", f"{what} {p!r} is not finite")
    if not (0.0 <= x <= width - 1 and 0.0 <= y <= height - 1):
        raise ProtocolError(
            "out_of_range",
            f"{what} ({x:g}, {y:g}) lies outside the {width}×{height} image "
            f"(expected 0 ≤ x ≤ {width - 1}, 0 ≤ y ≤ {height - 1})",
        )
    return x, y
