"""End to end in real headless Chromium (Debian's /usr/bin/chromium, driven by Python Playwright).

One tab: load the page, place a handle and its target with the mouse, Start, watch ≥ 3 live frames while the
handle's distance to its target falls, Stop, Undo, export a video. Two tabs (two browser contexts) at once edit
different images and never see each other's points or frames. Screenshots go to test-artifacts/.

The server is the real studio (uvicorn on a thread) with the tiny generator; ``max_fps`` paces the drag so that
the browser has time to press Stop before the handle arrives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from dragkit.engine.trackers import tracker_choices
from dragkit.studio.server import BackgroundServer, StudioConfig, create_app
from tests.conftest import TINY_CONFIG, make_tiny_generator

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SIZE = 32  # the tiny generator's image size

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    G = make_tiny_generator()
    cond = make_tiny_generator(2, dataclasses.replace(TINY_CONFIG, c_dim=4))
    photos = tmp_path_factory.mktemp("photos")
    config = StudioConfig(network="tiny", seed=1, max_fps=10.0, photos_dir=photos)
    app = create_app(config, generators={"tiny": G, "cond": cond})
    with BackgroundServer(app) as srv:
        yield srv
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def open_page(browser: Any, server: BackgroundServer) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(server.url)
    page.wait_for_function("window.dragkit && window.dragkit.stats.firstImageAt !== null", timeout=15_000)
    return context, page, problems


def screen(page: Any, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image pixel (x, y) (pixel centres at integers)."""
    box = page.locator("#overlay").bounding_box()
    return box["x"] + (x + 0.5) / SIZE * box["width"], box["y"] + (y + 0.5) / SIZE * box["height"]


def server_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("window.dragkit.server")
    return state


def stats(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("window.dragkit.stats")
    return result


def test_drag_stop_undo_export(browser: Any, server: BackgroundServer) -> None:
    context, page, problems = open_page(browser, server)
    page.screenshot(path=str(ARTIFACTS / "e2e-01-loaded.png"))

    page.fill("#lr", "0.01")
    page.press("#lr", "Enter")
    page.wait_for_function("window.dragkit.server.lr === 0.01")

    # A handle by one click, its target by the next.
    page.mouse.click(*screen(page, 10, 10))
    page.mouse.click(*screen(page, 20, 14))
    page.wait_for_function("window.dragkit.server.handles.length === 1")
    state = server_state(page)
    assert state["handles"] == [[10, 10]] and state["targets"] == [[20, 14]]
    assert page.locator("#points-list li").count() == 1
    page.screenshot(path=str(ARTIFACTS / "e2e-02-points.png"))

    page.click("#start")
    page.wait_for_function(
        "(() => { const l = window.dragkit.stats.distanceLog;"
        " return l.length >= 3 && Math.min(...l) < l[0] - 0.5; })()",
        timeout=30_000,
    )
    page.screenshot(path=str(ARTIFACTS / "e2e-03-dragging.png"))
    page.click("#stop")
    page.wait_for_function("window.dragkit.stats.stops.length === 1", timeout=10_000)
    s = stats(page)
    assert s["stops"] == ["user"], s["stops"]  # stopped by us, not by arrival
    log = s["distanceLog"]
    assert s["framesReceived"] >= 3 and s["framesDrawn"] >= 3
    assert min(log) < log[0] - 0.5, log
    state = server_state(page)
    assert not state["running"] and state["step"] >= 3
    assert page.locator("#step").inner_text() == str(state["step"])
    assert page.locator("#run-state").inner_text() == "stopped"

    before = state["step"]
    page.click("#undo")
    page.wait_for_function(f"window.dragkit.server.step === {before - 1}")
    page.screenshot(path=str(ARTIFACTS / "e2e-04-undone.png"))

    # The tracker picker lists the server's trackers (experimental ones grouped and marked) and shows the
    # session's choice; switching keeps the edit where it is.
    options = page.evaluate(
        "[...document.querySelectorAll('#tracker option')].map((o) => ({value: o.value, text: o.textContent,"
        " title: o.title, group: o.parentElement.tagName === 'OPTGROUP' ? o.parentElement.label : null}))"
    )
    trackers = {t["name"]: t for t in tracker_choices()}
    assert sorted(o["value"] for o in options) == sorted(trackers) and "flow" not in trackers
    for o in options:
        t = trackers[o["value"]]
        assert o["title"] == t["description"]
        if t["experimental"]:
            assert o["group"] == "Experimental" and o["text"] == f"{t['label']} (experimental)"
        else:
            assert o["group"] is None and o["text"] == t["label"]
    assert page.locator("#tracker").input_value() == "nn"
    page.select_option("#tracker", "hybrid")
    page.wait_for_function("window.dragkit.server.tracker === 'hybrid'")
    assert server_state(page)["step"] == before - 1

    page.select_option("#export-format", "mp4")
    with page.expect_download(timeout=30_000) as download:
        page.click("#export")
    video = ARTIFACTS / "e2e-trajectory.mp4"
    download.value.save_as(str(video))
    data = video.read_bytes()
    assert download.value.suggested_filename.endswith(".mp4") and data[4:8] == b"ftyp" and len(data) > 1000

    # Keyboard: "?" opens the shortcut help, Escape closes it.
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()
    page.screenshot(path=str(ARTIFACTS / "e2e-05-exported.png"))
    assert stats(page)["errors"] == [] and problems == []
    context.close()


def test_two_tabs_edit_different_images(browser: Any, server: BackgroundServer) -> None:
    ctx_a, a, problems_a = open_page(browser, server)
    ctx_b, b, problems_b = open_page(browser, server)
    assert server_state(a)["session"] != server_state(b)["session"]

    b.fill("#seed", "7")
    b.press("#seed", "Enter")
    b.wait_for_function("window.dragkit.server.seed === 7 && window.dragkit.stats.firstImageAt !== null")

    a.mouse.click(*screen(a, 10, 10))
    a.mouse.click(*screen(a, 20, 14))
    # On B, one press-and-drag gesture places handle and target at once.
    b.mouse.move(*screen(b, 5, 25))
    b.mouse.down()
    b.mouse.move(*screen(b, 12, 25), steps=6)
    b.mouse.up()
    a.wait_for_function("window.dragkit.server.handles.length === 1")
    b.wait_for_function("window.dragkit.server.handles.length === 1")
    sa, sb = server_state(a), server_state(b)
    assert sa["handles"] == [[10, 10]] and sa["targets"] == [[20, 14]] and sa["seed"] == 1
    assert sb["handles"] == [[5, 25]] and sb["targets"] == [[12, 25]] and sb["seed"] == 7

    a.click("#start")
    a.wait_for_function("window.dragkit.stats.framesReceived >= 3", timeout=30_000)
    assert stats(b)["framesReceived"] == 0  # A's frames never reach B
    b.click("#start")
    b.wait_for_function("window.dragkit.stats.framesReceived >= 3", timeout=30_000)
    a.screenshot(path=str(ARTIFACTS / "e2e-06-tab-a.png"))
    b.screenshot(path=str(ARTIFACTS / "e2e-07-tab-b.png"))
    for page in (a, b):
        page.click("#stop")
    for page in (a, b):
        page.wait_for_function("window.dragkit.stats.stops.length === 1", timeout=10_000)

    last_a, last_b = stats(a)["lastFrame"], stats(b)["lastFrame"]
    assert last_a["targets"] == [[20, 14]] and last_b["targets"] == [[12, 25]]
    pixels = "document.getElementById('image').toDataURL()"
    assert a.evaluate(pixels) != b.evaluate(pixels)
    assert server_state(a)["handles"] != server_state(b)["handles"]
    assert stats(a)["errors"] == stats(b)["errors"] == [] and problems_a == problems_b == []
    ctx_a.close()
    ctx_b.close()


def test_point_editing_mask_files_and_shortcuts(browser: Any, server: BackgroundServer) -> None:
    context, page, problems = open_page(browser, server)
    page.mouse.click(*screen(page, 8, 8))
    page.mouse.click(*screen(page, 16, 8))
    page.mouse.click(*screen(page, 24, 24))
    page.mouse.click(*screen(page, 20, 28))
    page.wait_for_function("window.dragkit.server.handles.length === 2")

    # Drag the first target somewhere else; right-click deletes the second pair.
    page.mouse.move(*screen(page, 16, 8))
    page.mouse.down()
    page.mouse.move(*screen(page, 16, 14), steps=5)
    page.mouse.up()
    page.wait_for_function("window.dragkit.server.targets[0][1] === 14")
    page.mouse.click(*screen(page, 24, 24), button="right")
    page.wait_for_function("window.dragkit.server.handles.length === 1")
    assert server_state(page)["handles"] == [[8, 8]] and server_state(page)["targets"] == [[16, 14]]
    page.keyboard.press("Control+z")
    page.wait_for_function("window.dragkit.server.handles.length === 2")
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function("window.dragkit.server.handles.length === 1")
    # Select by clicking a point, delete with the Delete key, undo again.
    page.mouse.click(*screen(page, 8, 8))
    page.keyboard.press("Delete")
    page.wait_for_function("window.dragkit.server.handles.length === 0")
    page.keyboard.press("Control+z")
    page.wait_for_function("window.dragkit.server.handles.length === 1")

    # Mask brush: M, paint, H hides the mask layer, Shift+C clears it, P back to points.
    page.keyboard.press("m")
    page.mouse.move(*screen(page, 4, 20))
    page.mouse.down()
    page.mouse.move(*screen(page, 14, 20), steps=8)
    page.mouse.up()
    page.wait_for_function("window.dragkit.server.has_mask")
    page.screenshot(path=str(ARTIFACTS / "e2e-08-mask.png"))
    page.keyboard.press("h")
    assert not page.locator("#show-mask").is_checked()
    page.keyboard.press("h")
    page.keyboard.press("Shift+C")
    page.wait_for_function("!window.dragkit.server.has_mask")
    page.keyboard.press("p")

    # Space starts, Space stops; then save the session, switch image (N), and load the session back.
    page.keyboard.press("Space")
    page.wait_for_function("window.dragkit.stats.framesReceived >= 2", timeout=30_000)
    page.keyboard.press("Space")
    page.wait_for_function("window.dragkit.stats.stops.length === 1", timeout=10_000)
    saved_state = server_state(page)
    with page.expect_download() as download:
        page.click("#save-session")
    session_file = ARTIFACTS / "e2e-session.pt"
    download.value.save_as(str(session_file))
    with page.expect_download() as download:
        page.keyboard.press("s")  # Save PNG
    assert download.value.suggested_filename.endswith(".png")
    page.keyboard.press("n")
    page.wait_for_function(f"window.dragkit.server.seed !== {saved_state['seed']}")
    assert server_state(page)["handles"] == []
    page.set_input_files("#session-file", str(session_file))
    page.wait_for_function(f"window.dragkit.server.step === {saved_state['step']}")
    restored = server_state(page)
    assert restored["handles"] == saved_state["handles"] and restored["targets"] == saved_state["targets"]
    assert stats(page)["errors"] == [] and problems == []
    context.close()


def test_hold_strength_control_and_a_refused_model_does_not_stay_selected(
    browser: Any, server: BackgroundServer
) -> None:
    context, page, problems = open_page(browser, server)
    page.fill("#mask-lambda", "7")
    page.press("#mask-lambda", "Enter")
    page.locator("#seed").focus()  # leave the field: change fires
    page.wait_for_function("window.dragkit.server.mask_lambda === 7")
    page.fill("#latent-reg", "0.5")
    page.press("#latent-reg", "Enter")
    page.locator("#seed").focus()
    page.wait_for_function("window.dragkit.server.latent_reg === 0.5")
    page.uncheck("#guard")
    page.wait_for_function("window.dragkit.server.guard === false")
    # A model id the server refuses: the picker goes back to the model in use and the error is shown.
    page.evaluate(
        """() => { const o = document.createElement('option'); o.value = 'no-such-model'; o.textContent = 'x';
                   document.getElementById('model').appendChild(o); }"""
    )
    page.select_option("#model", "no-such-model")
    page.wait_for_function("window.dragkit.stats.errors.length === 1")
    page.wait_for_function("document.getElementById('model').value === 'tiny'")
    assert server_state(page)["model"] == "tiny" and problems == []
    context.close()


def test_class_picker_shows_for_a_conditional_model_only(browser: Any, server: BackgroundServer) -> None:
    context, page, problems = open_page(browser, server)
    assert page.locator("#class-row").is_hidden()
    page.select_option("#model", "cond")
    page.wait_for_function("window.dragkit.server.model === 'cond'")
    assert page.locator("#class-row").is_visible() and page.get_attribute("#class", "max") == "3"
    first = server_state(page)["image"]
    page.fill("#class", "2")
    page.press("#class", "Enter")
    page.wait_for_function("window.dragkit.server.class_idx === 2")
    assert server_state(page)["image"] != first
    page.select_option("#model", "tiny")
    page.wait_for_function("window.dragkit.server.model === 'tiny'")
    assert page.locator("#class-row").is_hidden() and server_state(page)["class_idx"] is None
    assert problems == []
    context.close()


def test_open_photo_inverts_it_and_opens_it_for_dragging(
    browser: Any, server: BackgroundServer, tmp_path: Path
) -> None:
    """A small photo chosen with "Open photo…" is inverted (progress and previews in the page), then edited."""
    from tests.test_studio_photo import photo_bytes

    (tmp_path / "me.png").write_bytes(photo_bytes())
    context, page, problems = open_page(browser, server)
    page.uncheck("#align-photo")  # the tiny model is not a face model
    page.set_input_files("#photo-file", str(tmp_path / "me.png"))
    page.wait_for_function("window.dragkit.server.model.startsWith('photo:me-')", timeout=60_000)
    progress = stats(page)["invertProgress"]
    assert progress and progress[0]["stage"] == "w" and progress[-1]["stage"] == "pti"
    assert page.locator("#busy").is_hidden()
    x, y = screen(page, 10, 12)
    page.mouse.click(x, y)
    x, y = screen(page, 16, 14)
    page.mouse.click(x, y)
    page.wait_for_function("window.dragkit.server.handles.length === 1")
    assert problems == []
    context.close()


def test_every_control_is_on_screen_at_1280x720(browser: Any, server: BackgroundServer) -> None:
    """A 1280×720 window shows every section of the panel (Files and Export included) and the whole image,
    without scrolling."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_function("window.dragkit && window.dragkit.stats.firstImageAt !== null", timeout=15_000)
    for selector in ("#model", "#seed", "#lr", "#guard", "#start", "#save-png", "#save-session", "#export", "#image"):
        box = page.locator(selector).bounding_box()
        assert box is not None, selector
        assert box["y"] >= 0 and box["y"] + box["height"] <= 720 and box["x"] + box["width"] <= 1280, (selector, box)
    page.screenshot(path=str(ARTIFACTS / "e2e-1280x720.png"))
    context.close()
