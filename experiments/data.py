"""Image datasets for the encoder experiments (paper Sec. 5 and App. A).

Every loader returns an :class:`ImageDataset` holding the whole split in memory as ``uint8``
``(N, C, H, W)`` images and ``long`` ``(N,)`` labels in ``0..num_classes-1``:

* :func:`synthetic_images`   class-conditional images generated in-process (no files; CPU-sized runs),
* :func:`load_fashion_mnist` IDX files (``.gz`` or raw); default location is where Debian's
  ``dataset-fashion-mnist`` package installs them (``/usr/share/datasets/fashion-mnist``),
* :func:`load_cifar`         CIFAR-10 / CIFAR-100 python-pickle archives, extracted,
* :func:`load_image_folder`  one sub-folder per class (Tiny-ImageNet / mini-ImageNet layouts),
* :func:`load_dataset`       dispatcher by name,
* :func:`class_subset`       C'-way training on a random class subset (Fig. 3),
* :func:`fixed_subset`       class-balanced fixed reference set (for CKA / RSA measurements).

Errors are one line: a malformed file raises ``ValueError`` naming the file and what was expected,
a missing file raises ``FileNotFoundError`` naming every path looked at.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "noisy_labels",
    "DATASET_NAMES",
    "FASHION_MNIST_DIRS",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "ImageDataset",
    "synthetic_images",
    "read_idx",
    "load_fashion_mnist",
    "load_cifar",
    "load_image_folder",
    "load_dataset",
    "class_subset",
    "fixed_subset",
    "balanced_indices",
]

DATASET_NAMES = ("synthetic", "fashion-mnist", "cifar10", "cifar100", "folder")

#: Where Debian's ``dataset-fashion-mnist`` package puts the four ``*-idx*-ubyte.gz`` files.
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Integral, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def _check_split(split: object, allowed: Sequence[str] = ("train", "test")) -> str:
    if split not in allowed:
        raise ValueError(f"split must be one of {tuple(allowed)}, got split={split!r}")
    return str(split)


# ----------------------------------------------------------------------------------------------------
# container
# ----------------------------------------------------------------------------------------------------
@dataclass
class ImageDataset:
    """A whole split in memory.

    Shape: images (N, C, H, W) uint8 in [0, 255]; labels (N,) int64 in [0, num_classes).
    ``class_names`` (optional) has length ``num_classes``.
    """

    images: Tensor
    labels: Tensor
    num_classes: int
    name: str
    class_names: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = (getattr(self.images, "dtype", type(self.images)), tuple(getattr(self.images, "shape", ())))
            raise ValueError(f"images must be a uint8 tensor of shape (N, C, H, W), got {got}")
        if not isinstance(self.labels, Tensor) or self.labels.dtype != torch.long or self.labels.dim() != 1:
            got = (getattr(self.labels, "dtype", type(self.labels)), tuple(getattr(self.labels, "shape", ())))
            raise ValueError(f"labels must be an int64 tensor of shape (N,), got {got}")
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"labels must have one entry per image, got {self.labels.shape[0]} labels for {self.images.shape[0]} images"
            )
        self.num_classes = _check_int("num_classes", self.num_classes, 1)
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got range [{int(self.labels.min())}, {int(self.labels.max())}]"
            )
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
            if len(self.class_names) != self.num_classes:
                raise ValueError(
                    f"class_names must have num_classes={self.num_classes} entries, got {len(self.class_names)}"
                )

    # -- shape helpers ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def class_counts(self) -> Tensor:
        """Shape: (num_classes,) int64 number of samples per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    # -- conversions -------------------------------------------------------------------------------
    def to_float(self, indices: Tensor | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        """Images (all, or ``indices``) as ``dtype`` in [0, 1] on ``device``: ``images / 255``.

        Shape: indices (B,) long -> (B, C, H, W); None -> (N, C, H, W).
        The uint8 -> device copy happens before the conversion (4x less traffic than float).
        """
        x = self.images if indices is None else self.images[indices]
        if device is not None:
            x = x.to(device, non_blocking=True)
        return x.to(dtype).div_(255.0)

    def subset(self, indices: Tensor | Sequence[int] | np.ndarray, name: str | None = None) -> "ImageDataset":
        """Rows ``indices`` (labels unchanged)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if idx.dim() != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}), got range [{int(idx.min())}, {int(idx.max())}]")
        return ImageDataset(self.images[idx].contiguous(), self.labels[idx].clone(), self.num_classes,
                            name or self.name, None if self.class_names is None else list(self.class_names))

    def to(self, device: torch.device | str) -> "ImageDataset":
        """Same dataset with images/labels on ``device`` (still uint8)."""
        return ImageDataset(self.images.to(device), self.labels.to(device), self.num_classes, self.name,
                            None if self.class_names is None else list(self.class_names))

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"ImageDataset(name={self.name!r}, N={n}, C={c}, H={h}, W={w}, num_classes={self.num_classes})"


# ----------------------------------------------------------------------------------------------------
# synthetic
# ----------------------------------------------------------------------------------------------------
_FREQS_MAX = 3  # low-frequency field: integer wave vectors 1 <= |k|_inf <= 3


def _fourier_basis(size: int) -> np.ndarray:
    """cos/sin plane waves of the low-frequency field. Shape: (2F, size, size) float32."""
    ks = [(kx, ky) for kx in range(0, _FREQS_MAX + 1) for ky in range(-_FREQS_MAX, _FREQS_MAX + 1)
          if (kx > 0 or ky > 0) and not (kx == 0 and ky < 0)]
    y, x = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    waves = []
    for kx, ky in ks:
        phase = 2.0 * np.pi * (kx * x + ky * y) / size
        amp = 1.0 / np.hypot(kx, ky)  # 1/|k| spectrum: smooth fields
        waves.append(amp * np.cos(phase))
        waves.append(amp * np.sin(phase))
    return np.stack(waves).astype(np.float32)


def _class_template(rng: np.random.Generator, size: int, channels: int, basis: np.ndarray) -> np.ndarray:
    """One class template in [0, 1]: smooth random colour field + 2-3 class-specific shapes.

    Shape: -> (channels, size, size) float32.
    """
    coef = rng.standard_normal((channels, basis.shape[0])).astype(np.float32)
    fieldv = np.tensordot(coef, basis, axes=1)  # (C, S, S)
    fieldv -= fieldv.mean(axis=(1, 2), keepdims=True)
    fieldv /= np.abs(fieldv).max(axis=(1, 2), keepdims=True) + 1e-12  # [-1, 1]; the field is never constant
    base = rng.uniform(0.25, 0.75, size=(channels, 1, 1)).astype(np.float32)
    tmpl = base + 0.25 * fieldv
    yy, xx = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    for _ in range(int(rng.integers(2, 4))):
        kind = int(rng.integers(0, 4))  # disk, square, ring, bar
        cy, cx = rng.uniform(0.2, 0.8, size=2) * size
        r = rng.uniform(0.1, 0.22) * size
        if kind == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif kind == 1:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        elif kind == 2:
            d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            mask = (d <= r) & (d >= 0.55 * r)
        else:
            ang = rng.uniform(0.0, np.pi)
            u = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)
            v = -(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)
            mask = (np.abs(u) <= 1.6 * r) & (np.abs(v) <= 0.3 * r)
        colour = rng.uniform(0.0, 1.0, size=(channels, 1, 1)).astype(np.float32)
        tmpl = np.where(mask[None], colour, tmpl)
    return np.clip(tmpl, 0.0, 1.0).astype(np.float32)


def _paint_distractors(x: Tensor, count: int, gen: torch.Generator) -> Tensor:
    """Paint ``count`` random disks / squares of random colour on every image (sample-specific clutter).

    Shape: x (n, C, S, S) float -> same.
    """
    n, c, s, _ = x.shape
    centre = torch.arange(s, dtype=torch.float32) + 0.5
    yy, xx = centre[None, :, None], centre[None, None, :]
    for _ in range(count):
        cy = torch.rand((n, 1, 1), generator=gen) * s
        cx = torch.rand((n, 1, 1), generator=gen) * s
        r = (0.06 + 0.12 * torch.rand((n, 1, 1), generator=gen)) * s
        square = torch.rand((n, 1, 1), generator=gen) < 0.5
        colour = torch.rand((n, c, 1, 1), generator=gen)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        box = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
        mask = torch.where(square, box, disk)
        x = torch.where(mask[:, None], colour, x)
    return x


def synthetic_images(num_classes: int = 10, n_per_class: int = 100, size: int = 32, channels: int = 3,
                     seed: int = 0, split: str = "train", noise: float = 0.08,
                     max_shift: int | None = None, distractors: int = 2, colour_var: float = 0.25) -> ImageDataset:
    """Class-conditional synthetic images, generated in-process and deterministic in ``seed``.

    Class k has a template drawn from ``numpy.random.default_rng([seed, k, 0])``: a smooth random colour
    field (plane waves with integer wave vectors 1 <= |k|_inf <= 3 and a 1/|k| spectrum, around a random
    mean colour) with 2-3 class-specific shapes (disk, square, ring, bar) painted on it. A sample is the
    template (periodically extended) circularly shifted by up to ``max_shift`` pixels (default size // 8),
    with ``distractors`` sample-specific random disks / squares painted on, times a gain U[0.8, 1.2] and a
    per-channel colour gain U[1 - colour_var, 1 + colour_var] (so mean colour is a weak class cue), plus an
    offset U[-0.1, 0.1] and N(0, noise^2) pixel noise, clipped to [0, 1] and quantised to uint8.
    The ``test`` split shares the templates and draws fresh samples, so a model trained on ``train`` can be
    evaluated on ``test``. Class k is the same for every ``num_classes`` (the first 10 classes of a
    1000-class set equal the 10-class set).

    Memory: only the uint8 output (N C size^2 bytes; 1000 classes x 100 x 3 x 32 x 32 = 307 MB) plus one
    class of float32 work space is held at a time.

    Shape: -> images (num_classes * n_per_class, channels, size, size) uint8, labels class-major.
    """
    num_classes = _check_int("num_classes", num_classes, 1)
    n_per_class = _check_int("n_per_class", n_per_class, 1)
    size = _check_int("size", size, 4)
    channels = _check_int("channels", channels, 1)
    seed = _check_int("seed", seed, 0)
    split = _check_split(split)
    for name, v in (("noise", noise), ("colour_var", colour_var)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v <= 1):
            raise ValueError(f"{name} must be a number in [0, 1], got {name}={v!r}")
    max_shift = size // 8 if max_shift is None else _check_int("max_shift", max_shift, 0)
    distractors = _check_int("distractors", distractors, 0)

    basis = _fourier_basis(size)
    images = torch.empty((num_classes * n_per_class, channels, size, size), dtype=torch.uint8)
    ar = torch.arange(size)
    stream = 1 if split == "train" else 2
    gen = torch.Generator()
    for k in range(num_classes):
        tmpl = torch.from_numpy(_class_template(np.random.default_rng([seed, k, 0]), size, channels, basis))
        gen.manual_seed(int(np.random.default_rng([seed, k, stream]).integers(0, 2**62)))
        dy = torch.randint(-max_shift, max_shift + 1, (n_per_class, 1, 1), generator=gen)
        dx = torch.randint(-max_shift, max_shift + 1, (n_per_class, 1, 1), generator=gen)
        flat = ((ar[None, :, None] - dy) % size) * size + (ar[None, None, :] - dx) % size  # (n, S, S) circular shift
        x = tmpl.reshape(channels, -1)[:, flat.reshape(-1)].reshape(channels, n_per_class, size, size)
        x = _paint_distractors(x.transpose(0, 1), distractors, gen)
        gain = torch.empty((n_per_class, 1, 1, 1)).uniform_(0.8, 1.2, generator=gen)
        cgain = torch.empty((n_per_class, channels, 1, 1)).uniform_(1 - colour_var, 1 + colour_var, generator=gen)
        offset = torch.empty((n_per_class, 1, 1, 1)).uniform_(-0.1, 0.1, generator=gen)
        x = x * (gain * cgain) + offset + noise * torch.randn(x.shape, generator=gen)
        images[k * n_per_class:(k + 1) * n_per_class] = x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    labels = torch.arange(num_classes, dtype=torch.long).repeat_interleave(n_per_class)
    return ImageDataset(images, labels, num_classes, f"synthetic{num_classes}-{split}",
                        [f"class{k}" for k in range(num_classes)])


# ----------------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX)
# ----------------------------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the suffix
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{path}: corrupt gzip stream ({exc})") from None
    if path.suffix == ".gz":
        raise ValueError(f"{path}: expected a gzip file (magic 1f 8b), got first bytes {raw[:2].hex(' ')}")
    return raw


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a numpy array (LeCun's MNIST format).

    Header: two zero bytes, a type byte (0x08 = uint8, ...), the number of dimensions, then one
    big-endian uint32 per dimension. ``ndim`` (if given) is the expected number of dimensions:
    3 for images (magic 0x00000803), 1 for labels (0x00000801). Raises ValueError (one line naming the
    file) for a wrong magic, a wrong ``ndim`` or a payload size that differs from the header's.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: expected an IDX header (>= 4 bytes), got {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    zero, dtype_code, nd = data[0:2], data[2], data[3]
    want = f"0x{(0x0800 | ndim):08x}" if ndim is not None else "0x000008dd"
    if zero != b"\x00\x00" or dtype_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: expected IDX magic number {want}, got 0x{magic:08x}")
    if ndim is not None and (nd != ndim or dtype_code != 0x08):
        raise ValueError(f"{path}: expected IDX magic number {want} (uint8, {ndim}-D), got 0x{magic:08x}")
    header = 4 + 4 * nd
    if len(data) < header:
        raise ValueError(f"{path}: expected a {header}-byte IDX header, got {len(data)} bytes")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd))
    dt = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: expected {expected} data bytes for dims {dims}, got {len(data) - header}")
    return np.frombuffer(data, dtype=dt, offset=header).reshape(dims).astype(dt.newbyteorder("="))


def _find_file(dirs: Sequence[Path], stems: Sequence[str], what: str) -> Path:
    looked: list[str] = []
    for d in dirs:
        for stem in stems:
            for cand in (d / (stem + ".gz"), d / stem):
                looked.append(str(cand))
                if cand.is_file():
                    return cand
    raise FileNotFoundError(f"{what} not found; looked at: {', '.join(looked)}")


def load_fashion_mnist(root: str | os.PathLike | None = None, split: str = "train") -> ImageDataset:
    """Fashion-MNIST (Xiao et al., 2017) from its four IDX files: 60000 train / 10000 test, 28 x 28 x 1.

    Looks for ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in ``root``, ``root/raw`` and
    ``root/FashionMNIST/raw`` when ``root`` is given, else in ``$FASHION_MNIST_DIR`` (if set) and
    ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package ``dataset-fashion-mnist``).

    Shape: -> images (N, 1, 28, 28) uint8, labels (N,) in 0..9.
    """
    split = _check_split(split)
    if root is not None:
        r = Path(root)
        dirs = [r, r / "raw", r / "FashionMNIST" / "raw", r / "fashion-mnist"]
    else:
        dirs = ([Path(os.environ["FASHION_MNIST_DIR"])] if os.environ.get("FASHION_MNIST_DIR") else [])
        dirs += list(FASHION_MNIST_DIRS)
    prefix = "train" if split == "train" else "t10k"
    img_path = _find_file(dirs, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"],
                          f"Fashion-MNIST {split} images")
    lab_path = _find_file([img_path.parent] + [d for d in dirs if d != img_path.parent],
                          [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"],
                          f"Fashion-MNIST {split} labels")
    images = read_idx(img_path, ndim=3)
    labels = read_idx(lab_path, ndim=1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{lab_path}: expected {images.shape[0]} labels (one per image in {img_path.name}), "
                         f"got {labels.shape[0]}")
    if labels.size and int(labels.max()) > 9:
        raise ValueError(f"{lab_path}: expected labels in 0..9, got max label {int(labels.max())}")
    return ImageDataset(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                        10, f"fashion-mnist-{split}", list(FASHION_MNIST_CLASSES))


# ----------------------------------------------------------------------------------------------------
# CIFAR (python pickles)
# ----------------------------------------------------------------------------------------------------
class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds what CIFAR archives contain (dicts, lists, bytes, numpy arrays)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
        ("__builtin__", "object"), ("builtins", "object"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: expected a CIFAR python pickle, could not unpickle it ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    if "data" not in d or label_key not in d:
        raise ValueError(f"{path}: expected keys b'data' and b'{label_key}', got {sorted(map(str, d))}")
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: expected b'data' uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    labels = np.asarray(d[label_key], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: expected {data.shape[0]} labels in b'{label_key}', got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: expected labels in 0..{num_classes - 1}, got range "
                         f"[{labels.min()}, {labels.max()}]")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(root: str | os.PathLike, num_classes: int = 10, split: str = "train") -> ImageDataset:
    """CIFAR-10 / CIFAR-100 (Krizhevsky, 2009) from the extracted python-pickle archives.

    ``root`` is the extracted folder (``cifar-10-batches-py`` with ``data_batch_1..5``, ``test_batch``,
    ``batches.meta``; ``cifar-100-python`` with ``train``, ``test``, ``meta``, fine labels) or its parent.
    Pickles are read with ``encoding='bytes'`` through an unpickler that only admits numpy arrays.

    Shape: -> images (N, 3, 32, 32) uint8 (50000 train / 10000 test), labels (N,).
    """
    if num_classes not in (10, 100) or isinstance(num_classes, bool):
        raise ValueError(f"num_classes must be 10 or 100 for CIFAR, got num_classes={num_classes!r}")
    split = _check_split(split)
    if root is None:
        raise ValueError("root must be the folder holding the extracted CIFAR archive, got root=None")
    root = Path(root)
    sub = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    if num_classes == 10:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key, meta_name, meta_key = "labels", "batches.meta", "label_names"
    else:
        names = ["train"] if split == "train" else ["test"]
        label_key, meta_name, meta_key = "fine_labels", "meta", "fine_label_names"
    base = None
    for cand in (root / sub, root):
        if (cand / names[0]).is_file():
            base = cand
            break
    if base is None:
        looked = [str(root / sub / names[0]), str(root / names[0])]
        hint = ""
        archive = root / ("cifar-10-python.tar.gz" if num_classes == 10 else "cifar-100-python.tar.gz")
        if archive.is_file():
            hint = f" (found {archive}: extract it first with tar -xzf)"
        raise FileNotFoundError(f"CIFAR-{num_classes} {split} file not found; looked at: {', '.join(looked)}{hint}")
    parts = []
    for n in names:
        p = base / n
        if not p.is_file():
            raise FileNotFoundError(f"CIFAR-{num_classes} {split} file not found; looked at: {p}")
        parts.append(_cifar_batch(p, label_key, num_classes))
    images = np.concatenate([a for a, _ in parts])
    labels = np.concatenate([b for _, b in parts])
    class_names = None
    meta = base / meta_name
    if meta.is_file():
        m = _load_pickle(meta)
        raw = m.get(meta_key)
        if raw is not None and len(raw) == num_classes:
            class_names = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in raw]
    if class_names is None and num_classes == 10:
        class_names = list(CIFAR10_CLASSES)
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), num_classes,
                        f"cifar{num_classes}-{split}", class_names)


# ----------------------------------------------------------------------------------------------------
# image folders
# ----------------------------------------------------------------------------------------------------
def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _decode(path: Path, size: int | None, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None:
                w, h = im.size
                s = size / min(w, h)  # shorter side -> size, then centre crop (aspect kept)
                nw, nh = max(size, round(w * s)), max(size, round(h * s))
                if (nw, nh) != (w, h):
                    im = im.resize((nw, nh), Image.BICUBIC)
                left, top = (nw - size) // 2, (nh - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: expected a decodable image file, PIL failed ({exc})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def load_image_folder(root: str | os.PathLike, size: int | None = None, channels: int = 3,
                      class_names: Sequence[str] | None = None) -> ImageDataset:
    """One sub-folder per class (sorted folder names = classes 0..C-1), decoded with PIL.

    Accepted layouts: ``root/<class>/<img>`` (mini-ImageNet, ImageNet) and ``root/<class>/images/<img>``
    (Tiny-ImageNet ``train``); a Tiny-ImageNet ``val`` folder (``images/`` plus ``val_annotations.txt``)
    is read through its annotation file. ``size`` resizes the shorter side to ``size`` (bicubic) and
    centre-crops to ``size x size``; without it all images must share one size. ``channels`` = 3 (RGB)
    or 1 (L). ``class_names`` fixes the class list and order (e.g. a val split with the train classes).

    Shape: -> images (N, channels, H, W) uint8, labels (N,).
    """
    root = Path(root)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3, got channels={channels!r}")
    if size is not None:
        size = _check_int("size", size, 1)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found; looked at: {root}")
    mode = "RGB" if channels == 3 else "L"

    ann = root / "val_annotations.txt"
    items: list[tuple[Path, str]] = []
    if ann.is_file() and (root / "images").is_dir():
        for line_no, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise ValueError(f"{ann}:{line_no}: expected '<file>\\t<class>...', got {line!r}")
            items.append((root / "images" / parts[0], parts[1]))
        found = sorted({c for _, c in items})
    else:
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise ValueError(f"{root}: expected one sub-folder per class, found no sub-folders")
        found = []
        for d in class_dirs:
            files = _list_images(d / "images") if (d / "images").is_dir() else _list_images(d)
            if not files:
                raise ValueError(f"{d}: expected image files ({', '.join(IMAGE_EXTENSIONS)}), found none")
            found.append(d.name)
            items.extend((f, d.name) for f in files)
    names = list(found) if class_names is None else [str(c) for c in class_names]
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted(set(found) - set(index))
    if unknown:
        raise ValueError(f"{root}: class folders {unknown[:5]} are not in the given class_names")
    if not items:
        raise ValueError(f"{root}: expected image files, found none")

    arrays, labels = [], []
    shape0 = None
    for path, cls in items:
        arr = _decode(path, size, mode)
        if shape0 is None:
            shape0 = arr.shape
        elif arr.shape != shape0:
            raise ValueError(f"{path}: expected image size {shape0[1]}x{shape0[0]} like the first image "
                             f"(pass size= to resize), got {arr.shape[1]}x{arr.shape[0]}")
        arrays.append(arr)
        labels.append(index[cls])
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageDataset(images, torch.tensor(labels, dtype=torch.long), len(names), root.name or str(root), names)


# ----------------------------------------------------------------------------------------------------
# dispatcher and subsets
# ----------------------------------------------------------------------------------------------------
def load_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train", **kw: Any) -> ImageDataset:
    """Load a dataset by name: ``synthetic | fashion-mnist | cifar10 | cifar100 | folder``.

    ``synthetic``: ``kw`` go to :func:`synthetic_images` (root ignored). ``folder``: reads ``root/split``
    if that folder exists (e.g. ``tiny-imagenet-200/train``), else ``root``; ``kw`` go to
    :func:`load_image_folder`.
    """
    key = str(name).lower().replace("_", "-")
    if key == "synthetic":
        return synthetic_images(split=split, **kw)
    if key in ("fashion-mnist", "fashionmnist", "fmnist"):
        return load_fashion_mnist(root, split=split, **kw)
    if key in ("cifar10", "cifar-10"):
        return load_cifar(root, num_classes=10, split=split, **kw)
    if key in ("cifar100", "cifar-100"):
        return load_cifar(root, num_classes=100, split=split, **kw)
    if key == "folder":
        if root is None:
            raise ValueError("root must be given for name='folder', got root=None")
        r = Path(root)
        ds = load_image_folder(r / split if (r / split).is_dir() else r, **kw)
        return ds
    raise ValueError(f"name must be one of {DATASET_NAMES}, got name={name!r}")


def class_subset(ds: ImageDataset, num_classes: int, seed: int) -> ImageDataset:
    """C'-way dataset: ``num_classes`` classes drawn without replacement by ``default_rng(seed)``.

    Kept classes in increasing original order are relabelled 0..C'-1, so the same ``seed`` and
    ``num_classes`` select the same classes on the train and the test split.
    """
    num_classes = _check_int("num_classes", num_classes, 1)
    if num_classes > ds.num_classes:
        raise ValueError(f"num_classes must be <= {ds.num_classes} (classes in {ds.name}), got num_classes={num_classes}")
    seed = _check_int("seed", seed, 0)
    chosen = np.sort(np.random.default_rng(seed).choice(ds.num_classes, size=num_classes, replace=False))
    remap = torch.full((ds.num_classes,), -1, dtype=torch.long)
    remap[torch.as_tensor(chosen)] = torch.arange(num_classes)
    new = remap[ds.labels.cpu()]
    keep = torch.nonzero(new >= 0).squeeze(1)
    names = ([ds.class_names[c] for c in chosen] if ds.class_names is not None else [str(int(c)) for c in chosen])
    return ImageDataset(ds.images[keep.to(ds.images.device)].contiguous(), new[keep].to(ds.labels.device),
                        num_classes, f"{ds.name}[{num_classes}-way,seed={seed}]", names)


def balanced_indices(labels: Tensor, n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct indices, as class-balanced as the class counts allow, sorted.

    Quota n // C per class plus one for ``n % C`` randomly chosen classes; a class with fewer samples
    than its quota gives all it has and the shortfall goes (again balanced) to the others.

    Shape: labels (N,) -> (n,) int64.
    """
    lab = labels.cpu().numpy()
    pools = [rng.permutation(np.flatnonzero(lab == c)) for c in range(num_classes)]
    take = np.zeros(num_classes, dtype=np.int64)
    remaining = n
    while remaining > 0:
        open_ = np.array([c for c in range(num_classes) if take[c] < len(pools[c])])
        if open_.size == 0:
            break
        q, r = divmod(remaining, open_.size)
        extra = np.zeros(open_.size, dtype=np.int64)
        extra[rng.choice(open_.size, size=r, replace=False)] = 1
        for c, e in zip(open_, q + extra):
            got = min(int(e), len(pools[c]) - int(take[c]))
            take[c] += got
            remaining -= got
    return np.sort(np.concatenate([pools[c][: take[c]] for c in range(num_classes)]).astype(np.int64))


def fixed_subset(ds: ImageDataset, n: int, seed: int) -> ImageDataset:
    """Fixed reference set of ``n`` samples, class-balanced where the counts allow (see :func:`balanced_indices`)."""
    n = _check_int("n", n, 1)
    if n > len(ds):
        raise ValueError(f"n must be <= {len(ds)} (samples in {ds.name}), got n={n}")
    seed = _check_int("seed", seed, 0)
    idx = balanced_indices(ds.labels, n, ds.num_classes, np.random.default_rng(seed))
    return ds.subset(torch.from_numpy(idx).to(ds.images.device), name=f"{ds.name}[fixed{n},seed={seed}]")


def noisy_labels(labels: Tensor, num_classes: int, p: float, seed: int) -> Tensor:
    """Random-label control (issue 6 item 8): each label is replaced, with probability ``p`` and independently,
    by a label drawn uniformly from ``{0, ..., num_classes - 1}`` (the draw may equal the old label).

    ``p = 0`` returns an unchanged copy; ``p = 1`` gives i.i.d. uniform labels, independent of the images. The
    draw is fixed by ``seed`` (its own ``torch.Generator``, no global RNG). Shape: labels (N,) long -> (N,) long.

    >>> noisy_labels(torch.tensor([0, 1, 2, 3]), 4, 0.0, seed=0).tolist()
    [0, 1, 2, 3]
    """
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        raise ValueError(f"labels must be a 1-d tensor, got {type(labels).__name__} {tuple(getattr(labels, 'shape', ()))}")
    num_classes = _check_int("num_classes", num_classes, 1)
    seed = _check_int("seed", seed, 0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p must be a number in [0, 1], got p={p!r}")
    out = labels.detach().clone()
    if p == 0.0 or out.numel() == 0:
        return out
    g = torch.Generator().manual_seed(seed)
    n = out.numel()
    replace = torch.rand(n, generator=g, dtype=torch.float64) < float(p)  # p = 1: always (rand < 1)
    draw = torch.randint(num_classes, (n,), generator=g, dtype=torch.long)
    return torch.where(replace.to(out.device), draw.to(out.device, out.dtype), out)
