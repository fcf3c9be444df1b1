"""``dragkit studio``: the interactive web editor (FastAPI + WebSocket) in your browser.

Loads ``--network`` once (the offline ``default`` model unless told otherwise), then serves the studio on
http://127.0.0.1:7860/ and prints that URL. The model picker also lists the registered models and every checkpoint
in ``--models-dir``. Binding to anything but a loopback address exposes the studio — and every model folder
path it lists — to the network: the command says so.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import logging
import secrets
import socket
import sys
from pathlib import Path

from dragkit.cli._common import parse_device
from dragkit.errors import InvalidInputError

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost",)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``studio`` sub-command."""
    p = subparsers.add_parser("studio", help="start the interactive web studio", description=__doc__)
    p.add_argument(
        "--network",
        default="default",
        metavar="NAME|PATH",
        help="model a new tab starts on: a registered name or a checkpoint path (default: default)",
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        metavar="DIR",
        help="folder whose checkpoints the model picker lists (default: ./models, if it exists)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port to bind (default 7860)")
    p.add_argument("--device", default="cpu", help="torch device for the models (default cpu)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of a new tab's first image (default 0)")
    p.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help="access token (16+ characters) every request must carry; default: none on a loopback address, a "
        "random one (printed in the URL) on any other",
    )
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def check_port_free(host: str, port: int) -> None:
    """Fail early, with a clear message, if ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InvalidInputError(f"port {port} on {host} is already in use: pass --port") from None
            raise InvalidInputError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """Load the start model, build the app and serve it until Ctrl+C."""
    import uvicorn

    from dragkit.io import load_generator
    from dragkit.studio.server import StudioConfig, create_app

    if not 0 < args.port < 65536:
        raise InvalidInputError(f"--port: expected 1…65535, got {args.port}")
    check_port_free(args.host, args.port)
    models_dir: Path | None = args.models_dir.expanduser()
    assert models_dir is not None
    if not models_dir.is_dir():
        if args.models_dir != Path("models"):
            raise InvalidInputError(f"--models-dir {models_dir}: no such folder")
        models_dir = None

    network = str(args.network)
    path = Path(network).expanduser()
    if path.exists():
        network_id = path.name
        if models_dir is not None:
            with contextlib.suppress(ValueError):
                network_id = "file:" + path.resolve().relative_to(models_dir.resolve()).as_posix()
    else:
        network_id = network
    device = parse_device(args.device)  # an unusable device is the one-line error, before anything loads
    print(f"dragkit studio: loading {network} …", file=sys.stderr)
    G = load_generator(path if path.exists() else network, device=device)

    loopback = is_loopback(args.host)
    config = StudioConfig(
        network=network_id,
        models_dir=models_dir,
        device=args.device,
        seed=args.seed,
        allowed_hosts=("127.0.0.1", "localhost", "::1", "[::1]", args.host) if loopback else None,
        token=args.token if args.token is not None or loopback else secrets.token_urlsafe(24),
    )
    app = create_app(config, generators={network_id: G})
    if not loopback:
        print(
            f"dragkit studio: warning: --host {args.host} is not a loopback address: anyone who can reach this "
            "machine and has the URL below (with its access token) can use the studio. Use 127.0.0.1 unless you "
            "mean it.",
            file=sys.stderr,
        )
    url = url_for(args.host, args.port) + (f"?token={config.token}" if config.token else "")
    print(f"dragkit studio: open {url}  (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host.strip("[]"), port=args.port, log_level="warning")
    return 0
