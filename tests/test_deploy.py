"""From checkpoint to use: ``lsr-upscale`` writes what ``evaluate.py`` scores, bit for bit; exported files (ONNX,
TorchScript, ExportedProgram) compute what PyTorch computes and carry the spec; bad input is one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_sr.errors import ConfigError, DataError, WeightsError
from lightning_sr.export import ExportCheckError, check_export, export_format, export_model, read_metadata
from lightning_sr.ops.image_io import read_rgb, write_rgb
from lightning_sr.upscale import main as upscale_main
from lightning_sr.upscale import upscale
from tests.compression_helpers import SPEC, save_ckpt, tiny_generator, write_tiny_images
from tests.conftest import ROOT, compose

TINY = {**SPEC, "res_blocks": 1}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_ckpt(tiny_generator(**TINY), TINY, tmp_path_factory.mktemp("deploy") / "tiny.ckpt")


def test_upscale_writes_what_evaluate_scores_tiled_and_whole(tmp_path, tiny_ckpt):
    """evaluate.py save_outputs=true (tiled, val.tile=16) writes the SR PNGs it scored beside per_image.csv;
    lsr-upscale on the same LR images with the same tiles writes the same bytes; whole images differ from tiles
    only at the seams (so the tile setting really reaches both)."""
    from lightning_sr.config import build_datamodule
    from lightning_sr.run import evaluate

    hr = write_tiny_images(tmp_path / "hr", n=2, size=96)
    cfg = compose([f"ckpt_path={tiny_ckpt}", "data=folder", "data.kind=folders", "data.name=tiny",
                   f"data.hr_dir={hr}", f"data.val_hr_dir={hr}", "data.val_split=0", "cost.latency=false",
                   "save_outputs=true", "val.tile=16", "val.tile_overlap=4", "progress_bar=false"],
                  tmp_path / "ev", "evaluate")
    ev = evaluate(cfg)
    run_dir = next(p.parent for p in (tmp_path / "ev").rglob("per_image.csv"))
    saved = sorted((run_dir / "outputs").rglob("*.png"))
    assert len(saved) == 2, saved
    dm = build_datamodule(cfg, seed=0)
    dm.setup("test")
    (ds,) = dm.eval_sets
    lr_dir = tmp_path / "lr"
    for p in ds.pairs:  # the LR images evaluate.py fed the model (uint8, as the dataset holds them)
        write_rgb(lr_dir / f"{p.name}.png", p.lr.permute(1, 2, 0).numpy())
    res = upscale(tiny_ckpt, lr_dir, tmp_path / "up", tile=16, tile_overlap=4, progress=False)
    assert res["count"] == 2 and res["tile"] == [16]
    for f in saved:
        mine = read_rgb(tmp_path / "up" / f.name)
        assert mine.shape == (96, 96, 3)
        assert np.array_equal(mine, read_rgb(f)), f.name
    whole = upscale(tiny_ckpt, lr_dir / saved[0].name, tmp_path / "whole.png", tile=0, progress=False)
    diff = read_rgb(whole["output"]).astype(int) - read_rgb(saved[0]).astype(int)
    assert np.abs(diff).max() > 0  # overlap 4 px < the receptive field: seams show
    assert ev["sets"], ev


def test_upscale_reads_16bit_gray_and_rgba_as_training_does(tmp_path, tiny_ckpt):
    import cv2

    rng = np.random.default_rng(0)
    gray16 = (rng.random((12, 10)) * 65535).astype(np.uint16)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "g16.png"), gray16)
    rgba = (rng.random((12, 10, 4)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in" / "rgba.png"), rgba)
    res = upscale(tiny_ckpt, tmp_path / "in", tmp_path / "out", progress=False)
    up = {p.name: read_rgb(p) for p in res["outputs"]}
    assert {k: v.shape for k, v in up.items()} == {"g16.png": (48, 40, 3), "rgba.png": (48, 40, 3)}
    # the same numbers as the 8-bit RGB image read_rgb makes of it
    ref = upscale(tiny_ckpt, _as_png(tmp_path / "g8.png", read_rgb(tmp_path / "in" / "g16.png")), tmp_path / "r.png",
                  progress=False)
    assert np.array_equal(read_rgb(ref["output"]), up["g16.png"])


def _as_png(path, arr):
    write_rgb(path, arr)
    return path


def test_upscale_streams_a_video_model_over_frames_and_a_video_file(tmp_path):
    """A frame-recurrent model keeps its state across a frame folder (= its infer_sequence), and reads an mp4."""
    import cv2

    from lightning_sr.inference import to_uint8
    from lightning_sr.networks import build_generator

    spec = {"arch": "frnet", "res_blocks": 1, "channels": 8, "scale": 4}
    torch.manual_seed(0)
    gen = build_generator(spec).eval()
    ckpt = save_ckpt(gen, spec, tmp_path / "fr.ckpt")
    rng = np.random.default_rng(1)
    base = (rng.random((16, 20, 3)) * 255).astype(np.uint8)
    frames = [np.roll(base, i, axis=1) for i in range(3)]
    for i, f in enumerate(frames):
        write_rgb(tmp_path / "clip" / f"{i + 1:04d}.png", f)
    res = upscale(ckpt, tmp_path / "clip", tmp_path / "sr", progress=False, warmup=0)  # cold start: infer_sequence
    assert res["kind"] == "frames" and res["count"] == 3
    with torch.no_grad():
        ref = [to_uint8(o[0]) for o in gen.infer_sequence(
            torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in frames)]
    for i, r in enumerate(ref):
        assert np.array_equal(read_rgb(tmp_path / "sr" / f"{i + 1:04d}.png"), r)
    assert not np.array_equal(ref[1], ref[2])
    vw = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (20, 16))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    vid = upscale(ckpt, tmp_path / "clip.mp4", tmp_path / "vid", progress=False)
    assert vid["kind"] == "video" and vid["count"] == 3
    assert read_rgb(vid["outputs"][0]).shape == (64, 80, 3)


def test_export_onnx_torchscript_program_checked_and_spec_in_metadata(tmp_path, tiny_ckpt):
    """Each format is written, reloaded in its runtime and compared (random + real image) within 1e-4; the spec and
    the opset travel in the file; the .pt2 upscales like the checkpoint; a differing model fails the check."""
    outs = {}
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt"), ("exported_program", ".pt2")):
        res = export_format(tiny_ckpt, fmt, tmp_path / f"m{suffix}")
        assert set(res["errors"]) == {"random", "real"} and max(res["errors"].values()) <= 1e-4
        meta = read_metadata(res["out"])
        assert meta["lsr_arch"] == TINY and meta["lsr_export"]["inputs"] == ["lr"]
        outs[fmt] = res["out"]
    assert read_metadata(outs["onnx"])["lsr_export"]["opset"] == 18
    # dynamic height and width: onnxruntime runs a size it was not exported at
    import onnxruntime as ort

    sess = ort.InferenceSession(str(outs["onnx"]), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"lr": np.random.rand(1, 3, 7, 31).astype(np.float32)})[0].shape == (1, 3, 28, 124)
    # the check can fail: the file against another model
    other, _, names = export_model(save_ckpt(tiny_generator(seed=5, **TINY), TINY, tmp_path / "other.ckpt"))
    with pytest.raises(ExportCheckError, match="differs from PyTorch"):
        check_export(outs["onnx"], "onnx", other, names, 4)
    # the .pt2 is a model file lsr-upscale reads (same image as the checkpoint's, within one 8-bit level)
    write_tiny_images(tmp_path / "img", n=1, size=24)
    a = read_rgb(upscale(outs["exported_program"], tmp_path / "img" / "im0.png", tmp_path / "a.png",
                         progress=False)["output"])
    b = read_rgb(upscale(tiny_ckpt, tmp_path / "img" / "im0.png", tmp_path / "b.png", progress=False)["output"])
    assert np.abs(a.astype(int) - b).max() <= 1
    # an exported program (e.g. the int8 artefact) passes through format=exported_program; ONNX says why not
    res = export_format(outs["exported_program"], "exported_program", tmp_path / "again.pt2")
    assert read_metadata(res["out"])["lsr_arch"] == TINY and max(res["errors"].values()) == 0
    with pytest.raises(ConfigError, match="format=onnx cannot be made from it; use format=exported_program"):
        export_format(outs["exported_program"], "onnx", tmp_path / "x.onnx")


def test_export_video_step_checked(tmp_path):
    """The video model exports its recurrent step (3 inputs), checked over two frames."""
    spec = {"arch": "frnet", "res_blocks": 1, "channels": 8, "scale": 4}
    torch.manual_seed(0)
    from lightning_sr.networks import build_generator

    ckpt = save_ckpt(build_generator(spec).eval(), spec, tmp_path / "fr.ckpt")
    res = export_format(ckpt, "torchscript", tmp_path / "fr.pt")
    assert res["meta"]["inputs"] == ["lr_curr", "lr_prev", "hr_prev"] and max(res["errors"].values()) <= 1e-4
    with pytest.raises(ConfigError, match="format=exported_program: torch.export specialises"):
        export_format(ckpt, "exported_program", tmp_path / "fr.pt2")


def test_exported_video_step_by_its_recipe_equals_the_warm_streaming(tmp_path, capsys):
    """The exported step, run as its metadata says (TecoGAN's warm-up: warmup_order(n, warmup_frames), outputs from
    position k on), gives what evaluate.py / lsr-upscale stream (stream_frames with the same warm-up)."""
    from lightning_sr.inference import stream_frames, warmup_count, warmup_order
    from lightning_sr.networks import build_generator

    spec = {"arch": "frnet", "res_blocks": 1, "channels": 8, "scale": 4}
    torch.manual_seed(0)
    gen = build_generator(spec).eval()
    with torch.no_grad():
        for p in gen.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    from lightning_sr.export import main as export_main

    capsys.readouterr()
    assert export_main([f"ckpt_path={save_ckpt(gen, spec, tmp_path / 'fr.ckpt')}", "format=torchscript",
                        f"out={tmp_path / 'fr.pt'}"]) == 0
    assert "recurrent step (warmup_frames=5): run the step over frames k, k-1" in capsys.readouterr().out
    res = {"out": tmp_path / "fr.pt"}
    meta = read_metadata(res["out"])["lsr_export"]
    assert meta["warmup_frames"] == 5 and "warmup_order" in meta["recurrence"]
    step = torch.jit.load(str(res["out"]))
    g = torch.Generator().manual_seed(3)
    frames = [torch.rand(1, 3, 12, 16, generator=g) for _ in range(7)]
    k = warmup_count(len(frames), meta["warmup_frames"])
    outs, lr_prev, hr_prev = [], None, None
    with torch.no_grad():
        for j, i in enumerate(warmup_order(len(frames), meta["warmup_frames"])):
            x = frames[i]
            if hr_prev is None:
                lr_prev, hr_prev = x, x.new_zeros(1, 3, 48, 64)
            hr_prev, lr_prev = step(x, lr_prev, hr_prev), x
            if j >= k:
                outs.append(hr_prev)
        ref = list(stream_frames(gen, iter(frames), 4, warmup=5))
        cold = list(stream_frames(gen, iter(frames), 4))
    assert len(outs) == len(ref) == 7 and max(float((a - b).abs().max()) for a, b in zip(outs, ref, strict=True)) < 1e-4
    assert float((ref[0] - cold[0]).abs().max()) > 1e-3  # the warm-up changes the first frames


def test_bad_input_is_one_line(tmp_path, tiny_ckpt, capsys):
    with pytest.raises(WeightsError, match="does not exist"):
        upscale(tmp_path / "none.ckpt", tmp_path, progress=False)
    with pytest.raises(DataError, match="neither an image"):
        (tmp_path / "a.txt").write_text("x")
        upscale(tiny_ckpt, tmp_path / "a.txt", progress=False)
    with pytest.raises(ConfigError, match="tile="):
        upscale(tiny_ckpt, tmp_path / "a.txt", tile="big", progress=False)
    with pytest.raises(ConfigError, match="exit=3 is for multi-exit"):
        export_format(tiny_ckpt, "onnx", tmp_path / "x.onnx", exit=3)
    assert upscale_main([f"ckpt_path={tiny_ckpt}", "colour=red"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown argument 'colour=red'" in err[0]


def test_cli_export_and_upscale_end_to_end(tmp_path, tiny_ckpt):
    """The one subprocess test: `python -m lightning_sr.export` as a user types it (the upscale CLI runs in-process
    above through main())."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "lightning_sr.export", f"ckpt_path={tiny_ckpt}", "format=torchscript",
                        f"out={tmp_path / 'm.pt'}"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "checked: max |difference|" in p.stdout and (tmp_path / "m.pt").is_file()
