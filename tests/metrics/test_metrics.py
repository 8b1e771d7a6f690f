"""PSNR/SSIM/LPIPS conventions, checked against the literature's Set5 figures (skip without ../shared)."""

import numpy as np
import pytest
import torch

from lightning_sr.data import bicubic_downscale, bicubic_upscale, read_rgb
from lightning_sr.errors import WeightsError
from lightning_sr.metrics import LPIPS, psnr, rgb_to_y, ssim
from tests.conftest import ALEXNET, SET5, needs_alexnet, needs_set5


def _t(arr):
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255


def _set5():
    for p in sorted((SET5 / "HR").glob("*.png")):
        yield p.stem, _t(read_rgb(p)), _t(read_rgb(SET5 / "LR_bicubic" / "X4" / p.name))


def test_rgb_to_y_is_bt601():
    x = torch.tensor([255.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert rgb_to_y(x).item() == pytest.approx(16 + 65.481)
    white = torch.full((1, 3, 1, 1), 255.0)
    assert rgb_to_y(white).item() == pytest.approx(235.0, abs=1e-3)


def test_psnr_known_value_and_rounding():
    hr = torch.zeros(1, 3, 16, 16)
    sr = torch.full((1, 3, 16, 16), 10 / 255)
    # RGB: every pixel off by 10 grey levels -> 20*log10(255/10)
    assert psnr(sr, hr, y_channel=False).item() == pytest.approx(20 * np.log10(25.5), abs=1e-6)
    # 8-bit rounding: a difference below half a grey level disappears
    assert psnr(hr + 0.4 / 255, hr).item() > 90


def test_psnr_crop_border():
    hr = torch.rand(1, 3, 20, 20)
    sr = hr.clone()
    sr[..., :4, :] = 0  # only the border differs
    assert psnr(sr, hr, crop=4).item() > 90
    assert psnr(sr, hr, crop=0).item() < 40


def test_ssim_identity_and_range():
    g = torch.Generator().manual_seed(0)  # fixed noise: unseeded, the independent-noise SSIM was sometimes < 0
    a = torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(a, a), torch.ones(2, dtype=torch.float64))
    independent = ssim(a, torch.rand(2, 3, 32, 32, generator=g))
    assert independent.abs().max().item() < 0.05  # unrelated noise shares no structure (SSIM about 0, either sign)
    noisy = ssim(a, (a + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1))
    assert (independent < noisy).all() and (noisy < 1).all()


@needs_set5
def test_matlab_bicubic_downscale_matches_set5_lr():
    for name, hr, lr in _set5():
        mine = bicubic_downscale(hr * 255, 4).round().clamp(0, 255)
        mad = (mine - lr * 255).abs().mean().item()
        assert mad < 0.5, f"{name}: mean abs diff {mad:.3f} grey levels vs MATLAB imresize"


@needs_set5
def test_bicubic_x4_set5_baseline_matches_literature():
    ps, ss = [], []
    for _, hr, lr in _set5():
        up = bicubic_upscale(lr, 4)
        ps.append(psnr(up, hr, crop=4).item())
        ss.append(ssim(up, hr, crop=4).item())
    assert np.mean(ps) == pytest.approx(28.42, abs=0.02)
    assert np.mean(ss) == pytest.approx(0.8104, abs=0.002)


@needs_set5
@needs_alexnet
def test_lpips_matches_reference_values():
    ref = {"baby": 0.3043, "bird": 0.2359, "butterfly": 0.3735, "head": 0.4225, "woman": 0.3668}
    m = LPIPS(backbone_path=str(ALEXNET))
    for name, hr, lr in _set5():
        up = (bicubic_upscale(lr, 4).clamp(0, 1) * 255).round() / 255
        assert m(up, hr).item() == pytest.approx(ref[name], abs=5e-4), name


def test_lpips_missing_backbone_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError) as e:
        LPIPS()
    msg = str(e.value)
    assert "alexnet-owt-7be5be79.pth" in msg and "metrics.lpips.backbone_path" in msg and "\n" not in msg


def test_lpips_random_backbone_warns_and_runs():
    # random backbone: plumbing only, values are not comparable to published LPIPS
    with pytest.warns(UserWarning, match="RANDOM"):
        m = LPIPS(pretrained_backbone=False)
    a = torch.rand(1, 3, 32, 32)
    assert m(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert m(a, torch.rand(1, 3, 32, 32)).item() > 0


# ----- synthetic checks strong enough without ../shared: an independent reference of the conventions -----------
def _ref_eval_space(img: np.ndarray, crop: int) -> np.ndarray:
    """Written from the definitions, not from the code: 8-bit rounding, BT.601 Y, border crop."""
    x = np.round(np.clip(img, 0, 1) * 255.0)
    y = 16.0 + (65.481 * x[0] + 128.553 * x[1] + 24.966 * x[2]) / 255.0
    return y[crop:-crop, crop:-crop] if crop else y


def _ref_psnr(a, b, crop):
    ya, yb = _ref_eval_space(a, crop), _ref_eval_space(b, crop)
    return 10 * np.log10(255.0 ** 2 / np.mean((ya - yb) ** 2))


def _ref_ssim(a, b, crop):
    """MATLAB ssim.m: fspecial('gaussian', 11, 1.5), filter2(..., 'valid'), K = (0.01, 0.03), L = 255."""
    from scipy.signal import convolve2d

    ya, yb = _ref_eval_space(a, crop), _ref_eval_space(b, crop)
    r = np.arange(11) - 5
    g = np.exp(-(r ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    f = lambda x: convolve2d(x, np.rot90(w, 2), mode="valid")  # noqa: E731  (filter2 = correlation)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ma, mb = f(ya), f(yb)
    saa, sbb, sab = f(ya * ya) - ma ** 2, f(yb * yb) - mb ** 2, f(ya * yb) - ma * mb
    return np.mean(((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma ** 2 + mb ** 2 + c1) * (saa + sbb + c2)))


@pytest.mark.parametrize("crop", [0, 2, 4])
def test_psnr_and_ssim_equal_an_independent_reference(crop):
    rng = np.random.default_rng(crop)
    hr = rng.random((3, 40, 36))
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    sr[:, :3, :] = rng.random((3, 3, 36))  # a corrupted border: a wrong crop changes the result
    t = lambda a: torch.from_numpy(a).float().unsqueeze(0)  # noqa: E731
    assert psnr(t(sr), t(hr), crop).item() == pytest.approx(_ref_psnr(t(sr)[0].double().numpy(),
                                                                       t(hr)[0].double().numpy(), crop), abs=1e-9)
    assert ssim(t(sr), t(hr), crop).item() == pytest.approx(_ref_ssim(t(sr)[0].double().numpy(),
                                                                      t(hr)[0].double().numpy(), crop), abs=1e-9)


def test_each_convention_changes_the_number():
    """Wrong crop, a wrong Y formula or a missing rounding would all move PSNR: the reference catches each."""
    rng = np.random.default_rng(7)
    hr = np.round(rng.random((3, 24, 24)) * 255) / 255
    sr = np.clip(hr + (rng.integers(0, 2, hr.shape) * 0.45 + 0.3) / 255, 0, 1)  # sub-level offsets: rounding matters
    sr[:, :, :4] = 0.0  # inside the 4-pixel border, outside a 2-pixel one
    t = lambda a: torch.from_numpy(a).unsqueeze(0)  # noqa: E731
    ours = psnr(t(sr), t(hr), 4).item()
    assert ours == pytest.approx(_ref_psnr(sr, hr, 4), abs=1e-9)
    unrounded = 10 * np.log10(255.0 ** 2 / np.mean(((sr - hr)[:, 4:-4, 4:-4] * 255 * np.array(
        [65.481, 128.553, 24.966])[:, None, None] / 255).sum(0) ** 2))
    assert abs(ours - unrounded) > 0.5
    assert abs(ours - _ref_psnr(sr, hr, 2)) > 0.5  # another crop
    rgb = psnr(t(sr), t(hr), 4, y_channel=False).item()
    assert abs(ours - rgb) > 0.1
