"""The studio's web server: a FastAPI app serving the front end, one WebSocket per tab and a small HTTP API.

Routes (details and message shapes in ``docs/studio.md``):

- ``GET /`` — the page; ``GET /static/…`` — its modules and style sheet.
- ``WS /ws[?session=ID]`` — a tab's live channel: a new session (or the one named, to reconnect), client
  messages of :mod:`dragkit.studio.protocol` in (carried out by :mod:`dragkit.studio.handlers`), ``hello`` /
  ``state`` / ``frame`` / ``stopped`` / ``status`` / ``error`` messages out. ``hello`` lists the models, the
  point trackers (:func:`dragkit.engine.trackers.tracker_choices`), the defaults and the limits.
- ``GET /api/health``, ``GET /api/models``.
- ``POST /api/sessions`` — a session without a WebSocket (scripts); ``GET /api/sessions/{id}`` — its state;
  ``POST /api/sessions/{id}/command`` — any client message as a JSON body, answered with the resulting state.
- ``GET /api/sessions/{id}/image.png`` | ``latent.pt`` | ``session.pt`` | ``export.mp4`` | ``export.gif``
  (``?overlays=true&fps=10``), ``POST /api/sessions/{id}/session`` — upload a saved session (raw body).

Every input is validated; failures answer ``{"error": {"code", "message"}}`` with a 4xx status (or an ``error``
message on the WebSocket) and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import json
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from dragkit import __version__
from dragkit.engine.trackers import tracker_choices
from dragkit.errors import DragkitError
from dragkit.files import remove_stale, scratch_dir
from dragkit.nn.protocol import Generator
from dragkit.studio import protocol as P
from dragkit.studio.models import ModelStore
from dragkit.studio.sessions import (
    SCRATCH_LABEL,
    PhotoOptions,
    SessionManager,
    StudioConfig,
    StudioSession,
    error_code,
    write_export,
)
from dragkit.studio.worker import CLOSE, Outbox

log = logging.getLogger(__name__)

__all__ = ["BackgroundServer", "StudioConfig", "create_app"]

#: HTTP status of each error code; unknown codes are 400.
STATUS: dict[str, int] = {
    "bad_json": 400,
    "unknown_type": 400,
    "invalid": 422,
    "out_of_range": 422,
    "too_large": 413,
    "unknown_model": 404,
    "forbidden_path": 403,
    "no_session": 404,
    "busy": 503,
    "bad_session": 422,
    "unauthorized": 401,
    "forbidden_origin": 403,
    "bad_checkpoint": 422,
    "step_failed": 409,
    "no_image": 409,
    "no_points": 409,
    "no_frames": 409,
    "too_many_points": 409,
    "nothing_to_undo": 409,
    "nothing_to_redo": 409,
    "internal": 500,
}

REAP_INTERVAL_S = 30.0
TOKEN_COOKIE = "dragkit_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def refuse_request(headers: Mapping[str, str], scheme: str, method: str) -> tuple[str, str] | None:
    """Why a request from a browser page of another site must be refused, or None.

    A cross-site page can make a browser send simple requests (a POST without a body, a form post) and open
    WebSockets, with the user's network position but not the page's own origin: such requests carry an ``Origin``
    (and, in current browsers, ``Sec-Fetch-Site: cross-site``). State-changing requests (and every WebSocket) must
    come from the studio's own origin, scheme included; scripts that send no ``Origin`` are not browsers' pages and
    pass (a studio with a token still needs it). ``scheme``: the request's (``ws``/``wss`` count as
    ``http``/``https``); ``method``: HTTP's, or anything unsafe for a WebSocket.
    """
    if method in SAFE_METHODS:
        return None
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return ("forbidden_origin", "requests from other sites are refused")
    origin = headers.get("origin")
    if origin is None:
        return None
    page = urlsplit(origin)
    own_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    if page.scheme != own_scheme or page.netloc.lower() != headers.get("host", "").lower():
        return ("forbidden_origin", f"requests from {origin} are refused: open the studio's own page")
    return None


def _static_dir() -> Path:
    return Path(str(resources.files("dragkit.studio") / "static"))


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(exc: BaseException) -> JSONResponse:
    code = error_code(exc)
    if code == "internal":
        log.error("internal error", exc_info=exc)
    return JSONResponse(error_body(code, str(exc)), status_code=STATUS.get(code, 400))


async def stream_limited(request: Request, limit: int, sink: BinaryIO) -> int:
    """Write the request body to ``sink`` as it arrives, refusing (413) anything over ``limit`` bytes — by its
    declared length before reading, by what came while reading; returns the bytes written."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise P.ProtocolError("invalid", "bad Content-Length header") from None
        if size > limit:
            raise P.ProtocolError("too_large", f"upload of {size} bytes exceeds the limit of {limit} bytes")
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise P.ProtocolError("too_large", f"upload exceeds the limit of {limit} bytes")
        sink.write(chunk)
    return total


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body (small messages), within ``limit`` bytes: :func:`stream_limited` into memory."""
    buffer = io.BytesIO()
    await stream_limited(request, limit, buffer)
    return buffer.getvalue()


def create_app(
    config: StudioConfig | None = None,
    generators: Mapping[str, Generator] | None = None,
    models: ModelStore | None = None,
) -> FastAPI:
    """The studio application.

    config: server settings (:class:`StudioConfig`); ``config.network`` must be an id in the model list.
    generators: already built generators by model id (listed first in the picker; never unloaded).
    models: a ready :class:`ModelStore` instead of one built from ``config`` and ``generators``.
    """
    config = config or StudioConfig()
    store = models or ModelStore(
        preloaded=generators,
        models_dir=config.models_dir,
        device=config.device,
        max_loaded=config.max_loaded_models,
        photos_dir=config.photos_dir,
    )
    store.resolve(config.network)  # fail now, not in the first tab, if the start model is unknown
    remove_stale(tempfile.gettempdir(), SCRATCH_LABEL + "-{pid}-*")  # what killed studios left behind
    manager = SessionManager(config, store)
    # Video exports are encoded here, one at a time, never on the drag worker: other tabs keep dragging.
    exports = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dragkit-export")
    # Photo inversions (minutes each) run here, one at a time, beside the drag worker: other tabs keep dragging.
    inversions = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dragkit-invert")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def reap() -> None:
            while True:
                await asyncio.sleep(min(REAP_INTERVAL_S, config.idle_timeout_s / 4))
                expired = manager.expire()
                if expired:
                    log.info("expired %d idle session(s)", len(expired))

        task = asyncio.create_task(reap())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            manager.close()
            exports.shutdown(wait=False, cancel_futures=True)
            inversions.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="dragkit studio", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.manager = manager
    app.state.config = config
    if config.allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        """The token (when the studio has one) on every route, and no state change from another site."""
        refusal = refuse_request(request.headers, request.url.scheme, request.method)
        token = request.query_params.get("token")
        if refusal is None and config.token is not None:
            given = token or request.cookies.get(TOKEN_COOKIE) or request.headers.get("x-dragkit-token") or ""
            if not secrets.compare_digest(given.encode(), config.token.encode()):
                refusal = ("unauthorized", "this studio needs its access token: open the URL it printed at start-up")
        if refusal is not None:
            return JSONResponse(error_body(*refusal), status_code=STATUS[refusal[0]])
        response: Response = await call_next(request)
        if config.token is not None and token is not None:  # the page's later requests carry it as a cookie
            response.set_cookie(TOKEN_COOKIE, config.token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(DragkitError)
    async def _dragkit_error(request: Request, exc: DragkitError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(error_body("invalid", f"{loc}: {first.get('msg', 'invalid request')}"), 422)

    static = _static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    def hello(s: StudioSession) -> dict[str, Any]:
        return {
            "type": "hello",
            "session": s.id,
            "version": __version__,
            "models": [m.to_json() for m in store.available()],
            "trackers": tracker_choices(),
            "defaults": {
                "model": config.network,
                "seed": config.seed,
                "psi": config.psi,
                "w_plus": config.w_plus,
                "lr": config.lr,
                "max_steps": config.max_steps,
            },
            "limits": {
                "max_message_bytes": config.max_message_bytes,
                "max_upload_bytes": config.max_upload_bytes,
                "max_photo_bytes": config.max_photo_bytes,
                "max_points": P.MAX_POINTS,
                "max_steps": P.MAX_STEPS,
                "max_seed": P.MAX_SEED,
                "psi": list(P.PSI_RANGE),
                "lr": list(P.LR_RANGE),
            },
        }

    def first_image() -> P.NewImage:
        return P.NewImage(type="new_image", model=config.network, seed=config.seed, psi=config.psi)

    async def on_worker(fn: Any, s: StudioSession) -> Any:
        return await asyncio.wrap_future(manager.run_job(fn, key=s.id))

    # -- pages -----------------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        html = (static / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "sessions": len(manager)}

    @app.get("/api/models")
    async def list_models() -> dict[str, Any]:
        return {"models": [m.to_json() for m in store.available()], "default": config.network}

    # -- sessions over HTTP ------------------------------------------------------------------------------------
    @app.post("/api/sessions")
    async def create_session() -> dict[str, Any]:
        manager.expire()
        s = manager.create()
        try:
            state = await manager.command(s, first_image())
        except DragkitError:
            manager.remove(s.id)
            raise
        return {**hello(s), **state, "type": "state"}

    @app.get("/api/sessions/{sid}")
    async def get_state(sid: str) -> dict[str, Any]:
        s = manager.get(sid)
        state: dict[str, Any] = await on_worker(lambda: s.snapshot(mask=True), s)
        return state

    @app.post("/api/sessions/{sid}/command")
    async def command(sid: str, request: Request) -> dict[str, Any]:
        s = manager.get(sid)
        body = await read_limited(request, config.max_message_bytes)
        msg = P.parse_client_message(body, config.max_message_bytes)
        return await manager.command(s, msg)

    @app.get("/api/sessions/{sid}/image.png")
    async def image_png(sid: str) -> Response:
        s = manager.get(sid)
        data = await on_worker(lambda: manager.image_png(s), s)
        return Response(data, media_type="image/png", headers=_attachment(f"dragkit-seed{s.source.seed}.png"))

    @app.get("/api/sessions/{sid}/latent.pt")
    async def latent_pt(sid: str) -> Response:
        s = manager.get(sid)
        data = await on_worker(lambda: manager.latent_pt(s), s)
        return Response(
            data,
            media_type="application/octet-stream",
            headers=_attachment(f"dragkit-seed{s.source.seed}-latent.pt"),
        )

    @app.get("/api/sessions/{sid}/session.pt")
    async def session_file(sid: str) -> Response:
        s = manager.get(sid)
        data = await on_worker(lambda: manager.session_bytes(s), s)
        return Response(
            data,
            media_type="application/octet-stream",
            headers=_attachment(f"dragkit-seed{s.source.seed}.session.pt"),
        )

    @app.post("/api/sessions/{sid}/session")
    async def load_session(sid: str, request: Request) -> dict[str, Any]:
        s = manager.get(sid)
        with scratch_dir(SCRATCH_LABEL) as tmp:
            path = tmp / "session.pt"
            with open(path, "wb") as sink:  # an upload never sits in memory whole
                received = await stream_limited(request, config.max_upload_bytes, sink)
            if not received:
                raise P.ProtocolError("bad_session", "empty upload: send a session file saved by the studio")
            state: dict[str, Any] = await on_worker(lambda: manager.load_session(s, path), s)
        return state

    @app.post("/api/sessions/{sid}/photo")
    async def open_photo(
        request: Request,
        sid: str,
        name: Annotated[str, Query(max_length=200)] = "photo",
        align: bool = True,
        steps_w: Annotated[int, Query(ge=1, le=2000)] = PhotoOptions.steps_w,
        steps_wplus: Annotated[int, Query(ge=1, le=2000)] = PhotoOptions.steps_wplus,
        steps_pti: Annotated[int, Query(ge=1, le=2000)] = PhotoOptions.steps_pti,
    ) -> dict[str, Any]:
        """Invert an uploaded photo (the raw file as the body) into the tab's model, then open it for editing on
        the tuned generator. Progress goes to the tab's WebSocket as ``invert_progress`` messages; the reply is
        the tab's new state. A tab that goes away cancels its inversion."""
        from dragkit.invert.align import decode_photo

        s = manager.get(sid)
        if s.inverting:
            raise P.ProtocolError("busy", "this tab is already inverting a photo")
        body = await read_limited(request, config.max_photo_bytes)
        if not body:
            raise P.ProtocolError("bad_input", "empty upload: send the photo file as the request body")
        photo = await asyncio.to_thread(decode_photo, io.BytesIO(body), name)
        options = PhotoOptions(align=align, steps_w=steps_w, steps_wplus=steps_wplus, steps_pti=steps_pti)
        digest = hashlib.sha256(body).hexdigest()
        cancel = threading.Event()
        s.inverting = True
        try:
            job = asyncio.wrap_future(inversions.submit(manager.invert_photo, s, photo, name, digest, options, cancel))
            while not job.done():
                await asyncio.wait([job], timeout=0.5)
                if not job.done() and (await request.is_disconnected() or s.closed):
                    cancel.set()
            model_id, ws = job.result()
        finally:
            cancel.set()
            s.inverting = False
        state: dict[str, Any] = await on_worker(lambda: manager.open_photo_model(s, model_id, ws), s)
        return state

    @app.get("/api/sessions/{sid}/export.{fmt}")
    async def export(
        request: Request,
        sid: str,
        fmt: Literal["mp4", "gif"],
        overlays: bool = True,
        fps: Annotated[float, Query(gt=0, le=60)] = 10.0,
    ) -> Response:
        s = manager.get(sid)
        job = await on_worker(lambda: manager.export_frames(s, overlays), s)  # the worker only gathers frames
        cancel = threading.Event()
        encoding = asyncio.wrap_future(exports.submit(write_export, job, fmt, fps, cancel))
        try:
            while not encoding.done():  # a tab that goes away cancels its export
                await asyncio.wait([encoding], timeout=0.5)
                if not encoding.done() and await request.is_disconnected():
                    cancel.set()
            data = encoding.result()
        finally:
            cancel.set()
        media = "video/mp4" if fmt == "mp4" else "image/gif"
        suffix = "" if overlays else "-clean"
        return Response(data, media_type=media, headers=_attachment(f"dragkit-seed{s.source.seed}{suffix}.{fmt}"))

    # -- the live channel -------------------------------------------------------------------------------------
    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        refusal = refuse_request(ws.headers, ws.url.scheme, "WEBSOCKET")
        if refusal is None and config.token is not None:
            given = ws.query_params.get("token") or ws.cookies.get(TOKEN_COOKIE) or ""
            if not secrets.compare_digest(given.encode(), config.token.encode()):
                refusal = ("unauthorized", "this studio needs its access token")
        if refusal is not None:
            await ws.close(code=1008, reason=refusal[1][:120])
            return
        await ws.accept()
        sid = ws.query_params.get("session")
        try:
            if sid:
                s = manager.get(sid)
            else:
                manager.expire()
                s = manager.create()
        except DragkitError as exc:
            await ws.send_text(json.dumps({"type": "error", "code": error_code(exc), "message": str(exc)}))
            await ws.close(code=1008 if sid else 1013)
            return

        loop = asyncio.get_running_loop()
        previous = s.outbox
        if previous is not None:
            previous.put({"type": "error", "code": "replaced", "message": "this session was opened elsewhere"})
            previous.put(CLOSE)
        outbox = Outbox(loop)
        s.outbox = outbox
        s.connections += 1
        sender = asyncio.create_task(_pump(ws, outbox))
        outbox.put(hello(s))
        if sid:
            manager.run_job(lambda: s.emit(s.snapshot(image=s.engine is not None, mask=True)), key=s.id)
        else:
            _report(manager.submit(s, first_image()), outbox, None)
        try:
            while not sender.done():
                event = await ws.receive()
                if event["type"] == "websocket.disconnect":
                    break
                raw = event.get("text")
                if raw is None:
                    raw = event.get("bytes") or b""
                try:
                    msg = P.parse_client_message(raw, config.max_message_bytes)
                except P.ProtocolError as exc:
                    outbox.put({"type": "error", "code": exc.code, "message": str(exc)})
                    continue
                _report(manager.submit(s, msg), outbox, msg.id)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            s.connections -= 1
            if s.outbox is outbox:
                s.outbox = None
                if s.running:
                    manager.request_stop(s)
            sender.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await sender

    return app


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _report(fut: concurrent.futures.Future[dict[str, Any]], outbox: Outbox, reply_to: int | None) -> None:
    """Send a failed command's error to the tab (successful replies are emitted by the worker itself)."""

    def done(f: concurrent.futures.Future[dict[str, Any]]) -> None:
        exc = f.exception()
        if exc is None:
            return
        code = error_code(exc)
        if code == "internal":
            log.error("internal error", exc_info=exc)
        msg: dict[str, Any] = {"type": "error", "code": code, "message": str(exc)}
        if reply_to is not None:
            msg["reply_to"] = reply_to
        outbox.put(msg)

    fut.add_done_callback(done)


async def _pump(ws: WebSocket, outbox: Outbox) -> None:
    """Send the outbox's messages in order until a CLOSE sentinel or a broken connection."""
    while True:
        msg = await outbox.get()
        if msg is CLOSE:
            with suppress(Exception):
                await ws.close(code=1000)
            return
        await ws.send_text(json.dumps(msg, separators=(",", ":")))


class BackgroundServer:
    """Serve ``app`` with uvicorn on a thread (tests, benchmarks, notebooks): ``with BackgroundServer(app) as s:
    page.goto(s.url)``. ``port=0`` picks a free port."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        if port == 0:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}/"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        self._thread = threading.Thread(target=self.server.run, name="dragkit-studio-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the studio server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
