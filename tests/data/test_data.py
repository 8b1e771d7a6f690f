"""Data: decoding once, aligned patches, presets, and every kind of bad input."""

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import lightning_sr.ops.image_io as io_mod
from lightning_sr.data import SRDataModule, degrade, load_pairs, read_rgb
from lightning_sr.data.datasets import ImageSet, TrainPatchDataset
from lightning_sr.errors import ConfigError, DataError


def _img(path, h=40, w=48, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16)).save(path)
    elif mode == "L":
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L").save(path)
    elif mode == "RGBA":
        Image.fromarray(rng.integers(0, 255, (h, w, 4), dtype=np.uint8), "RGBA").save(path)
    else:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _cfg(hr, lr=None, val=None, **kw):
    base = dict(kind="folders", name="t", train={"hr_dir": str(hr), "lr_dir": str(lr) if lr else None},
                val=[{"name": "v", "hr_dir": str(val or hr), "lr_dir": None}], patch_size=16, batch_size=2,
                iters_per_epoch=3, num_workers=0, pin_memory=False)
    base.update(kw)
    return OmegaConf.create(base)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_gray_rgba_16bit_become_8bit_rgb(tmp_path, mode):
    arr = read_rgb(_img(tmp_path / "a.png", mode=mode))
    assert arr.dtype == np.uint8 and arr.shape == (40, 48, 3)
    if mode == "I;16":
        assert arr.max() > 200  # scaled from 16 bit, not clipped to 255 from raw values
    if mode == "L":
        assert (arr[..., 0] == arr[..., 1]).all()


def test_missing_folder_names_path_and_layout(tmp_path):
    dm = SRDataModule(_cfg(tmp_path / "nope", layout="<dir>/*.png"), 4)
    with pytest.raises(DataError) as e:
        dm.setup("fit")
    assert str(tmp_path / "nope") in str(e.value) and "layout" in str(e.value)


def test_corrupt_image_names_the_file(tmp_path):
    _img(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="bad.png"):
        SRDataModule(_cfg(tmp_path), 4).setup("fit")


def test_too_small_images_skipped_with_count(tmp_path, caplog):
    _img(tmp_path / "big.png", 64, 64)
    _img(tmp_path / "tiny1.png", 8, 8)
    _img(tmp_path / "tiny2.png", 12, 30)
    with caplog.at_level(logging.WARNING):
        pairs = load_pairs(ImageSet("s", str(tmp_path)), 4, min_hr_size=16)
    assert [p.name for p in pairs] == ["big"]
    assert "skipped 2 of 3" in caplog.text


def test_no_usable_image_is_an_error(tmp_path):
    _img(tmp_path / "tiny.png", 8, 8)
    with pytest.raises(DataError, match="none of the 1 images"):
        load_pairs(ImageSet("s", str(tmp_path)), 4, min_hr_size=16)


def test_lr_hr_size_mismatch_names_the_pair(tmp_path):
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    hr.mkdir(), lr.mkdir()
    _img(hr / "0001.png", 40, 48)
    _img(lr / "0001x4.png", 11, 12)  # should be 10 x 12
    with pytest.raises(DataError, match="0001x4.png.*0001.png"):
        load_pairs(ImageSet("s", str(hr), str(lr)), 4)


def test_lr_folder_pairs_by_stem(tmp_path):
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    hr.mkdir(), lr.mkdir()
    _img(hr / "0001.png", 40, 48)
    _img(lr / "0001x4.png", 10, 12, seed=3)
    (p,) = load_pairs(ImageSet("s", str(hr), str(lr)), 4)
    assert torch.equal(p.lr, torch.from_numpy(read_rgb(lr / "0001x4.png")).permute(2, 0, 1))


def test_hr_cropped_to_multiple_of_scale(tmp_path):
    _img(tmp_path / "a.png", 41, 50)
    (p,) = load_pairs(ImageSet("s", str(tmp_path)), 4)
    assert p.hr.shape == (3, 40, 48) and p.lr.shape == (3, 10, 12)


def test_decoded_once_not_per_sample(tmp_path, monkeypatch):
    for i in range(3):
        _img(tmp_path / f"{i}.png", 64, 64, seed=i)
    dm = SRDataModule(_cfg(tmp_path, iters_per_epoch=50), 4)
    dm.setup("fit")

    def boom(*a, **k):
        raise AssertionError("an image was decoded again after set-up")

    monkeypatch.setattr(io_mod, "read_rgb", boom)
    import lightning_sr.data.datasets as ds_mod

    monkeypatch.setattr(ds_mod, "read_rgb", boom)
    # every sample comes from the cached tensors: any decode would raise above
    samples = [dm.train_set[i] for i in range(len(dm.train_set))]
    assert len(samples) == 50 * 2 and all(s["hr"].shape == (3, 16, 16) for s in samples)
    assert all(d[0]["hr"].shape == (3, 64, 64) for d in dm.eval_sets)


def test_patches_are_aligned_and_augmented(tmp_path):
    _img(tmp_path / "a.png", 64, 64)
    (p,) = load_pairs(ImageSet("s", str(tmp_path)), 4)
    ds = TrainPatchDataset([p], 4, 32, length=20, augment=True)
    full_lr = p.lr.float() / 255
    for i in range(20):
        s = ds[i]
        assert s["lr"].shape == (3, 8, 8) and s["hr"].shape == (3, 32, 32)
        assert s["lr"].min() >= 0 and s["hr"].max() <= 1
    # without augmentation, the LR patch is a crop of the whole-image LR at the matching place
    ds = TrainPatchDataset([p], 4, 32, length=5, augment=False)
    s = ds[0]
    hits = [(t, c) for t in range(9) for c in range(9) if torch.equal(full_lr[:, t:t + 8, c:c + 8], s["lr"])]
    assert hits
    t, c = hits[0]
    assert torch.equal(p.hr[:, t * 4:t * 4 + 32, c * 4:c * 4 + 32].float() / 255, s["hr"])


@pytest.mark.parametrize("kind,scale", [("bicubic", 4), ("bd", 4), ("bd", 3), ("gaussian", 4), ("bd", 2)])
def test_every_augmented_patch_is_the_degradation_of_its_hr_patch(tmp_path, kind, scale):
    """degrade(aug(HR)) == aug(LR) for every flip/rotation the training data draws, for every degradation (away
    from the patch border, where degrading a patch and cropping the degraded image see different neighbours)."""
    (tmp_path / "hr").mkdir()
    _img(tmp_path / "hr" / "a.png", 12 * scale, 14 * scale)
    dm = SRDataModule(_cfg(tmp_path / "hr", patch_size=8 * scale, iters_per_epoch=64, batch_size=1, degradation=kind, val_split=0,
                           blur_sigma=1.5 if kind == "gaussian" else 1.6), scale=scale)
    dm.setup("fit")
    ds, combos = dm.train_set, set()
    m = 2  # LR pixels: the widest kernel (bicubic x4, 16 HR taps) reaches 2 LR pixels into the patch
    for i in range(64):
        rng = random.Random(ds.seed * 1_000_003 + i)  # the sample's draws: the crop, then flips and transpose
        _, lh, lw = ds.pairs[i % len(ds.pairs)].lr.shape
        rng.randint(0, lh - 8), rng.randint(0, lw - 8)
        combos.add(tuple(rng.random() < 0.5 for _ in range(3)))
        smp = ds[i]
        lr = smp["lr"] * 255
        ref = degrade(smp["hr"].double() * 255, scale, kind, 1.5 if kind == "gaussian" else 1.6)
        diff = float((ref[:, m:-m, m:-m] - lr[:, m:-m, m:-m].double()).abs().max())
        assert diff <= 0.5 + 1e-6, (i, diff)  # the stored LR is the degradation rounded to 8 bits
    assert len(combos) == 8  # every flip / transpose combination was drawn and checked


def test_bd_degradation_differs_from_bicubic():
    hr = torch.rand(3, 48, 48) * 255
    bi, bd = degrade(hr, 3, "bicubic"), degrade(hr, 3, "bd", 1.6)
    assert bi.shape == bd.shape == (3, 16, 16)
    assert (bi - bd).abs().mean() > 1
    with pytest.raises(ConfigError, match="degradation"):
        degrade(hr, 3, "jpeg")


@pytest.mark.parametrize("key,val,match", [("patch_size", 30, "divisible by scale"), ("patch_size", -4, "patch_size"),
                                           ("batch_size", 0, "batch_size"), ("num_workers", -1, "num_workers")])
def test_impossible_data_values(tmp_path, key, val, match):
    with pytest.raises(ConfigError, match=match):
        SRDataModule(_cfg(tmp_path, **{key: val}), 4)


def test_embedded_preset_splits_train_and_val():
    from tests.conftest import compose

    cfg = compose([])
    dm = SRDataModule(cfg.data, 4)
    dm.setup("fit")
    assert dm.eval_names == ["embedded"]
    train_names = {p.name for p in dm.train_set.pairs}
    val_names = {p.name for p in dm.eval_sets[0].pairs}
    assert len(train_names) == 6 and val_names == {"astronaut", "coffee"} and not train_names & val_names


def test_benchmark_layouts(tmp_path):
    (tmp_path / "Set5" / "HR").mkdir(parents=True)
    (tmp_path / "Set14").mkdir()
    _img(tmp_path / "Set5" / "HR" / "a.png")
    _img(tmp_path / "Set14" / "b.png")
    cfg = OmegaConf.create(dict(kind="folders", name="b", train=None, val=[], benchmark_root=str(tmp_path),
                                benchmark_sets=["Set5", "Set14"], patch_size=16, batch_size=1))
    dm = SRDataModule(cfg, 4)
    dm.setup("test")
    assert dm.eval_names == ["Set5", "Set14"]
    cfg.benchmark_sets = ["Urban100"]
    with pytest.raises(DataError, match="Urban100"):
        SRDataModule(cfg, 4).setup("test")


# ----- issue 9: held-out validation, the embedded folder, the decoded-image cache, exact degradations -------------
def test_folder_holds_out_validation_images_and_names_them(tmp_path, caplog):
    for i in range(10):
        _img(tmp_path / f"{i:02d}.png", 32, 32, seed=i)
    cfg = OmegaConf.create(dict(kind="folders", name="f", train={"hr_dir": str(tmp_path), "lr_dir": None},
                                val=[{"name": "folder", "hr_dir": None, "lr_dir": None}], val_split=0.2,
                                patch_size=16, batch_size=2, iters_per_epoch=3, num_workers=0, pin_memory=False))
    dm = SRDataModule(cfg, 4)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    train_names = {p.name for p in dm.train_set.pairs}
    val_names = {p.name for p in dm.eval_sets[0].pairs}
    assert val_names == {"08", "09"} and train_names == {f"{i:02d}" for i in range(8)}
    assert "holding out 2 of 10 images" in caplog.text and "08.png, 09.png" in caplog.text
    # evaluate.py (no training) evaluates the whole folder
    ev = SRDataModule(cfg, 4)
    ev.setup("test")
    assert len(ev.eval_sets[0]) == 10


def test_folder_preset_never_validates_on_training_images(tmp_path):
    from tests.conftest import compose

    for i in range(4):
        _img(tmp_path / f"{i}.png", 32, 32, seed=i)
    cfg = compose(["data=folder", f"data.hr_dir={tmp_path}", "data.patch_size=16"])
    dm = SRDataModule(cfg.data, 4)
    dm.setup("fit")
    assert not {p.name for p in dm.train_set.pairs} & {p.name for p in dm.eval_sets[0].pairs}


def test_benchmark_sets_are_test_sets_never_validation(tmp_path):
    from tests.conftest import compose

    for s in ("Set5", "Set14"):
        (tmp_path / s).mkdir()
        _img(tmp_path / s / "a.png", 32, 32)
    cfg = compose(["experiment=self_distillation", "profile=smoke", f"data.benchmark_root={tmp_path}",
                   "data.benchmark_sets=[Set5,Set14]"])
    dm = SRDataModule(cfg.data, 4)
    dm.setup("fit")
    assert dm.set_names("val") == ["embedded"] and dm.set_names("test") == ["embedded", "Set5", "Set14"]
    assert [d.role for d in dm.eval_sets] == ["val", "test", "test"]
    full = compose(["experiment=self_distillation"])
    assert full.data.val and full.data.val_max_images == 10  # DIV2K validation images pick the checkpoints


def test_embedded_setup_never_removes_files_it_did_not_write(tmp_path):
    from lightning_sr.data.embedded import MANIFEST, materialize

    (tmp_path / "train").mkdir()
    mine = _img(tmp_path / "train" / "my_photo.png")
    folders = materialize(tmp_path)
    assert mine.is_file()  # a foreign file survives
    assert (folders["train"] / "chelsea.png").is_file()
    (folders["train"] / MANIFEST).write_text('{"written": ["chelsea.png", "old_image.png"]}')
    _img(folders["train"] / "old_image.png")  # one we wrote for an older image list: removed
    materialize(tmp_path)
    assert mine.is_file() and not (folders["train"] / "old_image.png").exists()


def test_decoded_cache_is_written_once_and_memory_mapped(tmp_path, monkeypatch):
    import lightning_sr.data.datasets as ds_mod
    from lightning_sr.data.cache import decoded_dir

    monkeypatch.setenv("LSR_CACHE", str(tmp_path / "cache"))
    (tmp_path / "img").mkdir()
    for i in range(2):
        _img(tmp_path / "img" / f"{i}.png", 32, 32, seed=i)
    first = load_pairs(ImageSet("s", str(tmp_path / "img")), 4)
    files = sorted(decoded_dir().rglob("*.npy"))
    assert len(files) == 4  # HR and LR of two images

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(ds_mod, "read_rgb", boom)
    again = load_pairs(ImageSet("s", str(tmp_path / "img")), 4)  # another run / rank: no decoding at all
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.hr, b.hr) and torch.equal(a.lr, b.lr)
    maps = Path("/proc/self/maps").read_text()
    assert all(str(f) in maps for f in files)  # memory-mapped: shared pages, not a private copy
    # a changed file gets a new entry
    monkeypatch.undo()
    monkeypatch.setenv("LSR_CACHE", str(tmp_path / "cache"))
    _img(tmp_path / "img" / "0.png", 32, 32, seed=9)
    load_pairs(ImageSet("s", str(tmp_path / "img")), 4)
    assert len(sorted(decoded_dir().rglob("*.npy"))) == 6


def test_rgba_is_composited_on_white_exactly(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)     # opaque red
    rgba[0, 1] = (255, 0, 0, 0)       # fully transparent: white
    rgba[1, 0] = (0, 0, 255, 128)     # half blue over white
    rgba[1, 1] = (10, 20, 30, 51)     # 20 % opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = read_rgb(tmp_path / "a.png").astype(int)
    a = rgba[..., 3:4] / 255.0
    want = np.round(rgba[..., :3] * a + 255 * (1 - a)).astype(int)
    assert np.abs(got - want).max() <= 1  # PIL's integer compositing rounds within one grey level
    assert got[0, 0].tolist() == [255, 0, 0] and got[0, 1].tolist() == [255, 255, 255]


def test_bd_degradation_equals_an_independent_reference():
    """BD: 7x7 Gaussian (sigma 1.6), replicate borders, then every scale-th pixel from scale // 2."""
    from scipy.ndimage import convolve

    hr = torch.rand(3, 24, 36, dtype=torch.float64) * 255
    r = np.arange(7) - 3
    g = np.exp(-(r ** 2) / (2 * 1.6 ** 2))
    k = np.outer(g, g) / np.outer(g, g).sum()
    want = np.stack([convolve(c, k, mode="nearest") for c in hr.numpy()])[:, 1::3, 1::3]
    got = degrade(hr, 3, "bd", 1.6).numpy()
    assert got.shape == want.shape == (3, 8, 12)
    assert np.abs(got - want).max() < 1e-9
