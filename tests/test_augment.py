"""Tests for experiments/augment.py against independent references (colorsys, numpy float64, slicing)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.augment import (
    GRAY_WEIGHTS,
    SimCLRAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    resized_crop,
    rgb_to_grayscale,
    sample_crop_boxes,
)


def _x(b=4, c=3, h=16, w=16, seed=0):
    return torch.rand((b, c, h, w), generator=torch.Generator().manual_seed(seed))


def _gen(seed):
    return torch.Generator().manual_seed(seed)


NO_COLOUR = dict(jitter_p=0.0, gray_p=0.0, blur=False)


def test_same_seed_same_views_different_seed_different():
    x = _x(8)
    x0 = x.clone()
    aug = SimCLRAugment(16, strength=1.0, blur=True, blur_p=0.5, jitter_order="random")
    a, b, c = aug(x, _gen(3)), aug(x, _gen(3)), aug(x, _gen(4))
    assert torch.equal(x, x0)  # input untouched
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = _gen(3)
    v1, v2 = aug(x, g), aug(x, g)  # two views from one stream differ
    assert torch.equal(v1, a) and not torch.equal(v1, v2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_dtype(dtype, channels):
    x = _x(6, channels, 20, 20).to(dtype)
    aug = SimCLRAugment(12, strength=1.0, blur=True, blur_p=0.5)
    y = aug(x, _gen(0))
    assert y.shape == (6, channels, 12, 12) and y.dtype == dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    same = SimCLRAugment(20)(x, _gen(0))
    assert same.shape == x.shape


def test_uint8_input_reads_as_float():
    x8 = (torch.arange(3 * 8 * 8) % 256).to(torch.uint8).reshape(1, 3, 8, 8)
    aug = SimCLRAugment(8, scale=(1, 1), ratio=(1, 1), flip_p=0.0, **NO_COLOUR)
    y = aug(x8, _gen(0))
    assert y.dtype == torch.float32 and torch.allclose(y, x8.float() / 255, atol=1e-6)


def test_identity_crop_and_hflip():
    x = _x(5, 3, 16, 16)
    ident = SimCLRAugment(16, scale=(1, 1), ratio=(1, 1), flip_p=0.0, **NO_COLOUR)
    assert torch.allclose(ident(x, _gen(0)), x, atol=1e-6, rtol=0)
    flip = SimCLRAugment(16, scale=(1, 1), ratio=(1, 1), flip_p=1.0, **NO_COLOUR)
    assert torch.allclose(flip(x, _gen(0)), x.flip(-1), atol=1e-6, rtol=0)


def test_resized_crop_against_slicing_and_pooling():
    x = _x(2, 3, 8, 8)
    boxes = torch.tensor([[1.0, 2.0, 4.0, 4.0], [3.0, 0.0, 4.0, 4.0]])
    y = resized_crop(x, boxes, 4)
    assert torch.allclose(y[0], x[0, :, 1:5, 2:6], atol=1e-6)
    assert torch.allclose(y[1], x[1, :, 3:7, 0:4], atol=1e-6)
    yf = resized_crop(x, boxes, 4, flip=torch.tensor([True, False]))
    assert torch.allclose(yf[0], x[0, :, 1:5, 2:6].flip(-1), atol=1e-6)
    # 2x down-sampling of the whole image samples midway between pixel pairs = 2x2 average pooling
    full = torch.tensor([[0.0, 0.0, 8.0, 8.0]]).expand(2, 4)
    assert torch.allclose(resized_crop(x, full, 4), F.avg_pool2d(x, 2), atol=1e-6)


def test_crop_boxes_valid_and_fallback():
    b = sample_crop_boxes(500, 12, 20, (0.08, 1.0), (3 / 4, 4 / 3), _gen(0))
    top, left, h, w = b.unbind(1)
    assert torch.all(h >= 1) and torch.all(w >= 1) and torch.all(top >= 0) and torch.all(left >= 0)
    assert torch.all(top + h <= 12) and torch.all(left + w <= 20)
    assert torch.equal(b, b.round())
    frac = h * w / 240.0
    assert float(frac.min()) >= 0.05 and float(frac.max()) <= 1.0
    assert torch.all(w / h >= 0.5) and torch.all(w / h <= 2.0)
    # no valid attempt: aspect 2 on a square 8x8 -> centre crop 4 (h) x 8 (w) at top 2
    fb = sample_crop_boxes(3, 8, 8, (1.0, 1.0), (2.0, 2.0), _gen(0))
    assert torch.equal(fb, torch.tensor([[2.0, 0.0, 4.0, 8.0]]).expand(3, 4))


def test_grayscale_weights():
    eye = torch.eye(3).reshape(3, 3, 1, 1)  # pure red, green, blue images
    assert torch.allclose(rgb_to_grayscale(eye).flatten(), torch.tensor(GRAY_WEIGHTS))
    assert GRAY_WEIGHTS == (0.299, 0.587, 0.114)
    x = _x(3)
    aug = SimCLRAugment(16, scale=(1, 1), ratio=(1, 1), flip_p=0.0, jitter_p=0.0, gray_p=1.0, blur=False)
    y = aug(x, _gen(0))
    ref = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).double()
    for c in range(3):
        assert torch.allclose(y[:, c].double(), ref, atol=1e-6)


def test_brightness_contrast_saturation_against_float64_reference():
    x = _x(3, 3, 5, 6)
    f = torch.tensor([0.3, 1.0, 1.7])
    xn = x.double().numpy()
    fn = f.double().numpy()[:, None, None, None]
    gray = 0.299 * xn[:, 0:1] + 0.587 * xn[:, 1:2] + 0.114 * xn[:, 2:3]
    ref_b = np.clip(fn * xn, 0, 1)
    ref_c = np.clip(fn * xn + (1 - fn) * gray.mean(axis=(1, 2, 3), keepdims=True), 0, 1)
    ref_s = np.clip(fn * xn + (1 - fn) * gray, 0, 1)
    assert np.allclose(adjust_brightness(x, f).numpy(), ref_b, atol=1e-6)
    assert np.allclose(adjust_contrast(x, f).numpy(), ref_c, atol=1e-6)
    assert np.allclose(adjust_saturation(x, f).numpy(), ref_s, atol=1e-6)
    g1 = x[:, :1]
    assert torch.equal(adjust_saturation(g1, f), g1) and torch.equal(adjust_hue(g1, f), g1)
    ref_c1 = np.clip(fn * xn[:, :1] + (1 - fn) * xn[:, :1].mean(axis=(1, 2, 3), keepdims=True), 0, 1)
    assert np.allclose(adjust_contrast(g1, f).numpy(), ref_c1, atol=1e-6)


def test_hue_zero_is_identity_and_matches_colorsys():
    x = _x(3, 3, 4, 5)
    assert torch.allclose(adjust_hue(x, torch.zeros(3)), x, atol=2e-6)
    f = torch.tensor([0.1, -0.37, 0.5])
    y = adjust_hue(x, f).double().numpy()
    xn = x.double().numpy()
    for b in range(3):
        for i in range(4):
            for j in range(5):
                h, s, v = colorsys.rgb_to_hsv(*xn[b, :, i, j])
                ref = colorsys.hsv_to_rgb((h + float(f[b])) % 1.0, s, v)
                assert np.allclose(y[b, :, i, j], ref, atol=2e-6)


def test_gaussian_blur_against_numpy_loop():
    x = _x(2, 3, 7, 6)
    sigma = torch.tensor([0.7, 1.5])
    k = 5
    y = gaussian_blur(x, sigma, k).double().numpy()
    xn = x.double().numpy()
    for b in range(2):
        t = np.arange(k) - (k - 1) / 2
        w = np.exp(-0.5 * (t / float(sigma[b])) ** 2)
        w /= w.sum()
        for c in range(3):
            p = np.pad(xn[b, c], k // 2, mode="reflect")
            ref = np.zeros((7, 6))
            for i in range(7):
                for j in range(6):
                    ref[i, j] = np.sum(np.outer(w, w) * p[i:i + k, j:j + k])
            assert np.allclose(y[b, c], ref, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_per_image_loop_equals_batch(channels):
    x = _x(6, channels, 18, 14)
    aug = SimCLRAugment(10, strength=1.0, blur=True, blur_p=0.5, blur_kernel=3, blur_sigma=(0.1, 2.0),
                        jitter_order="random")
    params = aug.sample_params(6, 18, 14, _gen(11))
    batched = aug.apply(x, params)
    for i in range(6):
        single = aug.apply(x[i:i + 1], params[i])
        assert torch.allclose(single, batched[i:i + 1], atol=1e-6, rtol=0)
    assert torch.equal(batched, aug(x, _gen(11)))


def test_fixed_order_and_jitter_defaults():
    aug = SimCLRAugment(32)
    assert (aug.brightness, aug.contrast, aug.saturation, aug.hue) == pytest.approx((0.4, 0.4, 0.4, 0.1))
    assert aug.blur is False and SimCLRAugment(64).blur is True
    p = aug.sample_params(5, 32, 32, _gen(0))
    assert torch.equal(p.order, torch.arange(4).expand(5, 4))
    lo, hi = p.factors.min(0).values, p.factors.max(0).values
    assert float(lo[0]) >= 0.6 and float(hi[0]) <= 1.4 and float(lo[3]) >= -0.1 and float(hi[3]) <= 0.1
    mini = SimCLRAugment.for_dataset("mini-imagenet")
    assert (mini.size, mini.saturation, mini.hue, mini.blur, mini.blur_p, mini.blur_kernel, mini.blur_sigma) == (
        224, 0.8, 0.2, True, 0.1, 3, (1.5, 1.5))
    c = SimCLRAugment.for_dataset("cifar100")
    assert (c.size, c.brightness, c.saturation, c.hue, c.blur) == (32, 0.8, 0.4, 0.1, False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="flip_p must be a probability"):
        SimCLRAugment(8, flip_p=1.5)
    with pytest.raises(ValueError, match="blur_kernel must be an odd integer"):
        SimCLRAugment(8, blur_kernel=4)
    with pytest.raises(ValueError, match="jitter_order"):
        SimCLRAugment(8, jitter_order="shuffled")
    with pytest.raises(ValueError, match="scale must satisfy"):
        SimCLRAugment(8, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        SimCLRAugment(8)(_x(1), 0)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        SimCLRAugment(8)(_x(1, 2), _gen(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_itself_and_rejects_cpu_generator():
    x = _x(4).cuda()
    aug = SimCLRAugment(16, strength=1.0, blur=True, blur_p=0.5)
    g = lambda: torch.Generator(device="cuda").manual_seed(0)  # noqa: E731
    a, b = aug(x, g()), aug(x, g())
    assert a.is_cuda and torch.equal(a, b)
    assert aug(x.bfloat16(), g()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="generator must be on the images' device"):
        aug(x, _gen(0))


# -----------------------------------------------------------------------------------------------------------
# sync-free default path (GPU readiness, checked on the CPU)


def _gather_reference(aug: SimCLRAugment, x: torch.Tensor, params) -> torch.Tensor:
    """The previous implementation of ``apply`` (per-op sub-batches gathered with torch.nonzero, ``any()`` guards),
    written out independently: the sync-free default path must reproduce it bit for bit."""
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    y = x.to(torch.float32) / (255.0 if x.dtype == torch.uint8 else 1.0)
    y = resized_crop(y, params.boxes, aug.size, params.flip).clone()
    n_ops = 2 if y.shape[1] == 1 else 4
    if bool(params.jitter.any()):
        for stage in range(4):
            for k in range(n_ops):
                idx = torch.nonzero(params.jitter & (params.order[:, stage] == k)).squeeze(1)
                if idx.numel():
                    y[idx] = ops[k](y[idx], params.factors[idx, k])
    if y.shape[1] == 3 and bool(params.gray.any()):
        y = torch.where(params.gray.reshape(-1, 1, 1, 1), rgb_to_grayscale(y).expand_as(y), y)
    if aug.blur and bool(params.blur.any()):
        y = torch.where(params.blur.reshape(-1, 1, 1, 1), gaussian_blur(y, params.sigma, aug.blur_kernel), y)
    return y.clamp_(0.0, 1.0)


@pytest.mark.parametrize("channels, size, blur, uint8", [(3, 12, True, False), (1, 10, True, False),
                                                         (3, 32, False, True)])
def test_fixed_order_path_bit_identical_to_gather_reference(channels, size, blur, uint8):
    x = _x(16, channels, 20, 18, seed=5)
    if uint8:
        x = (x * 255).round().to(torch.uint8)
    aug = SimCLRAugment(size, strength=1.0, blur=blur, blur_p=0.5, blur_sigma=(0.1, 2.0))
    for seed in range(3):
        params = aug.sample_params(16, 20, 18, _gen(seed))
        assert 0 < int(params.jitter.sum()) < 16  # both kinds of image present
        assert torch.equal(aug.apply(x, params), _gather_reference(aug, x, params))
    # all-jittered, none-jittered, all-gray, none-blurred batches are fine too (no `any()` shortcut needed)
    p = aug.sample_params(16, 20, 18, _gen(9))
    for fld, val in (("jitter", True), ("jitter", False), ("gray", True), ("blur", False)):
        q = p[torch.arange(16)]
        setattr(q, fld, torch.full((16,), val))
        assert torch.equal(aug.apply(x, q), _gather_reference(aug, x, q)), (fld, val)


def test_fixed_order_per_image_loop_equals_batch():
    x = _x(6, 3, 18, 14)
    aug = SimCLRAugment(10, strength=1.0, blur=True, blur_p=0.5, blur_sigma=(0.1, 2.0))
    params = aug.sample_params(6, 18, 14, _gen(11))
    batched = aug.apply(x, params)
    for i in range(6):
        assert torch.equal(aug.apply(x[i:i + 1], params[i]), batched[i:i + 1])


def test_random_draws_unchanged_fixed_values():
    """Regression: the draw order of sample_params is unchanged, so old seeds give the old parameters."""
    aug = SimCLRAugment(8, strength=1.0)
    p = aug.sample_params(2, 8, 8, _gen(0))
    g = _gen(0)
    boxes = sample_crop_boxes(2, 8, 8, aug.scale, aug.ratio, g)
    flip = torch.rand(2, generator=g) < 0.5
    jit = torch.rand(2, generator=g) < 0.8
    uf = torch.rand((2, 4), generator=g)
    lo = torch.tensor([0.2, 0.2, 0.2, -0.2])
    hi = torch.tensor([1.8, 1.8, 1.8, 0.2])
    torch.rand((2, 4), generator=g)  # order permutation (drawn even for the fixed order)
    gray = torch.rand(2, generator=g) < 0.2
    assert torch.equal(p.boxes, boxes) and torch.equal(p.flip, flip) and torch.equal(p.jitter, jit)
    assert torch.equal(p.factors, lo + (hi - lo) * uf) and torch.equal(p.gray, gray)


class _HostSync(AssertionError):
    pass


@pytest.fixture
def deny_host_sync(monkeypatch):
    """Make every host-synchronising tensor operation raise (on CUDA each would block on the device)."""
    def patch():
        def boom(*a, **k):
            raise _HostSync("host synchronisation")

        def full_reduction_only(orig):  # t.any(dim=0) stays on the device; t.any() is what `if` would read
            def f(*a, **k):
                if len(a) > 1 or "dim" in k:
                    return orig(*a, **k)
                raise _HostSync("host synchronisation")
            return f
        for name in ("nonzero", "item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__",
                     "unique", "masked_select"):
            monkeypatch.setattr(torch.Tensor, name, boom)
        for name in ("nonzero", "unique", "masked_select", "argwhere", "tensor"):
            monkeypatch.setattr(torch, name, boom)
        for name in ("any", "all"):
            monkeypatch.setattr(torch.Tensor, name, full_reduction_only(getattr(torch.Tensor, name)))
            monkeypatch.setattr(torch, name, full_reduction_only(getattr(torch, name)))
    return patch


@pytest.mark.parametrize("channels", [1, 3])
def test_default_path_makes_no_host_sync(deny_host_sync, channels):
    x = _x(8, channels, 20, 20)
    aug = SimCLRAugment(16, strength=1.0, blur=True, blur_p=0.5)
    rnd = SimCLRAugment(16, strength=1.0, blur=True, blur_p=0.5, jitter_order="random")
    aug.sample_params(8, 20, 20, _gen(0))  # first call per device builds the factor bounds (torch.tensor)
    expect = aug(x, _gen(1))
    p_rnd = rnd.sample_params(8, 20, 20, _gen(1))
    deny_host_sync()
    params = aug.sample_params(8, 20, 20, _gen(1))  # no torch.tensor / host sync once the bounds are cached
    got = aug.apply(x, params)
    assert torch.equal(got, expect)
    assert torch.equal(aug(x, _gen(1)), expect)
    with pytest.raises(_HostSync):  # the deny-list is effective: the random-order path gathers with nonzero
        rnd.apply(x, p_rnd)


def test_hsv_to_rgb_gather_equals_where_chain_reference():
    """hsv_to_rgb picks one of (v, q, p, t) per channel and hue sector; reference: the plain where-chain over the
    six sectors (torchvision's table), bit for bit, including h = 1 (sector 6 -> 0), h < 0 and h > 1."""
    from experiments.augment import hsv_to_rgb
    g = _gen(3)
    hsv = torch.rand((2, 3, 8, 9), generator=g)
    hsv[0, 0, 0, :6] = torch.tensor([0.0, 1.0, 1 - 2 ** -24, 1 / 6, 5 / 6, 0.5])
    hsv[1, 0] = torch.randn((8, 9), generator=g) * 4
    hsv[1, 1, :2] = 0.0  # zero saturation
    h, s, v = hsv.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    sector = i.to(torch.int64) % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    table = ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))
    ref = torch.zeros_like(hsv)
    for c in range(3):
        for k in range(6):
            ref[:, c] = torch.where(sector == k, table[c][k], ref[:, c])
    assert torch.equal(hsv_to_rgb(hsv), ref)
