"""SimCLR augmentations in plain batched torch (paper App. A; Chen et al., 2020, App. A).

Pipeline, per image, in this order (as in SimCLR):
  1. random resized crop to ``size x size``: area fraction ~ U(scale) (default (0.08, 1)), aspect ratio
     log-uniform in ``ratio`` (default (3/4, 4/3)), 10 attempts then a centre-crop fallback, exactly the
     sampling rule of torchvision's ``RandomResizedCrop``; the crop is resampled bilinearly with ONE
     ``affine_grid`` + ``grid_sample`` call for the whole batch (no antialiasing filter);
  2. horizontal flip with probability ``flip_p`` (0.5), folded into the same affine map;
  3. colour jitter with probability ``jitter_p`` (0.8): brightness, contrast, saturation, hue with
     strengths (0.8 s, 0.8 s, 0.8 s, 0.2 s) for ``strength`` s unless given explicitly; factors are
     U[max(0, 1 - x), 1 + x] (hue: U[-x, x]); the ops follow torchvision's ``adjust_*`` formulas.
     Order: ``jitter_order="fixed"`` (default: brightness, contrast, saturation, hue) or ``"random"``
     (a fresh permutation per image, as torchvision's ``ColorJitter``);
  4. grayscale with probability ``gray_p`` (0.2), ITU-R 601 weights (0.299, 0.587, 0.114), replicated;
  5. gaussian blur with probability ``blur_p``, kernel ``blur_kernel`` x ``blur_kernel``, sigma ~
     U(blur_sigma), reflect padding. ``blur=None`` (default) switches it on only for ``size > 32``
     (SimCLR's CIFAR recipe has no blur). Defaults follow the paper's App. A: p = 0.1, 3 x 3, sigma = 1.5.

GPU readiness: with ``jitter_order="fixed"`` (the default) :meth:`SimCLRAugment.apply` is a fixed sequence of
batched kernels with no data-dependent shapes and no host synchronisation: every colour op, the grayscale
conversion and the blur run on the whole batch and ``torch.where`` selects them per image (images not selected
pass through bit for bit). ``jitter_order="random"`` gathers per-op sub-batches (``torch.nonzero``: host syncs).

Every random number is drawn from the ``torch.Generator`` passed in (it must live on the images'
device), in a fixed order and always for every parameter, so equal generator states give bit-identical
views. One-channel images: saturation, hue and grayscale are no-ops (their random numbers are still drawn).
Input float32 / bfloat16 / float16 in [0, 1] (or uint8, read as /255 and returned float32); the work is
done in float32 and the result is cast back to the input dtype. Output is clamped to [0, 1]
(only float rounding can leave it).

Presets: :meth:`SimCLRAugment.for_dataset` gives the paper's App. A settings per dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GRAY_WEIGHTS",
    "AugParams",
    "SimCLRAugment",
    "sample_crop_boxes",
    "resized_crop",
    "rgb_to_grayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "gaussian_blur",
]

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision / PIL "L"


# ----------------------------------------------------------------------------------------------------
# functional ops (batched; per-image factors of shape (B,))
# ----------------------------------------------------------------------------------------------------
def _per_image(f: Tensor, x: Tensor) -> Tensor:
    return f.to(x.dtype).reshape(-1, 1, 1, 1)


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """Luma 0.299 R + 0.587 G + 0.114 B. Shape: (B, 3, H, W) -> (B, 1, H, W); (B, 1, H, W) unchanged."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """clamp(f x, 0, 1). Shape: x (B, C, H, W), factor (B,)."""
    return (x * _per_image(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """clamp(f x + (1 - f) m, 0, 1), m = mean grayscale value of each image. Shape: x (B, C, H, W), factor (B,)."""
    f = _per_image(factor, x)
    m = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return (f * x + (1.0 - f) * m).clamp_(0.0, 1.0)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """clamp(f x + (1 - f) gray(x), 0, 1) (per pixel); identity for 1 channel. Shape: x (B, C, H, W), factor (B,)."""
    if x.shape[1] == 1:
        return x
    f = _per_image(factor, x)
    return (f * x + (1.0 - f) * rgb_to_grayscale(x)).clamp_(0.0, 1.0)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB in [0, 1] -> HSV with h in [0, 1) (torchvision's formula). Shape: (B, 3, H, W) -> (B, 3, H, W)."""
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    minc = x.amin(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    crd = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


# candidate numbers (0 v, 1 q, 2 p, 3 t) of the R, G, B channels for hue sectors 0..5, 2 bits per sector
_HSV_SECTOR_CODES = tuple(sum(c << (2 * k) for k, c in enumerate(row))
                          for row in ((0, 1, 2, 2, 3, 0), (3, 0, 0, 1, 2, 2), (2, 2, 3, 0, 0, 1)))


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV (h in [0, 1)) -> RGB in [0, 1] (torchvision's formula). Shape: (B, 3, H, W) -> (B, 3, H, W)."""
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    shift = torch.remainder(i, 6.0).to(torch.int32) * 2  # 2 * sector, sector = floor(6 h) mod 6 in 0..5
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    # sector -> (R, G, B) = ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))[c][sector]: one gather from
    # the stacked candidates, the candidate number read from a 2-bit-per-sector code (no host-to-device table)
    cand = torch.stack((v, q, p, t), dim=1)
    idx = torch.stack([(code >> shift) & 3 for code in _HSV_SECTOR_CODES], dim=1).to(torch.int64)
    return cand.gather(1, idx)


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Rotate the hue by ``factor`` (fraction of a turn, in [-0.5, 0.5]); identity for 1 channel.

    Shape: x (B, C, H, W), factor (B,).
    """
    if x.shape[1] == 1:
        return x
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + factor.to(x.dtype).reshape(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable gaussian blur with a per-image sigma, reflect padding (torchvision's ``gaussian_blur``).

    Kernel taps at offsets -(k-1)/2..(k-1)/2, weights exp(-t^2 / (2 sigma^2)) normalised to sum 1.
    Shape: x (B, C, H, W), sigma (B,) -> (B, C, H, W).
    """
    B, C, H, W = x.shape
    half = kernel_size // 2
    if half >= min(H, W):
        raise ValueError(f"blur_kernel must be < 2 * min(H, W) - 1 for reflect padding, got {kernel_size} for {H}x{W}")
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - (kernel_size - 1) / 2.0
    k = torch.exp(-0.5 * (t[None, :] / sigma.to(x.dtype)[:, None]) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(C, dim=0)  # (B*C, k)
    y = F.pad(x.reshape(1, B * C, H, W), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k.reshape(B * C, 1, 1, kernel_size), groups=B * C)
    y = F.conv2d(y, k.reshape(B * C, 1, kernel_size, 1), groups=B * C)
    return y.reshape(B, C, H, W)


def sample_crop_boxes(n: int, height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                      generator: torch.Generator, device: torch.device | str = "cpu", attempts: int = 10) -> Tensor:
    """torchvision ``RandomResizedCrop.get_params`` for a batch: boxes (top, left, h, w) in integer pixels.

    Per attempt: area = H W U(scale), r = exp(U(log ratio)), w = round(sqrt(area r)), h = round(sqrt(area / r));
    the first attempt with 0 < w <= W and 0 < h <= H wins, top ~ U{0..H-h}, left ~ U{0..W-w}. No valid
    attempt: the largest centred crop with aspect ratio clipped to ``ratio``.

    Shape: -> (n, 4) float32 (top, left, h, w).
    """
    area = float(height * width)
    u_area = torch.rand((attempts, n), generator=generator, device=device, dtype=torch.float64)
    u_ratio = torch.rand((attempts, n), generator=generator, device=device, dtype=torch.float64)
    u_top = torch.rand((n,), generator=generator, device=device, dtype=torch.float64)
    u_left = torch.rand((n,), generator=generator, device=device, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
    lr0, lr1 = math.log(ratio[0]), math.log(ratio[1])
    r = torch.exp(lr0 + (lr1 - lr0) * u_ratio)
    w = torch.round(torch.sqrt(target * r))
    h = torch.round(torch.sqrt(target / r))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.to(torch.int8), dim=0)  # first valid attempt (0 if none)
    any_ok = ok.any(dim=0)
    w_sel = w.gather(0, first[None]).squeeze(0)
    h_sel = h.gather(0, first[None]).squeeze(0)
    # fallback: centre crop
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    w_sel = torch.where(any_ok, w_sel, torch.full_like(w_sel, fw))
    h_sel = torch.where(any_ok, h_sel, torch.full_like(h_sel, fh))
    top = torch.where(any_ok, torch.floor(u_top * (height - h_sel + 1)), torch.full_like(h_sel, (height - fh) // 2))
    left = torch.where(any_ok, torch.floor(u_left * (width - w_sel + 1)), torch.full_like(w_sel, (width - fw) // 2))
    return torch.stack((top, left, h_sel, w_sel), dim=1).to(torch.float32)


def resized_crop(x: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """Crop boxes (top, left, h, w) (pixel edges) resampled bilinearly to ``size x size``; optional h-flip.

    One ``affine_grid`` + ``grid_sample`` call (align_corners=False: normalised -1/+1 are the outer pixel
    edges), so output pixel centre u in [0, size) samples the input at left + (u + 0.5) w / size - 0.5.
    Shape: x (B, C, H, W), boxes (B, 4), flip (B,) bool -> (B, C, size, size).
    """
    B, C, H, W = x.shape
    top, left, h, w = boxes.to(x.dtype).unbind(1)
    sx = w / W
    sy = h / H
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    tx = (2.0 * left + w) / W - 1.0
    ty = (2.0 * top + h) / H - 1.0
    zero = torch.zeros_like(sx)
    theta = torch.stack((torch.stack((sx, zero, tx), 1), torch.stack((zero, sy, ty), 1)), 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [B, C, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ----------------------------------------------------------------------------------------------------
# parameters and the augmentation
# ----------------------------------------------------------------------------------------------------
@dataclass
class AugParams:
    """All random choices for one batch (index with ``params[i]`` / ``params[i:j]`` for a sub-batch).

    Shape: boxes (B, 4) (top, left, h, w); flip, jitter, gray, blur (B,) bool; factors (B, 4)
    (brightness, contrast, saturation, hue); order (B, 4) op ids (0 b, 1 c, 2 s, 3 h); sigma (B,).
    """

    boxes: Tensor
    flip: Tensor
    jitter: Tensor
    factors: Tensor
    order: Tensor
    gray: Tensor
    blur: Tensor
    sigma: Tensor

    def __getitem__(self, idx: int | slice | Tensor) -> "AugParams":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return AugParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def __len__(self) -> int:
        return int(self.flip.shape[0])


def _check_prob(name: str, p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= float(p) <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {name}={p!r}")
    return float(p)


def _check_range(name: str, r: object, lo: float, hi: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in r)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max), got {name}={r!r}") from None
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name} must satisfy {lo} <= min <= max <= {hi}, got {name}={r!r}")
    return a, b


class SimCLRAugment:
    """SimCLR view generator (see module docstring for the pipeline and its randomness).

    ``aug(images, generator)``: Shape (B, C, H, W) in [0, 1] -> (B, C, size, size), same dtype.
    ``aug.sample_params(B, H, W, generator, device)`` and ``aug.apply(images, params)`` split the two halves.
    """

    def __init__(self, size: int, strength: float = 0.5, blur: bool | None = None, *,
                 scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
                 flip_p: float = 0.5, jitter_p: float = 0.8,
                 brightness: float | None = None, contrast: float | None = None,
                 saturation: float | None = None, hue: float | None = None,
                 jitter_order: str = "fixed", gray_p: float = 0.2,
                 blur_p: float = 0.1, blur_kernel: int = 3, blur_sigma: float | Sequence[float] = 1.5) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got size={size!r}")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (strength >= 0):
            raise ValueError(f"strength must be a number >= 0, got strength={strength!r}")
        self.size = size
        self.strength = float(strength)
        self.scale = _check_range("scale", scale, 0.0, 1.0)
        if self.scale[1] <= 0:
            raise ValueError(f"scale must have max > 0, got scale={scale!r}")
        self.ratio = _check_range("ratio", ratio, 1e-6, 1e6)
        self.flip_p = _check_prob("flip_p", flip_p)
        self.jitter_p = _check_prob("jitter_p", jitter_p)
        s = self.strength
        self.brightness = 0.8 * s if brightness is None else float(brightness)
        self.contrast = 0.8 * s if contrast is None else float(contrast)
        self.saturation = 0.8 * s if saturation is None else float(saturation)
        self.hue = 0.2 * s if hue is None else float(hue)
        for n in ("brightness", "contrast", "saturation"):
            if not getattr(self, n) >= 0:
                raise ValueError(f"{n} must be >= 0, got {n}={getattr(self, n)!r}")
        if not (0.0 <= self.hue <= 0.5):
            raise ValueError(f"hue must be in [0, 0.5], got hue={self.hue!r}")
        if jitter_order not in ("fixed", "random"):
            raise ValueError(f"jitter_order must be 'fixed' or 'random', got jitter_order={jitter_order!r}")
        self.jitter_order = jitter_order
        self.gray_p = _check_prob("gray_p", gray_p)
        self.blur = bool(size > 32) if blur is None else bool(blur)
        self.blur_p = _check_prob("blur_p", blur_p)
        if isinstance(blur_kernel, bool) or not isinstance(blur_kernel, int) or blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be an odd integer >= 1, got blur_kernel={blur_kernel!r}")
        self.blur_kernel = blur_kernel
        if isinstance(blur_sigma, (int, float)) and not isinstance(blur_sigma, bool):
            blur_sigma = (float(blur_sigma), float(blur_sigma))
        self.blur_sigma = _check_range("blur_sigma", blur_sigma, 1e-6, 1e6)

    @classmethod
    def for_dataset(cls, name: str, size: int | None = None, **kw) -> "SimCLRAugment":
        """The paper's App. A settings.

        * ``mini-imagenet``: size 224, jitter (0.8, 0.8, 0.8, 0.2), blur p = 0.1, 3 x 3, sigma = 1.5;
        * ``tiny-imagenet``: size 64, jitter (0.8, 0.8, 0.4, 0.1), same blur;
        * ``cifar10`` / ``cifar100`` / ``synthetic``: size 32, jitter (0.8, 0.8, 0.4, 0.1), no blur;
        * ``fashion-mnist``: size 28, jitter (0.8, 0.8, -, -) (1 channel), no blur (our choice, not in the paper).
        ``kw`` override any argument.
        """
        key = str(name).lower().replace("_", "-")
        table = {
            "mini-imagenet": dict(size=224, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur=True),
            "tiny-imagenet": dict(size=64, brightness=0.8, contrast=0.8, saturation=0.4, hue=0.1, blur=True),
            "cifar10": dict(size=32, brightness=0.8, contrast=0.8, saturation=0.4, hue=0.1, blur=False),
            "cifar100": dict(size=32, brightness=0.8, contrast=0.8, saturation=0.4, hue=0.1, blur=False),
            "synthetic": dict(size=32, brightness=0.8, contrast=0.8, saturation=0.4, hue=0.1, blur=False),
            "fashion-mnist": dict(size=28, brightness=0.8, contrast=0.8, saturation=0.4, hue=0.1, blur=False),
        }
        if key not in table:
            raise ValueError(f"name must be one of {tuple(table)}, got name={name!r}")
        args = dict(table[key])
        if size is not None:
            args["size"] = size
        args.update(kw)
        return cls(**args)

    def __repr__(self) -> str:
        return (f"SimCLRAugment(size={self.size}, scale={self.scale}, ratio={self.ratio}, flip_p={self.flip_p}, "
                f"jitter_p={self.jitter_p}, b/c/s/h=({self.brightness:.3g}, {self.contrast:.3g}, "
                f"{self.saturation:.3g}, {self.hue:.3g}), jitter_order={self.jitter_order!r}, gray_p={self.gray_p}, "
                f"blur={self.blur}, blur_p={self.blur_p}, blur_kernel={self.blur_kernel}, blur_sigma={self.blur_sigma})")

    # -- randomness ---------------------------------------------------------------------------------
    def _factor_bounds(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """(lo, hi - lo) of the four jitter factors as float32 (4,) tensors on ``device``, built once per device:
        ``torch.tensor(..., device="cuda")`` is a blocking host-to-device copy, so it must not run every batch."""
        cache = self.__dict__.setdefault("_bounds_cache", {})
        key = (device, self.brightness, self.contrast, self.saturation, self.hue)
        hit = cache.get(key)
        if hit is None:
            lo = torch.tensor([max(0.0, 1.0 - self.brightness), max(0.0, 1.0 - self.contrast),
                               max(0.0, 1.0 - self.saturation), -self.hue])
            hi = torch.tensor([1.0 + self.brightness, 1.0 + self.contrast, 1.0 + self.saturation, self.hue])
            hit = cache[key] = (lo.to(device), (hi - lo).to(device))
        return hit

    def sample_params(self, n: int, height: int, width: int, generator: torch.Generator,
                      device: torch.device | str = "cpu") -> AugParams:
        """Draw every random choice for ``n`` images of size ``height x width`` (fixed draw order)."""
        g, dev = generator, torch.device(device)

        def u(*shape: int) -> Tensor:
            return torch.rand(shape, generator=g, device=dev, dtype=torch.float32)

        boxes = sample_crop_boxes(n, height, width, self.scale, self.ratio, g, dev)
        flip = u(n) < self.flip_p
        jitter = u(n) < self.jitter_p
        uf = u(n, 4)
        lo, span = self._factor_bounds(dev)
        factors = lo + span * uf
        perm = torch.argsort(u(n, 4), dim=1)
        order = perm if self.jitter_order == "random" else torch.arange(4, device=dev).expand(n, 4).clone()
        gray = u(n) < self.gray_p
        blur = (u(n) < self.blur_p) & self.blur
        sig = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * u(n)
        return AugParams(boxes, flip, jitter, factors, order, gray, blur, sig)

    # -- application --------------------------------------------------------------------------------
    def apply(self, images: Tensor, params: AugParams) -> Tensor:
        """Apply drawn parameters. Shape: images (B, C, H, W), params of length B -> (B, C, size, size)."""
        if not isinstance(images, Tensor) or images.dim() != 4:
            raise ValueError(f"images must be a (B, C, H, W) tensor, got shape {tuple(getattr(images, 'shape', ()))}")
        if images.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got C={images.shape[1]}")
        if len(params) != images.shape[0]:
            raise ValueError(f"params must have one entry per image, got {len(params)} for B={images.shape[0]}")
        out_dtype = torch.float32 if images.dtype == torch.uint8 else images.dtype
        if not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError(f"images must be float in [0, 1] or uint8, got dtype={images.dtype}")
        x = images.to(torch.float32)
        if images.dtype == torch.uint8:
            x = x / 255.0
        x = resized_crop(x, params.boxes, self.size, params.flip)
        if self.jitter_order == "fixed":
            x = self._jitter_fixed(x, params)
        else:
            x = self._jitter_random(x, params)
        if x.shape[1] == 3:
            x = torch.where(params.gray.reshape(-1, 1, 1, 1), rgb_to_grayscale(x).expand_as(x), x)
        if self.blur:
            x = torch.where(params.blur.reshape(-1, 1, 1, 1), gaussian_blur(x, params.sigma, self.blur_kernel), x)
        return x.clamp_(0.0, 1.0).to(out_dtype)

    def _jitter_fixed(self, x: Tensor, p: AugParams) -> Tensor:
        """Fixed order (brightness, contrast, saturation, hue), sync-free: each op runs on the WHOLE batch and
        ``torch.where`` keeps the result only for images with ``jitter`` True (the others pass through bit for
        bit). A fixed sequence of batched kernels with no data-dependent shapes or host synchronisation; per
        image the values equal those of running the op on that image alone (all ops act per image).
        ``p.order`` is not read (it is the identity for ``jitter_order="fixed"``)."""
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        n_ops = 2 if x.shape[1] == 1 else 4  # saturation / hue are no-ops on one channel
        keep = p.jitter.reshape(-1, 1, 1, 1)
        for k in range(n_ops):
            x = torch.where(keep, ops[k](x, p.factors[:, k]), x)
        return x

    def _jitter_random(self, x: Tensor, p: AugParams) -> Tensor:
        """Random per-image order: stage by stage, each jittered image runs op ``order[i, stage]`` on its own
        sub-batch (gathered with ``torch.nonzero``: data-dependent shapes, one host sync per stage and op)."""
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        n_ops = 2 if x.shape[1] == 1 else 4  # saturation / hue are no-ops on one channel
        x = x.clone()
        for stage in range(4):
            op_ids = p.order[:, stage]
            for k in range(n_ops):
                idx = torch.nonzero(p.jitter & (op_ids == k)).squeeze(1)
                if idx.numel():
                    x[idx] = ops[k](x[idx], p.factors[idx, k])
        return x

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Augment a batch. Shape: (B, C, H, W) -> (B, C, size, size). ``generator`` on ``images.device``."""
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        gdev, idev = torch.device(generator.device), images.device
        if gdev.type != idev.type or (gdev.type != "cpu" and (gdev.index or 0) != (idev.index or 0)):
            raise ValueError(f"generator must be on the images' device {idev}, got generator on {gdev}")
        B, _, H, W = images.shape
        return self.apply(images, self.sample_params(B, H, W, generator, idev))
