"""Tests for experiments/models.py: shapes, parameter counts of the standard CIFAR ResNets, init by seed."""

from __future__ import annotations

import pytest
import torch

from experiments.models import (
    ARCHS,
    SimCLRModel,
    build_encoder,
    build_simclr_model,
    count_parameters,
)

FEATURE_DIM = {"mlp": 256, "small_cnn": 128, "resnet18": 512, "resnet50": 2048, "vit_tiny": 128, "vit_base": 768}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [(3, 32), (1, 28)])
def test_output_shapes(arch, shape):
    c, s = shape
    scaled = arch.startswith("resnet") or arch == "vit_base"  # width 0.25 keeps the big encoders fast
    width = 0.25 if scaled else 1.0
    enc = build_encoder(arch, in_channels=c, width=width, image_size=s, seed=0)
    expected = FEATURE_DIM[arch] * (width if scaled else 1)
    assert enc.feature_dim == int(expected)
    model = SimCLRModel(enc, proj_hidden=32, proj_dim=8, num_classes=5, seed=1)
    x = torch.rand(2, c, s, s)
    h, z = model(x)
    assert h.shape == (2, enc.feature_dim) and z.shape == (2, 8)
    assert model.logits(x).shape == (2, 5)


def test_parameter_counts_match_standard_cifar_resnets():
    # torchvision's ImageNet models minus fc and with the 7x7x3x64 stem replaced by 3x3x3x64:
    # resnet18 11,689,512 - fc (512*1000+1000) - 7*7*3*64 + 3*3*3*64; resnet50 25,557,032 - (2048*1000+1000) - ...
    stem_diff = 7 * 7 * 3 * 64 - 3 * 3 * 3 * 64
    r18 = 11_689_512 - (512 * 1000 + 1000) - stem_diff
    r50 = 25_557_032 - (2048 * 1000 + 1000) - stem_diff
    assert r18 == 11_168_832 and r50 == 23_500_352
    assert count_parameters(build_encoder("resnet18")) == r18
    assert count_parameters(build_encoder("resnet50")) == r50
    sc = count_parameters(build_encoder("small_cnn"))
    assert 80_000 <= sc <= 150_000
    # projector of Sec. 5: 2048 -> 2048 -> 128
    m = build_simclr_model("resnet50", proj_dim=128, num_classes=10)
    assert m.projector[0].in_features == 2048 and m.projector[0].out_features == 2048
    assert m.projector[2].out_features == 128 and m.head.in_features == 128 and m.head.out_features == 10
    assert count_parameters(m.projector) == 2048 * 2048 + 2048 + 2048 * 128 + 128


def test_identical_init_by_seed_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = build_simclr_model("resnet18", width=0.25, proj_hidden=16, proj_dim=8, num_classes=3, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_simclr_model("resnet18", width=0.25, proj_hidden=16, proj_dim=8, num_classes=3, seed=7)
    c = build_simclr_model("resnet18", width=0.25, proj_hidden=16, proj_dim=8, num_classes=3, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["backbone.conv1.weight"], sc["backbone.conv1.weight"])
    e1 = build_encoder("small_cnn", seed=torch.Generator().manual_seed(3))
    e2 = build_encoder("small_cnn", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(e1.parameters(), e2.parameters()))


def test_init_statistics():
    enc = build_encoder("resnet18", seed=0)
    w = enc.layer3[0].conv1.weight.detach()  # 256 x 128 x 3 x 3, Kaiming fan_out: std sqrt(2 / (256 * 9))
    assert abs(float(w.std()) / (2.0 / (256 * 9)) ** 0.5 - 1.0) < 0.02
    assert torch.equal(enc.bn1.weight, torch.ones(64)) and torch.equal(enc.bn1.bias, torch.zeros(64))
    m = SimCLRModel(enc, 64, 16, seed=0)
    lin = m.projector[0].requires_grad_(False)
    bound = 1.0 / 512 ** 0.5
    assert float(lin.weight.abs().max()) <= bound and float(lin.weight.abs().max()) > 0.9 * bound


def test_channels_last_matches_contiguous():
    m = build_simclr_model("resnet18", width=0.125, proj_hidden=16, proj_dim=8, seed=0).eval()
    x = torch.rand(2, 3, 16, 16)
    h0, z0 = m(x)
    m_cl = m.to(memory_format=torch.channels_last)
    h1, z1 = m_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(h0, h1, atol=1e-5) and torch.allclose(z0, z1, atol=1e-5)


def test_backward_and_bad_arguments():
    m = build_simclr_model("small_cnn", proj_hidden=16, proj_dim=8, seed=0)
    h, z = m(torch.rand(4, 3, 12, 12))
    z.square().sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match="arch must be one of"):
        build_encoder("vit")
    with pytest.raises(ValueError, match="width must be a number > 0"):
        build_encoder("resnet18", width=0)
    with pytest.raises(ValueError, match="logits needs a CE head"):
        m.logits(torch.rand(2, 3, 12, 12))
    with pytest.raises(ValueError, match="mlp expects inputs with 3072 values"):
        build_encoder("mlp", image_size=32)(torch.rand(2, 3, 28, 28))
