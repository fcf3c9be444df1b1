"""Real-photo inversion on tiny seeded generators: alignment geometry, photo reading, losses, projection, pivotal
tuning and the CLI (``dragkit invert`` then ``dragkit drag --latent``)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit.cli import main
from dragkit.errors import InvalidInputError
from dragkit.invert.align import MIN_PHOTO_SIDE, center_crop, ffhq_quad, read_photo, warp_quad
from dragkit.invert.losses import laplacian_l1, ms_ssim, psnr, reconstruction_loss, ssim
from dragkit.invert.pipeline import image_to_tensor, invert_photo, write_outputs
from dragkit.invert.project import InvertConfig, lr_at, pivotal_tuning, project, synthesize_image
from dragkit.io import load_generator, save_native
from dragkit.nn.images import to_uint8
from dragkit.nn.stylegan2 import StyleGAN2Generator
from tests.conftest import make_tiny_generator

# A face's 68 landmarks need only the eyes (36–47) and mouth corners (48, 54) here; the rest sit at the centre.
EYE_L, EYE_R, MOUTH_L, MOUTH_R = (40.0, 50.0), (80.0, 50.0), (45.0, 95.0), (75.0, 95.0)


def landmarks(points: tuple[tuple[float, float], ...] = (EYE_L, EYE_R, MOUTH_L, MOUTH_R)) -> np.ndarray:
    eye_l, eye_r, m_l, m_r = (np.array(p) for p in points)
    lm = np.tile((eye_l + eye_r + m_l + m_r) / 4, (68, 1))
    lm[36:42] = eye_l
    lm[42:48] = eye_r
    lm[48] = m_l
    lm[54] = m_r
    return lm


def similarity(lm: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return lm @ np.array([[c, s], [-s, c]]) + np.array(shift)


# -- alignment --------------------------------------------------------------------------------------------------


def test_ffhq_quad_of_an_upright_face() -> None:
    """Eyes 40 px apart, mouth 45 px below: the square is centred 4.5 px below the eyes, half-side
    max(2·40, 1.8·45) = 81, axis-aligned."""
    q = ffhq_quad(landmarks())
    centre = np.array([60.0, 50.0 + 45.0 * 0.1])
    np.testing.assert_allclose(q.mean(axis=0), centre, atol=1e-9)
    np.testing.assert_allclose(q[0], centre + np.array([-81, -81]), atol=1e-9)  # top-left
    np.testing.assert_allclose(q[2], centre + np.array([81, 81]), atol=1e-9)  # bottom-right


def test_ffhq_quad_follows_a_similarity_of_the_face() -> None:
    base = landmarks()
    for angle, scale, shift in [(0.3, 1.5, (10.0, -20.0)), (-1.0, 0.7, (200.0, 5.0))]:
        moved = ffhq_quad(similarity(base, angle, scale, shift))
        np.testing.assert_allclose(moved, similarity(ffhq_quad(base), angle, scale, shift), atol=1e-9)


def test_aligning_a_rotated_photo_gives_the_upright_crop() -> None:
    """A photo rotated (and shifted) with its landmarks aligns to the same crop as the upright one."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    photo = np.asarray(Image.fromarray(small).resize((240, 240), Image.Resampling.BICUBIC))
    lm = landmarks(((100.0, 100.0), (140.0, 100.0), (105.0, 145.0), (135.0, 145.0)))
    upright = warp_quad(photo, ffhq_quad(lm), 64)
    angle = math.radians(20)
    rotated = Image.fromarray(photo).rotate(20, resample=Image.Resampling.BICUBIC, center=(120, 120))
    # PIL rotates counter-clockwise on screen: a point moves by −angle in image (y-down) coordinates.
    lm_rot = similarity(lm - 120, -angle, 1.0, (0, 0)) + 120
    turned = warp_quad(np.asarray(rotated), ffhq_quad(lm_rot), 64)
    assert upright.shape == turned.shape == (64, 64, 3)
    inner = (slice(16, 48), slice(16, 48))
    diff = np.abs(upright[inner].astype(int) - turned[inner].astype(int)).mean()
    assert diff < 6, diff
    assert np.abs(upright[inner].astype(int) - np.roll(upright, 8, axis=1)[inner].astype(int)).mean() > 4 * diff


def test_a_face_at_the_border_is_padded_not_black() -> None:
    photo = np.full((200, 200, 3), 180, dtype=np.uint8)
    lm = landmarks(((10.0, 60.0), (50.0, 60.0), (15.0, 105.0), (45.0, 105.0)))  # the crop leaves the photo
    out = warp_quad(photo, ffhq_quad(lm), 64)
    assert out.min() > 100  # reflected and blurred photo, no black border


def test_degenerate_landmarks_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="degenerate"):
        ffhq_quad(np.zeros((68, 2)))
    with pytest.raises(InvalidInputError, match=r"\[68, 2\]"):
        ffhq_quad(np.zeros((5, 2)))


def test_center_crop_keeps_the_models_aspect() -> None:
    img = np.zeros((100, 300, 3), dtype=np.uint8)
    img[:, 100:200] = 255
    out = center_crop(img, 64, 32)
    assert out.shape == (64, 32, 3) and out.mean() > 250  # the white middle third, 2:1


# -- reading photos ---------------------------------------------------------------------------------------------


def test_photos_of_every_kind_become_upright_rgb(tmp_path: Path) -> None:
    grey = Image.fromarray(np.full((80, 120), 90, dtype=np.uint8), "L")
    grey.save(tmp_path / "grey.png")
    assert read_photo(tmp_path / "grey.png").shape == (80, 120, 3)
    rgba = np.zeros((80, 80, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert read_photo(tmp_path / "alpha.png").min() == 255
    deep = Image.fromarray(np.full((70, 90), 65535 // 2, dtype=np.uint16))
    deep.save(tmp_path / "deep.png")
    assert abs(int(read_photo(tmp_path / "deep.png")[0, 0, 0]) - 128) <= 1
    im = Image.fromarray(np.zeros((100, 70, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    im.save(tmp_path / "exif.jpg", exif=exif)
    assert read_photo(tmp_path / "exif.jpg").shape == (70, 100, 3)


def test_bad_photos_get_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such photo"):
        read_photo(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        read_photo(tmp_path / "text.jpg")
    Image.fromarray(np.zeros((MIN_PHOTO_SIDE - 1, 200, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(InvalidInputError, match="too small"):
        read_photo(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((100, 100, 3), dtype=np.uint8)).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:60])
    with pytest.raises(InvalidInputError, match="not a readable image"):
        read_photo(tmp_path / "cut.png")


def test_huge_photos_are_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dragkit.invert.align as align

    Image.fromarray(np.zeros((100, 100, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(align, "MAX_PHOTO_PIXELS", 5000)
    with pytest.raises(InvalidInputError, match="too many"):
        read_photo(tmp_path / "big.png")
    monkeypatch.setattr(align, "MAX_PHOTO_BYTES", 10)
    with pytest.raises(InvalidInputError, match="too large"):
        read_photo(tmp_path / "big.png")


# -- losses -----------------------------------------------------------------------------------------------------


def test_losses_are_zero_for_equal_images_and_grow_with_difference() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand([1, 3, 64, 64], generator=gen) * 2 - 1
    b = (a + 0.3 * torch.randn([1, 3, 64, 64], generator=gen)).clamp(-1, 1)
    c = (a + 0.6 * torch.randn([1, 3, 64, 64], generator=gen)).clamp(-1, 1)
    assert float(laplacian_l1(a, a)) == 0 and float(ms_ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-5) and psnr(a, a) == float("inf")
    assert 0 < float(reconstruction_loss(b, a)) < float(reconstruction_loss(c, a))
    assert psnr(b, a) > psnr(c, a) and float(ssim(b, a)[0]) > float(ssim(c, a)[0])
    x = a.clone().requires_grad_(True)
    reconstruction_loss(x, b).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_lr_schedule_ramps_up_and_down() -> None:
    assert lr_at(0.0, 0.1) == 0 and lr_at(0.5, 0.1) == pytest.approx(0.1) and lr_at(1.0, 0.1) == pytest.approx(0)
    assert 0 < lr_at(0.02, 0.1) < 0.1 and 0 < lr_at(0.9, 0.1) < 0.1


# -- projection and tuning --------------------------------------------------------------------------------------

FAST = InvertConfig(steps_w=60, steps_wplus=60, steps_pti=40, w_avg_samples=500, lr_wplus=0.02, loss="lap1+msssim")


def test_projection_recovers_a_generated_image() -> None:
    """An image the tiny generator drew from a known w: W then W+ projection reconstructs it closely (the latent
    itself need not be unique; the image must be)."""
    G = make_tiny_generator()
    torch.manual_seed(3)
    with torch.no_grad():
        ws_true = G.mapping(torch.randn(1, 16), psi=0.7)
        target = synthesize_image(G, ws_true)
        start = synthesize_image(G, G.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1))
    seen: list[tuple[str, int]] = []
    ws_w, ws = project(G, target, FAST, progress=lambda stage, step, steps, loss, img: seen.append((stage, step)))
    with torch.no_grad():
        rec_w, rec = synthesize_image(G, ws_w), synthesize_image(G, ws)
    assert psnr(start, target) < psnr(rec_w, target) <= psnr(rec, target) + 0.5
    assert psnr(rec, target) > 25
    assert seen[0] == ("w", 1) and seen[-1] == ("w+", 60) and len(seen) == 120


def test_pivotal_tuning_lowers_the_loss_and_saves_an_equal_generator(tmp_path: Path) -> None:
    G = make_tiny_generator()
    other = make_tiny_generator(seed=7)
    torch.manual_seed(1)
    with torch.no_grad():
        target = synthesize_image(other, other.mapping(torch.randn(1, 16), psi=0.7))  # not in G's range
    _ws_w, ws = project(G, target, FAST)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    tuned = pivotal_tuning(G, ws, target, dataclasses.replace(FAST, lr_pti=3e-3))  # the tiny model's weights are ~1
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # the base model is untouched
    with torch.no_grad():
        assert psnr(synthesize_image(tuned, ws), target) > psnr(synthesize_image(G, ws), target) + 3
    save_native(tuned, tmp_path / "gen", {"licence": "test"})
    loaded = load_generator(tmp_path / "gen")
    with torch.no_grad():
        assert torch.equal(synthesize_image(loaded, ws), synthesize_image(tuned, ws))
    assert not any(p.requires_grad for p in tuned.parameters())


def test_stop_request_ends_the_stages_early() -> None:
    G = make_tiny_generator()
    target = torch.zeros([1, 3, 32, 32])
    calls = []
    _ws_w, ws = project(G, target, FAST, progress=lambda *a: calls.append(a[0]), should_stop=lambda: len(calls) >= 3)
    assert len(calls) == 3 and ws.shape == (1, G.num_ws, 16)


def test_bad_targets_and_configs_are_refused() -> None:
    G = make_tiny_generator()
    with pytest.raises(InvalidInputError, match=r"\[1, 3, 32, 32\]"):
        project(G, torch.zeros([1, 3, 16, 16]))
    with pytest.raises(InvalidInputError, match="steps_w"):
        InvertConfig(steps_w=0)
    with pytest.raises(InvalidInputError, match="lr_pti"):
        InvertConfig(lr_pti=float("nan"))


# -- the pipeline and the CLI -----------------------------------------------------------------------------------


def _photo_of(G: StyleGAN2Generator, path: Path, seed: int = 11) -> Path:
    """A 'photo': the generator's image of a seed, scaled up and framed in a border (so a crop must be made)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        img = to_uint8(synthesize_image(G, G.mapping(torch.randn(1, 16), psi=0.7)))[0]
    big = Image.fromarray(img).resize((96, 96), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (160, 96), (20, 20, 20))
    canvas.paste(big, (32, 0))
    canvas.save(path)
    return path


def test_invert_photo_without_alignment_reports_every_stage(tmp_path: Path) -> None:
    G = make_tiny_generator()
    photo = _photo_of(G, tmp_path / "photo.png")
    result = invert_photo(G, photo, FAST, align=False)
    r = result.report
    assert r["alignment"] == "centre crop" and r["loss"] == "lap1+msssim" and r["pti"] is True
    assert set(r["quality"]) == {"w", "w+", "pti"} and r["quality"]["pti"]["psnr_db"] > r["quality"]["w"]["psnr_db"]
    assert set(r["seconds"]) >= {"align", "w", "w+", "pti", "total"}
    out = write_outputs(result, tmp_path / "out", "tiny", "0" * 64, "1" * 64)
    cfg = json.loads((out / "generator" / "config.json").read_text())
    assert cfg["provenance"]["base_sha256"] == "0" * 64 and cfg["provenance"]["photo_sha256"] == "1" * 64
    assert cfg["provenance"]["loss"] == "lap1+msssim" and cfg["provenance"]["steps"]["steps_pti"] == 40
    assert torch.equal(torch.load(out / "latent.pt", weights_only=True), result.ws)
    assert np.array_equal(np.asarray(Image.open(out / "aligned.png")), result.aligned)


def test_cli_invert_then_drag_the_inverted_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    G = make_tiny_generator()
    ckpt = save_native(G, tmp_path / "tiny")
    photo = _photo_of(G, tmp_path / "photo.png")
    steps = ["--steps-w", "20", "--steps-wplus", "20", "--steps-pti", "10"]
    args = ["invert", str(photo), "--network", str(ckpt), "--no-align", *steps, "--outdir", str(tmp_path / "inv")]
    assert main(args) == 0
    assert "loss lap1+msssim" in capsys.readouterr().out
    report = json.loads((tmp_path / "inv" / "report.json").read_text())
    assert report["base_model"]["sha256"] and report["photo_sha256"]
    drag = ["drag", "--network", str(tmp_path / "inv" / "generator"), "--latent", str(tmp_path / "inv" / "latent.pt")]
    drag += ["--handle", "10,12", "--target", "16,14", "--lr", "0.02", "--steps", "3", "--no-video"]
    assert main([*drag, "--outdir", str(tmp_path / "drag")]) == 0
    result = json.loads((tmp_path / "drag" / "result.json").read_text())
    assert result["steps"] == 3
    first = np.asarray(Image.open(tmp_path / "inv" / "reconstruction_pti.png"))
    assert first.shape == (32, 32, 3)


def test_cli_latent_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = save_native(make_tiny_generator(), tmp_path / "tiny")
    torch.save(torch.zeros(1, 3, 16), tmp_path / "bad.pt")
    base = ["drag", "--network", str(ckpt), "--handle", "1,1", "--target", "2,2", "--no-video", "--outdir"]
    assert main([*base, str(tmp_path / "o"), "--latent", str(tmp_path / "bad.pt")]) == 2
    assert "expected a float tensor [1, 8, 16], got [1, 3, 16]" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "o"), "--latent", str(tmp_path / "missing.pt")]) == 2
    assert "no such file" in capsys.readouterr().err
    img = torch.zeros([1, 3, 8, 8])
    assert image_to_tensor(to_uint8(img)[0]).shape == (1, 3, 8, 8)


def test_cli_align_refuses_a_photo_without_a_face(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("dlib")
    from dragkit.invert.faces import find_predictor

    try:
        find_predictor()
    except Exception:
        pytest.skip("no 68-point landmark model on this machine")
    ckpt = save_native(make_tiny_generator(), tmp_path / "tiny")
    Image.fromarray(np.full((128, 128, 3), 128, dtype=np.uint8)).save(tmp_path / "flat.png")
    assert main(["invert", str(tmp_path / "flat.png"), "--network", str(ckpt), "--outdir", str(tmp_path / "o")]) == 2
    assert "no face found" in capsys.readouterr().err
