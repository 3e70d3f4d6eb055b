"""Encoders and the SimCLR model (paper Sec. 5: ResNet-50, width 1, projector 2048 -> 2048 -> 128).

* ResNet-18 / ResNet-50 (He et al., 2016) with the CIFAR stem used by SimCLR on small images: a 3 x 3
  stride-1 convolution, no max-pool; BasicBlock / Bottleneck (stride on the 3 x 3 conv, "v1.5") written
  here; ``width`` multiplies every channel count (64, 128, 256, 512 at width 1).
  Backbone parameters at width 1, 3 input channels: ResNet-18 11,168,832; ResNet-50 23,500,352.
* ``small_cnn``: four 3 x 3 conv-BN-ReLU layers (32, 64, 64, 128 channels x width, strides 1, 2, 2, 2),
  global average pool: 130,464 parameters at width 1, 32,976 at width 0.5; for CPU runs.
* ``mlp``: flatten -> Linear-BN-ReLU (512 x width) -> Linear-BN-ReLU (256 x width); for CPU runs.

Initialisation is deterministic in the ``seed`` (an int or a ``torch.Generator``) and never touches the
global RNG: conv weights Kaiming-normal (fan_out, ReLU) as torchvision's ResNet, BN weight 1 / bias 0,
Linear weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default for ``nn.Linear``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    "ARCHS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet50",
    "SmallCNN",
    "MLPEncoder",
    "build_encoder",
    "SimCLRModel",
    "build_simclr_model",
    "init_weights",
    "count_parameters",
]

ARCHS = ("mlp", "small_cnn", "resnet18", "resnet50", "vit_tiny", "vit_base")  # ViTs: experiments/vit.py


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 or a torch.Generator, got seed={seed!r}")
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def init_weights(module: nn.Module, seed: int | torch.Generator = 0, zero_init_residual: bool = False) -> nn.Module:
    """Re-initialise every Conv / BN / Linear of ``module`` from ``seed`` (in ``module.modules()`` order).

    Conv: N(0, 2 / fan_out) (Kaiming, fan_out, ReLU); BN: weight 1, bias 0, running stats reset;
    Linear: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). ``zero_init_residual`` zeroes the last BN
    weight of each residual block (Goyal et al., 2017). Values are drawn on the CPU and copied.
    """
    g = _generator(seed)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            w = torch.empty(m.weight.shape).normal_(0.0, math.sqrt(2.0 / fan_out), generator=g)
            m.weight.copy_(w)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.reset_running_stats()
            if m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            m.weight.copy_(torch.empty(m.weight.shape).uniform_(-bound, bound, generator=g))
            if m.bias is not None:
                m.bias.copy_(torch.empty(m.bias.shape).uniform_(-bound, bound, generator=g))
    if zero_init_residual:
        for m in module.modules():
            if isinstance(m, BasicBlock):
                m.bn2.weight.zero_()
            elif isinstance(m, Bottleneck):
                m.bn3.weight.zero_()
    return module


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """Residual shortcut: 1x1 conv-BN projection when the block changes the shape, else None (identity)."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut (1x1 conv-BN when shape changes), ReLU."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand (x4), each with BN, + shortcut, ReLU."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


class ResNet(nn.Module):
    """ResNet backbone with the CIFAR stem (3x3 stride-1 conv, BN, ReLU, no max-pool), no fc.

    Shape: (B, in_channels, H, W) -> (B, feature_dim), feature_dim = 512 x width x expansion.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], in_channels: int = 3,
                 width: float = 1.0) -> None:
        super().__init__()
        c0 = _ch(64, width)
        self.conv1 = _conv3x3(in_channels, c0)
        self.bn1 = nn.BatchNorm2d(c0)
        self.relu = nn.ReLU(inplace=True)
        cin = c0
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            p = _ch(planes, width)
            blocks = []
            for j in range(n):
                blocks.append(block(cin, p, stride=2 if (i > 0 and j == 0) else 1))
                cin = p * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def resnet18(in_channels: int = 3, width: float = 1.0) -> ResNet:
    """CIFAR ResNet-18 backbone (BasicBlock, [2, 2, 2, 2]); feature_dim 512 x width."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, width)


def resnet50(in_channels: int = 3, width: float = 1.0) -> ResNet:
    """CIFAR ResNet-50 backbone (Bottleneck, [3, 4, 6, 3]); feature_dim 2048 x width."""
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, width)


class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU layers (32, 64, 64, 128 x width; strides 1, 2, 2, 2), global average pool.

    Shape: (B, in_channels, H, W) -> (B, feature_dim), feature_dim = 128 x width.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        chans = [_ch(c, width) for c in (32, 64, 64, 128)]
        layers: list[nn.Module] = []
        cin = in_channels
        for c, s in zip(chans, (1, 2, 2, 2)):
            layers += [_conv3x3(cin, c, s), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


class MLPEncoder(nn.Module):
    """Flatten -> Linear-BN-ReLU (512 x width) -> Linear-BN-ReLU (256 x width).

    Shape: (B, in_channels, image_size, image_size) -> (B, feature_dim), feature_dim = 256 x width.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, width: float = 1.0) -> None:
        super().__init__()
        h1, h2 = _ch(512, width), _ch(256, width)
        self.in_features = in_channels * image_size * image_size
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(self.in_features, h1), nn.BatchNorm1d(h1), nn.ReLU(inplace=True),
            nn.Linear(h1, h2), nn.BatchNorm1d(h2), nn.ReLU(inplace=True),
        )
        self.feature_dim = h2

    def forward(self, x: Tensor) -> Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(f"mlp expects inputs with {self.in_features} values each, got shape {tuple(x.shape)}")
        return self.net(x)


def build_encoder(arch: str, in_channels: int = 3, width: float = 1.0, image_size: int = 32,
                  seed: int | torch.Generator = 0, zero_init_residual: bool = False) -> nn.Module:
    """Backbone by name (``ARCHS``), deterministically initialised from ``seed``; has ``.feature_dim``.

    ``image_size`` matters only for ``mlp`` (input dimension) and the ViTs (token count); the convolutional
    encoders take any size.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got arch={arch!r}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be an integer >= 1, got in_channels={in_channels!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (0 < width < 1e3):
        raise ValueError(f"width must be a number > 0, got width={width!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be an integer >= 1, got image_size={image_size!r}")
    g = _generator(seed)
    with torch.random.fork_rng(devices=[]):  # constructors' default init must not move the global RNG
        if arch == "resnet18":
            net: nn.Module = resnet18(in_channels, width)
        elif arch == "resnet50":
            net = resnet50(in_channels, width)
        elif arch == "small_cnn":
            net = SmallCNN(in_channels, width)
        elif arch.startswith("vit_"):
            from .vit import build_vit

            net = build_vit(arch, in_channels, image_size, width)
        else:
            net = MLPEncoder(in_channels, image_size, width)
    init_weights(net, g, zero_init_residual)
    if hasattr(net, "reset_tokens"):  # ViT: CLS token and position table from the same generator
        net.reset_tokens(g)
    return net


class SimCLRModel(nn.Module):
    """backbone -> features h; projector Linear(f, proj_hidden) -> ReLU -> Linear(proj_hidden, proj_dim) -> z;
    optional CE head Linear(proj_dim, num_classes) on z (paper Sec. 5).

    ``forward(x)`` returns (h, z): Shape (B, C, H, W) -> ((B, f), (B, proj_dim)). ``logits(x)``: (B, num_classes).
    Projector and head are initialised from ``seed`` (the backbone keeps its own initialisation).
    """

    def __init__(self, backbone: nn.Module, proj_hidden: int = 2048, proj_dim: int = 128,
                 num_classes: int | None = None, seed: int | torch.Generator = 0) -> None:
        super().__init__()
        f = getattr(backbone, "feature_dim", None)
        if not isinstance(f, int):
            raise ValueError("backbone must have an integer attribute feature_dim")
        for name, v in (("proj_hidden", proj_hidden), ("proj_dim", proj_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={v!r}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 1):
            raise ValueError(f"num_classes must be None or an integer >= 1, got num_classes={num_classes!r}")
        self.backbone = backbone
        self.feature_dim = f
        self.proj_dim = proj_dim
        self.num_classes = num_classes
        with torch.random.fork_rng(devices=[]):
            self.projector = nn.Sequential(nn.Linear(f, proj_hidden), nn.ReLU(inplace=True),
                                           nn.Linear(proj_hidden, proj_dim))
            self.head = nn.Linear(proj_dim, num_classes) if num_classes is not None else None
        g = _generator(seed)
        init_weights(self.projector, g)
        if self.head is not None:
            init_weights(self.head, g)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)
        return h, self.projector(h)

    def logits(self, x: Tensor) -> Tensor:
        """CE logits head(projector(backbone(x))). Shape: (B, C, H, W) -> (B, num_classes)."""
        if self.head is None:
            raise ValueError("logits needs a CE head: build SimCLRModel with num_classes=C, got num_classes=None")
        return self.head(self.forward(x)[1])


def build_simclr_model(arch: str, in_channels: int = 3, width: float = 1.0, image_size: int = 32,
                       proj_hidden: int | None = None, proj_dim: int = 128, num_classes: int | None = None,
                       seed: int = 0) -> SimCLRModel:
    """Encoder + projector (+ head), all initialised from ``seed`` (one generator, backbone first).

    ``proj_hidden=None`` uses the backbone's feature_dim (2048 -> 2048 -> 128 for ResNet-50, as Sec. 5).
    """
    g = _generator(seed)
    enc = build_encoder(arch, in_channels, width, image_size, seed=g)
    return SimCLRModel(enc, enc.feature_dim if proj_hidden is None else proj_hidden, proj_dim, num_classes, seed=g)
