"""Tests for experiments/data.py: loaders read tiny fake files written here, in the real formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.data import (
    FASHION_MNIST_DIRS,
    ImageDataset,
    balanced_indices,
    class_subset,
    fixed_subset,
    load_cifar,
    load_dataset,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
    synthetic_images,
)


# ---------------------------------------------------------------------------------------------- container
def _tiny(n=6, c=3, classes=3):
    imgs = torch.arange(n * c * 4 * 4, dtype=torch.int64).reshape(n, c, 4, 4).remainder(256).to(torch.uint8)
    return ImageDataset(imgs, torch.arange(n) % classes, classes, "tiny")


def test_image_dataset_validation_and_to_float():
    ds = _tiny()
    assert len(ds) == 6 and ds.channels == 3 and ds.image_size == (4, 4)
    x = ds.to_float()
    assert x.dtype == torch.float32 and torch.allclose(x * 255.0, ds.images.float())
    assert torch.equal(ds.to_float(torch.tensor([2, 0])), x[[2, 0]])
    assert ds.to_float(dtype=torch.float64).dtype == torch.float64
    assert torch.equal(ds.class_counts(), torch.tensor([2, 2, 2]))
    sub = ds.subset([5, 1])
    assert torch.equal(sub.images, ds.images[[5, 1]]) and torch.equal(sub.labels, torch.tensor([2, 1]))
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(ds.images.float(), ds.labels, 3, "x")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ImageDataset(ds.images, ds.labels, 2, "x")
    with pytest.raises(ValueError, match="one entry per image"):
        ImageDataset(ds.images, ds.labels[:3], 3, "x")
    with pytest.raises(ValueError, match="class_names"):
        ImageDataset(ds.images, ds.labels, 3, "x", ["a"])


# ---------------------------------------------------------------------------------------------- synthetic
def test_synthetic_deterministic_shapes_and_seed():
    a = synthetic_images(4, 5, size=16, channels=3, seed=1)
    b = synthetic_images(4, 5, size=16, channels=3, seed=1)
    c = synthetic_images(4, 5, size=16, channels=3, seed=2)
    assert a.images.shape == (20, 3, 16, 16) and a.images.dtype == torch.uint8
    assert torch.equal(a.labels, torch.arange(4).repeat_interleave(5))
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    g = synthetic_images(3, 2, size=12, channels=1, seed=0)
    assert g.images.shape == (6, 1, 12, 12)
    # class k does not depend on how many classes are generated
    many = synthetic_images(1000, 1, size=8, seed=3)
    few = synthetic_images(10, 1, size=8, seed=3)
    assert many.num_classes == 1000 and len(many.class_names) == 1000
    assert torch.equal(many.images[:10], few.images)
    with pytest.raises(ValueError, match="num_classes"):
        synthetic_images(0)
    with pytest.raises(ValueError, match="split"):
        synthetic_images(2, 2, split="val")


def test_synthetic_is_class_structured():
    """Nearest class mean in pixel space (fit on train) classifies the test split (fresh samples) far above
    chance (0.1; measured 0.785 at seed 0), while within-class samples vary (shifts, clutter, colour, noise)."""
    tr = synthetic_images(10, 20, size=32, seed=0, split="train")
    te = synthetic_images(10, 20, size=32, seed=0, split="test")
    assert not torch.equal(tr.images, te.images)
    xtr = tr.to_float().flatten(1).double()
    xte = te.to_float().flatten(1).double()
    means = torch.stack([xtr[tr.labels == k].mean(0) for k in range(10)])
    pred = torch.cdist(xte, means).argmin(1)
    assert (pred == te.labels).double().mean() >= 0.6
    within = xtr[tr.labels == 0].std(0).mean()
    assert within > 0.1


# ---------------------------------------------------------------------------------------------- IDX / Fashion-MNIST
def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


def _write_fmnist(root: Path, n=7, prefix="train", gz=True, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labs = rng.integers(0, 10, size=n, dtype=np.uint8)
    for stem, arr in ((f"{prefix}-images-idx3-ubyte", imgs), (f"{prefix}-labels-idx1-ubyte", labs)):
        data = _idx_bytes(arr)
        if gz:
            (root / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (root / stem).write_bytes(data)
    return imgs, labs


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_root(tmp_path, gz):
    imgs, labs = _write_fmnist(tmp_path, n=7, prefix="t10k", gz=gz)
    ds = load_fashion_mnist(tmp_path, split="test")
    assert ds.images.shape == (7, 1, 28, 28) and ds.num_classes == 10 and ds.class_names[9] == "Ankle boot"
    assert np.array_equal(ds.images[:, 0].numpy(), imgs)
    assert np.array_equal(ds.labels.numpy(), labs.astype(np.int64))
    assert torch.equal(load_dataset("fashion-mnist", tmp_path, "test").images, ds.images)


def test_read_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "a-idx3-ubyte"
    p.write_bytes(_idx_bytes(arr))
    assert np.array_equal(read_idx(p, ndim=3), arr)
    with pytest.raises(ValueError, match=r"a-idx3-ubyte: expected IDX magic number 0x00000801"):
        read_idx(p, ndim=1)
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + p.read_bytes()[4:])
    with pytest.raises(ValueError, match=r"bad-idx3-ubyte: expected IDX magic number 0x00000803, got 0x12340803"):
        read_idx(bad, ndim=3)
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"short-idx3-ubyte: expected 24 data bytes for dims \(2, 3, 4\), got 23"):
        read_idx(short, ndim=3)
    notgz = tmp_path / "x-idx3-ubyte.gz"
    notgz.write_bytes(p.read_bytes())
    with pytest.raises(ValueError, match=r"x-idx3-ubyte.gz: expected a gzip file"):
        read_idx(notgz)
    trunc = tmp_path / "t-idx3-ubyte.gz"
    trunc.write_bytes(gzip.compress(p.read_bytes())[:-6])
    with pytest.raises(ValueError, match=r"t-idx3-ubyte.gz: corrupt gzip"):
        read_idx(trunc)


def test_fashion_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as ei:
        load_fashion_mnist(tmp_path, split="train")
    msg = str(ei.value)
    assert "\n" not in msg and str(tmp_path / "train-images-idx3-ubyte.gz") in msg
    assert str(tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte") in msg
    _write_fmnist(tmp_path, n=5)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(ValueError, match="expected 5 labels"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.full(5, 12, np.uint8))))
    with pytest.raises(ValueError, match="expected labels in 0..9"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(tmp_path, split="val")


@pytest.mark.skipif(not (FASHION_MNIST_DIRS[0] / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package():
    ds = load_fashion_mnist(split="test")
    assert ds.images.shape == (10000, 1, 28, 28)
    assert torch.equal(ds.class_counts(), torch.full((10,), 1000))


# ---------------------------------------------------------------------------------------------- CIFAR
def _cifar_data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path: Path, obj, protocol=None) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def _write_cifar10(root: Path, n=2):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = []
    for i in range(1, 6):
        data = _cifar_data(n, i)
        labels = [(i + j) % 10 for j in range(n)]
        # protocol 2 (as the original archives; numpy payloads go through _codecs.encode in Python 3)
        _dump(d / f"data_batch_{i}", {b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": []}, 2)
        batches.append((data, labels))
    _dump(d / "test_batch", {b"labels": [3] * n, b"data": _cifar_data(n, 9)})
    _dump(d / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072})
    return d, batches


def test_cifar10_fake_archive(tmp_path):
    d, batches = _write_cifar10(tmp_path, n=2)
    ds = load_cifar(tmp_path, 10, "train")
    assert ds.images.shape == (10, 3, 32, 32) and ds.num_classes == 10 and ds.class_names[4] == "c4"
    data = np.concatenate([b[0] for b in batches])
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32 x 32
    for (k, c, h, w) in [(0, 0, 0, 0), (3, 1, 5, 7), (9, 2, 31, 30)]:
        assert int(ds.images[k, c, h, w]) == int(data[k, c * 1024 + h * 32 + w])
    assert ds.labels.tolist() == [lab for b in batches for lab in b[1]]
    te = load_cifar(d, 10, "test")  # the extracted folder itself also works
    assert len(te) == 2 and te.labels.tolist() == [3, 3]
    assert torch.equal(load_dataset("cifar10", tmp_path, "test").images, te.images)


def test_cifar100_fake_archive(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    data = _cifar_data(3, 0)
    _dump(d / "train", {b"data": data, b"fine_labels": [0, 99, 42], b"coarse_labels": [0, 19, 3]})
    _dump(d / "test", {b"data": data[:1], b"fine_labels": [7], b"coarse_labels": [1]})
    _dump(d / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)], b"coarse_label_names": []})
    ds = load_cifar(tmp_path, 100, "train")
    assert ds.num_classes == 100 and ds.labels.tolist() == [0, 99, 42] and ds.class_names[99] == "f99"
    assert np.array_equal(ds.images.reshape(3, -1).numpy(), data)
    assert load_dataset("cifar100", tmp_path, "test").labels.tolist() == [7]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1"):
        load_cifar(tmp_path, 10)
    with pytest.raises(ValueError, match="num_classes must be 10 or 100"):
        load_cifar(tmp_path, 20)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    _dump(d / "train", {b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]})
    with pytest.raises(ValueError, match=r"train: expected b'data' uint8 of shape \(N, 3072\)"):
        load_cifar(tmp_path, 100)
    _dump(d / "train", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match="expected keys b'data' and b'fine_labels'"):
        load_cifar(tmp_path, 100)
    _dump(d / "train", {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100]})
    with pytest.raises(ValueError, match=r"expected labels in 0..99"):
        load_cifar(tmp_path, 100)
    _dump(d / "train", {b"data": _Evil(), b"fine_labels": [0]})
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        load_cifar(tmp_path, 100)
    (d / "train").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="could not unpickle"):
        load_cifar(tmp_path, 100)


# ---------------------------------------------------------------------------------------------- image folders
def _png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_image_folder_layouts_and_values(tmp_path):
    rng = np.random.default_rng(0)
    a = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(3)]
    _png(tmp_path / "cat" / "0.png", a[0])
    _png(tmp_path / "cat" / "1.png", a[1])
    _png(tmp_path / "ant" / "images" / "x.png", a[2])  # Tiny-ImageNet train layout
    (tmp_path / "ant" / "ant_boxes.txt").write_text("x.png 0 0 1 1\n")
    ds = load_image_folder(tmp_path)
    assert ds.class_names == ["ant", "cat"] and ds.labels.tolist() == [0, 1, 1]
    assert ds.images.shape == (3, 3, 6, 5)
    assert np.array_equal(ds.images[0].permute(1, 2, 0).numpy(), a[2])
    assert np.array_equal(ds.images[2].permute(1, 2, 0).numpy(), a[1])
    r = load_image_folder(tmp_path, size=4)
    assert r.images.shape == (3, 3, 4, 4)
    g = load_image_folder(tmp_path, channels=1)
    assert g.images.shape == (3, 1, 6, 5)
    # load_dataset("folder") prefers root/split
    assert load_dataset("folder", tmp_path.parent / tmp_path.name, "train").num_classes == 2


def test_tiny_imagenet_val_layout(tmp_path):
    v = tmp_path / "val"
    _png(v / "images" / "val_0.png", np.zeros((4, 4, 3), np.uint8))
    _png(v / "images" / "val_1.png", np.full((4, 4, 3), 9, np.uint8))
    (v / "val_annotations.txt").write_text("val_0.png\tn02\t0\t0\t3\t3\nval_1.png\tn01\t0\t0\t3\t3\n")
    ds = load_dataset("folder", tmp_path, "val", class_names=["n00", "n01", "n02"])
    assert ds.num_classes == 3 and ds.labels.tolist() == [2, 1] and int(ds.images[1].max()) == 9


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="looked at"):
        load_image_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="no sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: expected image files"):
        load_image_folder(tmp_path)
    (tmp_path / "empty").rmdir()
    _png(tmp_path / "a" / "ok.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"broken.png: expected a decodable image"):
        load_image_folder(tmp_path)
    (tmp_path / "a" / "broken.png").unlink()
    _png(tmp_path / "b" / "big.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="big.png: expected image size 4x4"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=3).images.shape == (2, 3, 3, 3)


def test_load_dataset_unknown_and_synthetic():
    with pytest.raises(ValueError, match="name must be one of"):
        load_dataset("imagenet22k")
    ds = load_dataset("synthetic", split="test", num_classes=3, n_per_class=2, size=8)
    assert ds.name == "synthetic3-test" and len(ds) == 6


# ---------------------------------------------------------------------------------------------- subsets
def test_class_subset():
    ds = synthetic_images(10, 3, size=8, seed=0)
    sub = class_subset(ds, 4, seed=5)
    chosen = np.sort(np.random.default_rng(5).choice(10, 4, replace=False))
    assert sub.num_classes == 4 and sub.class_names == [f"class{c}" for c in chosen]
    assert torch.equal(sub.labels, torch.arange(4).repeat_interleave(3))
    for new, old in enumerate(chosen):  # images follow their labels
        assert torch.equal(sub.images[sub.labels == new], ds.images[ds.labels == int(old)])
    assert class_subset(ds, 4, seed=5).class_names == sub.class_names
    assert class_subset(ds, 4, seed=6).class_names != sub.class_names
    with pytest.raises(ValueError, match="num_classes must be <= 10"):
        class_subset(ds, 11, seed=0)


def test_fixed_subset_balanced_and_deterministic():
    ds = synthetic_images(4, 10, size=8)
    s = fixed_subset(ds, 10, seed=1)
    counts = sorted(s.class_counts().tolist())
    assert counts == [2, 2, 3, 3]
    assert torch.equal(s.images, fixed_subset(ds, 10, seed=1).images)
    assert not torch.equal(s.images, fixed_subset(ds, 10, seed=2).images)
    # imbalanced: class 0 has 1 sample -> gives 1, the others make up the shortfall
    labels = torch.tensor([0] + [1] * 10 + [2] * 10)
    idx = balanced_indices(labels, 9, 3, np.random.default_rng(0))
    assert len(set(idx.tolist())) == 9
    assert sorted(torch.bincount(labels[idx], minlength=3).tolist()) == [1, 4, 4]
    with pytest.raises(ValueError, match="n must be <= 40"):
        fixed_subset(ds, 41, seed=0)
