"""Video SR (issue 10): TecoGAN's BD exactly, the reference figures on Vid4 calendar, the frame-recurrent generator
(recurrence, ping-pong, constant-memory streaming), the discriminator's update rule, FRVSR -> TecoGAN, pruning,
bad clip folders, and the video metrics outside the modules."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_sr.data.degradation import gaussian_bd
from lightning_sr.data.video import VideoDataModule
from lightning_sr.errors import DataError
from lightning_sr.networks import build_generator
from lightning_sr.run import evaluate, train
from tests.conftest import ALEXNET, SHARED, SMOKE, compose, needs_alexnet

CALENDAR = SHARED / "data" / "Vid4" / "calendar"
needs_calendar = pytest.mark.skipif(not (CALENDAR / "GT").is_dir(), reason="../shared/data/Vid4/calendar not present")
TINY = {"arch": "frnet", "res_blocks": 2, "channels": 8, "scale": 4}
VSMOKE = [o for o in SMOKE if not o.startswith(("model.res_blocks", "model.channels"))] + [
    "model.res_blocks=1", "model.channels=8", "cost.latency=false", "callbacks.model_summary=null",
    "trainer.max_steps=2"]


def _randomize(g, scale: float = 0.1):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in g.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return g


# ----- BD degradation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma,size", [(1.5, (37, 41)), (0.8, (16, 24)), (2.0, (50, 33))])
def test_gaussian_bd_is_opencv_gaussianblur_bit_exact(sigma, size):
    import cv2

    img = np.random.default_rng(int(sigma * 10)).integers(0, 256, (*size, 3), dtype=np.uint8)
    want = cv2.GaussianBlur(img, (0, 0), sigma)[::4, ::4]
    got = gaussian_bd(torch.from_numpy(img).permute(2, 0, 1).double(), 4, sigma).permute(1, 2, 0).numpy()
    assert np.array_equal(got.astype(np.uint8), want)


@needs_calendar
def test_bd_of_calendar_equals_the_official_lr_frames():
    from lightning_sr.ops.image_io import read_rgb

    for name in ("00000000", "00000020", "00000040"):
        gt = torch.from_numpy(read_rgb(CALENDAR / "GT" / f"{name}.png")).permute(2, 0, 1).double()
        lr = gaussian_bd(gt, 4, 1.5).permute(1, 2, 0).numpy().astype(np.uint8)
        assert np.array_equal(lr, read_rgb(CALENDAR / "LR_BD_x4" / f"{name}.png"))


@pytest.mark.slow
@needs_calendar
@needs_alexnet
def test_calendar_bicubic_reference_figures(tmp_path):
    """evaluate.py model=bicubic data=vid4 on calendar: TecoGAN's metric definitions give the reference figures."""
    m = evaluate(compose(["model=bicubic", "scale=4", "data=vid4", f"data.root={CALENDAR.parent}",
                          "metrics.lpips.enabled=true", f"metrics.lpips.backbone_path={ALEXNET}", "cost.latency=false"],
                         tmp_path, "evaluate"))
    assert m["psnr"] == pytest.approx(19.091, abs=0.02)
    assert m["lpips"] == pytest.approx(0.5875, abs=0.002)
    assert m["tof"] == pytest.approx(0.5477, abs=0.005)
    assert m["tlp"] == pytest.approx(2.766, abs=0.05)
    cal = m["sets"]["Vid4"]
    assert cal["frames"] == 37 and cal["clips"] == 1 and set(cal["per_clip"]) == {"calendar"}
    rows = (tmp_path / "per_frame.csv").read_text().splitlines()
    assert len(rows) == 1 + 37 and rows[1].startswith("Vid4,,calendar/00000002,")


# ----- the generator --------------------------------------------------------------------------------------------
def test_recurrence_first_frame_and_streaming_equal_the_training_forward():
    g = _randomize(build_generator(TINY)).eval()
    lr = torch.rand(1, 5, 3, 12, 10)
    with torch.no_grad():
        seq = g.forward_sequence(lr)
    assert seq["hr"].shape == (1, 5, 3, 48, 40) and seq["lr_flow"].shape == (4, 2, 12, 10)
    # the first frame gets a zero previous output
    first = g.srnet(lr[:, 0], torch.zeros(1, 48, 12, 10))
    torch.testing.assert_close(seq["hr"][:, 0], first)
    # recurrent: frame 0 reaches the later outputs through the warped previous output
    other = lr.clone()
    other[:, 0] += 0.3
    with torch.no_grad():
        changed = g.forward_sequence(other)["hr"]
    assert (changed[:, 1] - seq["hr"][:, 1]).abs().max() > 1e-3
    assert (changed[:, 2] - seq["hr"][:, 2]).abs().max() > 1e-5
    later = lr.clone()
    later[:, 4] += 0.3  # a later frame never changes an earlier output
    with torch.no_grad():
        assert torch.equal(g.forward_sequence(later)["hr"][:, :4], seq["hr"][:, :4])
    # streaming inference gives the same frames (batched and frame-wise convolutions differ in float rounding)
    streamed = torch.stack(list(g.infer_sequence(lr[:, i] for i in range(5))), dim=1)
    assert float((streamed - seq["hr"]).abs().max() / seq["hr"].abs().max()) < 1e-3


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="needs Linux's /proc/self/statm for the RSS")
def test_streaming_inference_holds_constant_memory():
    """infer_sequence pulls one frame at a time and keeps no growing state: over a 300-frame clip the process's
    resident memory and the live tensors stay flat after warm-up (an autograd graph kept across frames, or a history
    of outputs, grows by about 1 MB a frame here)."""
    import gc
    import os

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def storage(t: torch.Tensor):
        try:
            return t.untyped_storage()
        except (NotImplementedError, RuntimeError):  # opaque tensors (e.g. oneDNN's, left by an earlier test)
            return None

    def live_tensor_mb() -> float:
        gc.collect()
        storages = {id(st): st.nbytes() for t in gc.get_objects() if isinstance(t, torch.Tensor)
                    for st in [storage(t)] if st is not None}
        return sum(storages.values()) / 2 ** 20

    g = _randomize(build_generator(TINY)).eval()
    pulled = []

    def frames():
        for i in range(300):
            pulled.append(i)
            yield torch.rand(1, 3, 32, 32)

    rss, live = {}, {}
    for i, out in enumerate(g.infer_sequence(frames())):
        assert len(pulled) == i + 1 and out.shape == (1, 3, 128, 128)  # lazily: one frame in, one frame out
        del out
        if i in (50, 299):
            rss[i], live[i] = rss_mb(), live_tensor_mb()
    assert live[299] - live[50] < 0.5, live
    assert rss[299] - rss[50] < 40, rss


def test_pingpong_plays_the_clip_forward_then_backward_and_compares_the_two_passes():
    from lightning_sr.lit_modules.video import pingpong, pingpong_loss

    clip = torch.arange(4.0).view(1, 4, 1, 1, 1)
    assert pingpong(clip).flatten().tolist() == [0, 1, 2, 3, 2, 1, 0]
    g = _randomize(build_generator(TINY)).eval()
    lr = torch.rand(1, 4, 3, 8, 8)
    with torch.no_grad():
        sr = g.forward_sequence(pingpong(lr))["hr"]
    # output k (forward) and output 6 - k (backward) show the same frame; a recurrent model differs a little
    assert pingpong_loss(sr, 4) == pytest.approx(
        float(torch.sqrt((sr[:, :3] - sr[:, 4:].flip(1)) ** 2 + 1e-6).mean()))
    assert sr.shape[1] == 7 and float(pingpong_loss(sr, 4)) > 1e-3


# ----- training: FRVSR -> TecoGAN, the discriminator rule, block pruning ---------------------------------------
@pytest.fixture(scope="module")
def frvsr_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("frvsr")
    mp = pytest.MonkeyPatch()
    mp.setenv("LSR_CACHE", str(tmp_path_factory.getbasetemp() / "lsr_cache"))
    try:
        m = train(compose(VSMOKE + ["model=frvsr", "data=embedded_video", "model.res_blocks=2"], out))
    finally:
        mp.undo()
    return m


def test_frvsr_trains_and_reports_video_metrics(frvsr_ckpt):
    m = frvsr_ckpt
    assert m["status"] == "finished" and m["global_step"] == 2 and m["generator"]["arch"] == "frnet"
    main = m["sets"]["embedded_video"]
    assert {"psnr", "ssim", "tof", "frames", "clips", "clip_avg", "per_clip"} <= set(main)
    assert main["clips"] == 2 and main["frames"] == 2 * (12 - 4)
    assert "tof" in main and "tof" in m["bicubic"]["embedded_video"]  # the value: test_evaluate_writes_frames_*


@pytest.mark.parametrize("threshold,updates", [(-1e9, False), (1e9, True)])
def test_tecogan_from_frvsr_and_the_discriminator_update_rule(frvsr_ckpt, tmp_path, threshold, updates):
    """The GAN stage starts from the FRVSR weights; D is updated only while it is not too strong (a threshold
    nothing reaches: never; one everything reaches: always), and its skipped steps still count."""
    from lightning_sr.checkpoint import generator_state, read_checkpoint
    from tests.helpers import GanStepProbe

    over = VSMOKE + ["model=tecogan", "data=embedded_video", f"model.init_from={frvsr_ckpt['last_ckpt']}",
                     "model.discriminator.channels=8", f"model.discriminator.update_threshold={threshold}",
                     "model.res_blocks=2", "trainer.max_steps=4", "+callbacks.probe._target_=tests.helpers.GanStepProbe"]
    m = train(compose(over, tmp_path / "run"))
    probe = GanStepProbe.last
    init = generator_state(read_checkpoint(frvsr_ckpt["last_ckpt"]))
    assert all(torch.equal(v, init[k]) for k, v in probe.start["generator"].items())
    assert m["global_step"] == 4 and m["batches"] == 2  # generator + discriminator step per batch
    d1 = {k[len("discriminator."):]: v for k, v in read_checkpoint(m["last_ckpt"])["state_dict"].items()
          if k.startswith("discriminator.")}
    changed = any(not torch.equal(probe.start["discriminator"][k], v) for k, v in d1.items()
                  if "running" not in k and "num_batches" not in k)
    assert changed == updates
    assert [s["which"] for s in probe.steps] == ["generator", "discriminator"] * 2
    assert all(s["discriminator_has_grad"] == updates for s in probe.steps if s["which"] == "discriminator")


def test_block_pruned_srnet_reloads_weights_only(frvsr_ckpt, tmp_path):
    from lightning_sr.checkpoint import load_generator

    m = train(compose(VSMOKE + ["model=frvsr", "data=embedded_video", f"model.init_from={frvsr_ckpt['last_ckpt']}",
                                "model.res_blocks=2", "compression=[block_prune,channel_prune]",
                                "compression.block_prune.keep=1", "compression.channel_prune.ratio=0.5"], tmp_path))
    g, spec = load_generator(m["last_ckpt"])  # weights_only=True inside
    assert spec["res_blocks"] == 1 and len(g.srnet.body) == 1
    assert g.srnet.body[0].conv1.out_channels == 4 and g.srnet.upsampler[0].out_channels == 4
    assert g.fnet.encoder[0].out_channels == 32  # FNet left intact
    assert m["params"] < frvsr_ckpt["params"]


# ----- evaluate: outputs and strip ------------------------------------------------------------------------------
def test_evaluate_writes_frames_and_a_strip(frvsr_ckpt, tmp_path):
    m = evaluate(compose([f"ckpt_path={frvsr_ckpt['last_ckpt']}", "data=embedded_video", "save_outputs=true",
                          "cost.latency=false", "progress_bar=false"], tmp_path, "evaluate"))
    assert m["psnr"] == pytest.approx(frvsr_ckpt["psnr"], abs=1e-6)  # streaming eval = training validation
    frames = sorted((tmp_path / "outputs" / "astronaut_0").glob("*.png"))
    assert len(frames) == 12 and Image.open(frames[0]).size == (128, 128)
    strip = sorted((tmp_path / "strip" / "astronaut_0").glob("*.png"))
    assert len(strip) == 12 and Image.open(strip[0]).size == (3 * 128, 128)
    # tOF recomputed from the written frames as TecoGAN's metric code does it (cv2 Farneback on grey frames, the
    # flow difference cropped to the centre 96x96 of a 128x128 frame, frames 3..n-3 of the clip)
    import cv2

    from lightning_sr.data.embedded_video import materialize_clips

    gts = sorted((materialize_clips()["val"] / "astronaut_0").glob("*.png"))
    g = lambda f: cv2.cvtColor(np.asarray(Image.open(f).convert("RGB")), cv2.COLOR_RGB2GRAY)  # noqa: E731
    flow = lambda a, b: cv2.calcOpticalFlowFarneback(g(a), g(b), None, 0.5, 3, 15, 3, 5, 1.2, 0)  # noqa: E731
    tofs = [np.sqrt(((flow(gts[i - 1], gts[i]) - flow(frames[i - 1], frames[i]))[16:112, 16:112]
                     .astype(np.float64) ** 2).sum(-1)).mean() for i in range(3, 10)]
    clip = m["sets"]["embedded_video"]["per_clip"]["astronaut_0"]
    assert clip["tof"] == pytest.approx(float(np.mean(tofs)), rel=1e-9) and clip["tof"] > 0.01


# ----- bad clip folders -----------------------------------------------------------------------------------------
def _clip(folder, n, size=(32, 32), names=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        name = names[i] if names else f"{i:04d}.png"
        h, w = size(i) if callable(size) else size
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)


def _video_cfg(root, **kw):
    from omegaconf import OmegaConf

    base = dict(kind="folders", name="v", train_root=str(root), val_root=str(root), n_frames=4, patch_size=16,
                batch_size=1, iters_per_epoch=2, num_workers=0, degradation="gaussian", blur_sigma=1.5)
    base.update(kw)
    return OmegaConf.create(base)


def test_short_clips_are_skipped_with_a_count_and_an_error_when_none_is_left(tmp_path, caplog):
    _clip(tmp_path / "a", 6)
    _clip(tmp_path / "b", 2)
    dm = VideoDataModule(_video_cfg(tmp_path), 4)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert [c.name for c in dm.train_set.clips] == ["a"] and "skipped 1 of 2 clips shorter" in caplog.text
    with pytest.raises(DataError, match="none of the 2 clips has data.n_frames=10"):
        VideoDataModule(_video_cfg(tmp_path, n_frames=10), 4).setup("fit")


@pytest.mark.parametrize("case,match", [
    ("sizes", "clip 'a'.*mixes frame sizes"),
    ("empty", "holds no frames.*remove the empty clip folder"),
    ("lr_count", "3 LR frames.*but 6 ground-truth frames"),
])
def test_bad_clip_folders_are_one_line_errors(tmp_path, case, match):
    kw = {}
    if case == "sizes":
        _clip(tmp_path / "v" / "a", 6, size=lambda i: (32, 32) if i else (36, 32))
    elif case == "empty":
        _clip(tmp_path / "v" / "a", 6)
        (tmp_path / "v" / "b").mkdir()
    else:
        _clip(tmp_path / "v" / "a", 6)
        _clip(tmp_path / "lr" / "a", 3, size=(8, 8))
        kw["lr_root"] = str(tmp_path / "lr")
    with pytest.raises(DataError, match=match) as e:
        VideoDataModule(_video_cfg(tmp_path / "v", **kw), 4).setup("fit")
    assert "\n" not in str(e.value)


def test_non_numeric_frame_names_warn_and_numeric_ones_sort_by_number(tmp_path, caplog):
    from lightning_sr.data.frames import list_frames

    _clip(tmp_path / "n", 3, names=["frame2.png", "frame10.png", "frame1.png"])
    assert [f.name for f in list_frames(tmp_path / "n", "clip")] == ["frame1.png", "frame2.png", "frame10.png"]
    _clip(tmp_path / "w", 2, names=["left.png", "right.png"])
    with caplog.at_level(logging.WARNING):
        list_frames(tmp_path / "w", "clip")
    assert "may not be time order" in caplog.text


def test_video_metrics_object_outside_the_modules():
    from lightning_sr.metrics import VideoMetrics, centre_crop_box

    assert centre_crop_box(576, 720) == (16, 8, 544, 704)
    gt = torch.rand(8, 3, 64, 64)
    m = VideoMetrics()
    m.update(gt.clone(), gt)
    r = m.compute()
    assert r["psnr"] > 90 and r["tof"] == pytest.approx(0.0, abs=1e-6) and r["ssim"] == pytest.approx(1.0)
    m2 = VideoMetrics()
    m2.update((gt + 0.05).clamp(0, 1), gt)
    assert m2.compute()["psnr"] < 40
    _ = json.dumps(r)


# ----- the table, DDP, and the embedded default ------------------------------------------------------------------
@pytest.mark.matrix  # make test-matrix (the full path matrix): the matrix's tecogan row runs block pruning in a multirun through the report
@pytest.mark.slow
def test_tecogan_block_pruning_smoke_sweep_with_report(tmp_path):
    from tests.conftest import run_cli

    sweep = tmp_path / "sweep"
    run_cli("train.py", ["-m", "experiment=tecogan_block_pruning", "profile=smoke", "model.channels=8",
                         "model.discriminator.channels=8", "trainer.max_steps=2", "callbacks.progress_bar.refresh_rate=0",
                         "callbacks.model_summary=null", "cost.latency=false", "metrics.lpips.enabled=false",
                         f"hydra.sweep.dir={sweep}"], timeout=570)
    jobs = [json.loads((sweep / str(j) / "metrics.json").read_text()) for j in range(5)]
    assert [m["generator"]["res_blocks"] for m in jobs] == [10, 7, 5, 3, 1]
    assert all(m["status"] == "finished" and "tof" in m for m in jobs)
    assert jobs[0]["params"] > jobs[-1]["params"]
    md = (sweep / "report.md").read_text()
    assert md.count("| measured | finished |") == 5 and md.count("**published**") == 5
    assert "tOF" in md and "001_7e75d2e60180182f.txt" in md


@pytest.mark.slow
@pytest.mark.solo  # timed: nothing else may run beside it
@pytest.mark.long  # 4 minutes: `make test-long` (the README figure); make test covers the path with test_frvsr_trains_*
def test_python_train_py_frvsr_embedded_video_beats_bicubic_within_five_minutes(tmp_path):
    import os
    import time

    from tests.conftest import run_cli

    t0 = time.perf_counter()
    run_cli("train.py", ["model=frvsr", "data=embedded_video", f"hydra.run.dir={tmp_path}"], timeout=420,
            env={"OMP_NUM_THREADS": str(os.cpu_count())})
    wall = time.perf_counter() - t0
    m = json.loads((tmp_path / "metrics.json").read_text())
    bic = m["bicubic"]["embedded_video"]["psnr"]
    print(f"frvsr on embedded video: {wall:.0f} s, PSNR {m['psnr']:.2f} dB vs bicubic {bic:.2f} dB "
          f"(+{m['psnr'] - bic:.2f} dB), tOF {m['tof']:.3f} vs {m['bicubic']['embedded_video']['tof']:.3f}")
    assert wall < 300, f"took {wall:.0f} s"
    assert m["psnr"] - bic >= 0.3


@pytest.mark.parametrize("kind", ["gaussian", "bd", "bicubic"])
def test_augmented_training_clips_stay_aligned_with_their_lr(kind):
    """Flips of training clips, for every degradation: the degradation of every augmented HR patch is its LR patch
    (interior; BD at x4 and TecoGAN's corner-aligned BD move the HR crop, bicubic is symmetric)."""
    from lightning_sr.data.degradation import degrade, flip_shift
    from lightning_sr.data.video import Clip, TrainClipDataset, clip_flip_shift

    sigma = 1.5 if kind == "gaussian" else 1.6
    hr = (torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255).round()
    lr = degrade(hr.double(), 4, kind, sigma).round().clamp(0, 255)
    assert clip_flip_shift({"degradation": kind}, 4) == flip_shift(kind, 4)
    ds = TrainClipDataset([Clip("a", [hr.byte()] * 4, [lr.byte()] * 4, ["0"] * 4)], 4, 32, 3, 40, True, 0,
                          flip_shift(kind, 4))
    flips = 0
    for i in range(40):
        x = ds[i]
        for t in range(3):
            ref = degrade((x["hr"][t] * 255).round().double(), 4, kind, sigma)
            got = (x["lr"][t] * 255).round().double()
            assert float((ref - got)[:, 2:-2, 2:-2].abs().max()) <= 0.5 + 1e-6  # borders: the kernels' padding
        flips += int(not torch.equal(x["lr"][0], lr.byte()[:, :8, :8].float() / 255))
    assert flips > 0


def test_the_recurrent_generator_learns_a_batch():
    """Gradients reach every part (no dead ReLUs from the initialisation): a batch is fitted quickly."""
    from lightning_sr.losses import charbonnier_loss
    from lightning_sr.ops.imresize import bicubic_upscale

    torch.manual_seed(0)
    g = build_generator({**TINY, "channels": 16})
    lr = torch.rand(2, 3, 3, 8, 8)
    hr = (1.0 - bicubic_upscale(lr.flatten(0, 1), 4)).view(2, 3, 3, 32, 32)  # a target the skip alone cannot give
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    first = None
    for _ in range(60):
        loss = charbonnier_loss(g.forward_sequence(lr)["hr"], hr)
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.9 * first
    assert all(p.grad is not None for n, p in g.named_parameters() if n.startswith("srnet"))


# ----- issue 18: TecoGAN's warm-up, the tLP cache key, video model x image data ----------------------------------
def _smooth_clip(hr_root, lr_root, name, n, seed=0, hr=64):
    """A clip of ``n`` moving smooth frames (HR ``hr`` px) and its LR frames (every 4th pixel) in two folders."""
    from lightning_sr.ops.image_io import write_rgb

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:hr, 0:hr]
    phase = rng.random(3) * 6
    for i in range(n):
        img = np.stack([np.sin((xx + 2 * i) / (5 + c) + phase[c]) * 90 + 128 + 0 * yy for c in range(3)], -1)
        img = (img + np.cos((yy - i) / 7)[..., None] * 30).clip(0, 255).astype(np.uint8)
        write_rgb(hr_root / name / f"{i:04d}.png", img)
        write_rgb(lr_root / name / f"{i:04d}.png", np.ascontiguousarray(img[::4, ::4]))


def _random_frnet_ckpt(path):
    from tests.compression_helpers import save_ckpt

    g = _randomize(build_generator(TINY), 0.14).eval()  # a state that lasts a few frames
    return g, save_ckpt(g, TINY, path)


def _by_hand(gen, lr_dir, order, keep_from):
    """The recurrent step run by hand over the LR frames in ``order``; 8-bit outputs from position ``keep_from``."""
    from lightning_sr.data.frames import list_frames
    from lightning_sr.inference import to_uint8
    from lightning_sr.ops.image_io import read_rgb

    lr = [torch.from_numpy(read_rgb(f)).permute(2, 0, 1)[None].float() / 255 for f in list_frames(lr_dir, "clip")]
    outs, lr_prev, hr_prev = [], None, None
    with torch.no_grad():
        for j, i in enumerate(order):
            if hr_prev is None:
                lr_prev, hr_prev = lr[i], lr[i].new_zeros(1, 3, lr[i].shape[-2] * 4, lr[i].shape[-1] * 4)
            hr_prev, _ = gen.step(lr[i], lr_prev, hr_prev)
            lr_prev = lr[i]
            if j >= keep_from:
                outs.append(to_uint8(hr_prev[0]))
    return outs


def _pngs(folder):
    from lightning_sr.ops.image_io import read_rgb

    return [read_rgb(f) for f in sorted(folder.glob("*.png"))]


def test_evaluation_and_upscale_warm_up_as_tecogan_and_zero_is_the_cold_start(tmp_path):
    """evaluate.py runs a recurrent model over frames [5, 4, 3, 2, 1, 0, 1, ..., N-1] and scores the outputs from
    position 5 on (TecoGAN's inference), by default; val.warmup_frames=0 is the cold start (zero state at frame 0);
    lsr-upscale of the LR frame folder writes the same frames with the same warm-up."""
    from lightning_sr.upscale import upscale

    n = 8
    _smooth_clip(tmp_path / "hr", tmp_path / "lr", "clip", n)
    gen, ckpt = _random_frnet_ckpt(tmp_path / "fr.ckpt")
    warm_ref = _by_hand(gen, tmp_path / "lr" / "clip", [5, 4, 3, 2, 1, *range(n)], 5)
    cold_ref = _by_hand(gen, tmp_path / "lr" / "clip", list(range(n)), 0)
    assert any(not np.array_equal(a, b) for a, b in zip(warm_ref, cold_ref, strict=True))  # the state matters
    runs = {}
    for w in ("default", 0, 5):
        out = tmp_path / f"eval_{w}"
        over = [f"ckpt_path={ckpt}", "data=vid4", f"data.root={tmp_path / 'hr'}", f"data.lr_root={tmp_path / 'lr'}",
                "save_outputs=true", "cost.latency=false", "progress_bar=false"]
        runs[w] = (evaluate(compose(over + ([] if w == "default" else [f"val.warmup_frames={w}"]), out, "evaluate")),
                   _pngs(out / "outputs" / "clip"))
    for got, want in ((runs["default"][1], warm_ref), (runs[5][1], warm_ref), (runs[0][1], cold_ref)):
        assert len(got) == n and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert runs["default"][0]["psnr"] == runs[5][0]["psnr"] != runs[0][0]["psnr"]
    # lsr-upscale: the same frames as evaluation, warm by default, cold with warmup=0
    upscale(ckpt, tmp_path / "lr" / "clip", tmp_path / "up_warm", progress=False)
    upscale(ckpt, tmp_path / "lr" / "clip", tmp_path / "up_cold", progress=False, warmup=0)
    for got, want in ((_pngs(tmp_path / "up_warm"), runs[5][1]), (_pngs(tmp_path / "up_cold"), runs[0][1])):
        assert len(got) == n and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    # a clip shorter than the warm-up is preceded by what it has: frames 2, 1 for 3 frames (TecoGAN's frames[5:0:-1])
    _smooth_clip(tmp_path / "hr3", tmp_path / "lr3", "short", 3, seed=1)
    upscale(ckpt, tmp_path / "lr3" / "short", tmp_path / "up_short", progress=False)
    want = _by_hand(gen, tmp_path / "lr3" / "short", [2, 1, 0, 1, 2], 2)
    assert all(np.array_equal(a, b) for a, b in zip(_pngs(tmp_path / "up_short"), want, strict=True))


def test_warm_up_streams_with_a_bounded_buffer():
    """With the warm-up, streaming holds at most warmup + 1 LR frames ahead: output j needs max(6, j + 1) frames."""
    from lightning_sr.inference import stream_frames

    g = _randomize(build_generator(TINY)).eval()
    pulled = []

    def frames():
        for i in range(40):
            pulled.append(i)
            yield torch.rand(1, 3, 8, 8)

    n_out = 0
    for j, _ in enumerate(stream_frames(g, frames(), 4, warmup=5)):
        assert len(pulled) == max(6, j + 1)
        n_out += 1
    assert n_out == 40


@pytest.mark.parametrize("value", ["-1", "two"])
def test_bad_warmup_is_one_line(tmp_path, value):
    from lightning_sr.config import validate_config
    from lightning_sr.errors import ConfigError
    from lightning_sr.upscale import upscale

    with pytest.raises(ConfigError, match="val.warmup_frames=.* is impossible; use 0 .cold start"):
        validate_config(compose(["model=frvsr", f"val.warmup_frames={value}"]))
    with pytest.raises(ConfigError, match="warmup=.* is impossible; use 0 .cold start"):
        upscale(tmp_path / "none.ckpt", tmp_path, warmup=value, progress=False)


@needs_alexnet
def test_tlp_ground_truth_cache_is_keyed_by_the_clip_folder(tmp_path):
    """Two sets with a clip of the same name and size but other content (REDS val and REDS4): each set's tLP is
    the one it gets when evaluated alone (the cached LPIPS(gt_{i-1}, gt_i) of one is never used for the other)."""
    _smooth_clip(tmp_path / "a", tmp_path / "lr_a", "000", 6, seed=1)
    _smooth_clip(tmp_path / "b", tmp_path / "lr_b", "000", 6, seed=2)
    base = ["model=bicubic", "scale=4", "data=vid4", "metrics.lpips.enabled=true",
            f"metrics.lpips.backbone_path={ALEXNET}", "cost.latency=false", "progress_bar=false"]
    both = evaluate(compose(base + [f"data.root={tmp_path / 'b'}", "data.test_name=setB",
                                    f"data.val_root={tmp_path / 'a'}", "data.val_name=setA"], tmp_path / "ab",
                            "evaluate"))
    alone = {s: evaluate(compose(base + [f"data.root={tmp_path / d}", f"data.test_name={s}"], tmp_path / s,
                                 "evaluate"))["sets"][s]["tlp"] for s, d in (("setA", "a"), ("setB", "b"))}
    assert alone["setA"] != pytest.approx(alone["setB"], abs=1e-3)  # the two clips really differ
    assert both["sets"]["setA"]["tlp"] == pytest.approx(alone["setA"], abs=1e-6)
    assert both["sets"]["setB"]["tlp"] == pytest.approx(alone["setB"], abs=1e-6)


def test_video_and_image_data_presets_are_the_ones_the_check_names():
    """The presets named by the model/data check are the conf/data presets of each kind (a training set each)."""
    from lightning_sr.config import IMAGE_TRAIN_DATA, VIDEO_TRAIN_DATA, is_video_data
    from tests.conftest import CONF

    kinds = {p.stem: is_video_data(compose([f"data={p.stem}"]).data) for p in (CONF / "data").glob("*.yaml")
             if p.stem not in ("cifar10", "vid4", "benchmark")}  # classification; evaluation-only sets
    assert sorted(k for k, v in kinds.items() if v) == sorted(VIDEO_TRAIN_DATA)
    assert sorted(k for k, v in kinds.items() if not v) == sorted(IMAGE_TRAIN_DATA)


@pytest.mark.parametrize("model,data,needle", [
    ("tecogan", "embedded", "is a video model but data=embedded holds images; use a video data preset: "
                            "data=embedded_video, data=reds, data=video_folder"),
    ("srresnet", "embedded_video", "is an image model but data=embedded_video holds video clips; use an image data "
                                   "preset: data=embedded, data=div2k, data=folder"),
])
def test_video_model_on_image_data_or_the_reverse_is_one_line_before_training(tmp_path, capsys, model, data,
                                                                              needle):
    from tests.conftest import run_task_in_process

    code, err = run_task_in_process(VSMOKE + [f"model={model}", f"data={data}"], tmp_path, capsys)
    lines = [ln for ln in err if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "checkpoints").exists()


def test_python_train_py_model_tecogan_profile_smoke_trains_on_video_by_default(tmp_path):
    """The natural command: model=tecogan brings data=embedded_video (data=... on the command line still wins, and
    a mismatch is the one line above, from the real entry point, without a traceback)."""
    from tests.conftest import run_cli

    tiny = ["model.res_blocks=1", "model.channels=8", "model.discriminator.channels=8", "trainer.max_steps=2",
            "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null", "cost.latency=false"]
    run_cli("train.py", ["model=tecogan", "profile=smoke", *tiny, f"hydra.run.dir={tmp_path / 'ok'}"], timeout=600)
    m = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    assert m["status"] == "finished" and m["generator"]["arch"] == "frnet" and "embedded_video" in m["sets"]
    assert compose(["model=frvsr", "data=reds"]).data.name == "reds"
    p = run_cli("train.py", ["model=tecogan", "data=embedded", "profile=smoke", *tiny,
                             f"hydra.run.dir={tmp_path / 'bad'}"], check=False, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(lines) == 1, p.stderr[-2000:]
    assert lines[0] == ("error: model=tecogan is a video model but data=embedded holds images; use a video data "
                        "preset: data=embedded_video, data=reds, data=video_folder")
