"""ViT encoders (experiments/vit.py): SDPA attention against an explicit softmax(QK^T/sqrt d)V loop, block and
model shapes, gradient flow to every parameter, deterministic initialisation, ViT-Base size, lockstep training."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.data import synthetic_images
from experiments.models import ARCHS, build_encoder, build_simclr_model, count_parameters
from experiments.train import LockstepTrainer, TrainConfig
from experiments.vit import Attention, VisionTransformer, auto_patch_size, build_vit, reference_attention

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_reference_attention_matches_hand_computation():
    # one query, two keys: weights softmax([q.k1, q.k2]/sqrt(d)) written out by hand
    q = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    v = torch.tensor([[[[2.0, 0.0], [0.0, 4.0]]]], dtype=torch.float64)
    w1 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1.0)
    out = reference_attention(q, k, v)
    assert torch.allclose(out, torch.tensor([[[[2.0 * w1, 4.0 * (1 - w1)]]]], dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("heads,N,d", [(1, 5, 4), (3, 7, 8)])
def test_attention_module_equals_loop_reference(heads, N, d):
    torch.manual_seed(0)
    att = Attention(heads * d, heads).double()
    x = torch.randn(2, N, heads * d, dtype=torch.float64)
    q, k, v = att.split_heads(x)
    ref = reference_attention(q, k, v).transpose(1, 2).reshape(2, N, heads * d)
    ref = att.proj(ref)
    assert torch.allclose(att(x), ref, atol=1e-12, rtol=1e-12)


def test_sdpa_float32_close_to_float64_reference():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 6, 8, generator=g) for _ in range(3))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    ref = reference_attention(q.double(), k.double(), v.double())
    assert torch.allclose(out.double(), ref, atol=1e-5)


@pytest.mark.parametrize("image,p", [(224, 16), (64, 8), (32, 4), (28, 4), (84, 4), (8, 1)])
def test_auto_patch_size(image, p):
    assert auto_patch_size(image) == p


def test_bad_patch_size_is_one_line_error():
    with pytest.raises(ValueError, match="patch_size must be an integer >= 1 dividing image_size=32, got patch_size=5"):
        VisionTransformer(3, 32, patch_size=5)


@pytest.mark.parametrize("arch,ch,size,dim", [("vit_tiny", 1, 28, 64), ("vit_tiny", 3, 32, 64)])
def test_shapes_and_gradient_reaches_every_parameter(arch, ch, size, dim):
    enc = build_encoder(arch, ch, width=0.5, image_size=size, seed=0)
    assert enc.feature_dim == dim
    x = torch.rand(3, ch, size, size)
    h = enc(x)
    assert h.shape == (3, dim)
    h.pow(2).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_wrong_image_size_is_refused():
    enc = build_encoder("vit_tiny", 3, 0.5, 32)
    with pytest.raises(ValueError, match="ViT built for 32 x 32 images, got shape"):
        enc(torch.rand(1, 3, 28, 28))


def test_registered_and_deterministic_and_global_rng_untouched():
    assert "vit_tiny" in ARCHS and "vit_base" in ARCHS
    state = torch.random.get_rng_state()
    a = build_encoder("vit_tiny", 3, 0.5, 32, seed=3)
    b = build_encoder("vit_tiny", 3, 0.5, 32, seed=3)
    c = build_encoder("vit_tiny", 3, 0.5, 32, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (n, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb), n
    assert not torch.equal(a.pos_embed, c.pos_embed) and float(a.pos_embed.detach().std()) == pytest.approx(0.02, rel=0.2)


def test_vit_base_size():
    # ViT-B/16 backbone at 224: 12 blocks x 7,087,872 + patch embedding 590,592 + CLS 768 + 197 x 768 positions
    # + final LayerNorm 1,536 = 85,798,656 (the published ViT-B/16 without its classification head)
    with torch.device("meta"):
        enc = build_vit("vit_base", 3, 224)
    assert (enc.feature_dim, enc.patch_size, enc.num_patches) == (768, 16, 196)
    block = 4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
    assert count_parameters(enc) == 12 * block + (3 * 16 * 16 * 768 + 768) + 768 + 197 * 768 + 2 * 768
    assert count_parameters(enc) == 85_798_656


def test_simclr_model_and_lockstep_trainer_with_vit():
    ds = synthetic_images(num_classes=4, n_per_class=8, size=16, seed=0)
    m = build_simclr_model("vit_tiny", 3, 0.25, 16, proj_hidden=16, proj_dim=8)
    assert m(torch.rand(2, 3, 16, 16))[1].shape == (2, 8)
    cfg = TrainConfig(losses=("CL", "NSCL"), arch="vit_tiny", width=0.25, proj_hidden=16, proj_dim=8, batch_size=16,
                      tau=0.5, epochs=1, lr=0.05, device="cpu")
    tr = LockstepTrainer(cfg, ds, quiet=True)
    w0 = {n: p.detach().clone() for n, p in tr.models["CL"].named_parameters()}
    assert all(torch.equal(w0[n], p) for n, p in tr.models["NSCL"].named_parameters())  # same init
    tr.fit()
    assert tr.step == 2
    moved = [n for n, p in tr.models["CL"].named_parameters() if not torch.equal(w0[n], p)]
    assert "backbone.pos_embed" in moved and "backbone.blocks.0.attn.qkv.weight" in moved
    assert not torch.equal(tr.models["CL"].backbone.pos_embed, tr.models["NSCL"].backbone.pos_embed)
