"""DDP over two gloo processes on the CPU equals one process on the global batch (to ~1e-6).

BatchNorm cannot be synchronised on the CPU (SyncBatchNorm is GPU-only), so the DDP-vs-one-process test strips
BatchNorm from ``small_cnn`` (nn.Identity); the BatchNorm refusal is tested separately.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from experiments import distributed as D

WORLD = 2
STEPS = 3


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def strip_bn(m: nn.Module) -> nn.Module:
    for name, child in m.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(m, name, nn.Identity())
        else:
            strip_bn(child)
    return m


def _patch_no_bn(train_module) -> None:
    orig = train_module.build_simclr_model
    if getattr(orig, "_no_bn", False):
        return

    def build(*a, **k):
        return strip_bn(orig(*a, **k))

    build._no_bn = True
    train_module.build_simclr_model = build


def _cfg():
    from experiments.train import TrainConfig
    return TrainConfig(losses=("CL", "NSCL", "CE"), arch="small_cnn", width=0.25, proj_hidden=32, proj_dim=16,
                       batch_size=16, tau=0.5, epochs=2, lr=0.2, weight_decay=1e-3, grad_clip=2.0, device="cpu")


def _ds():
    from experiments.data import synthetic_images
    return synthetic_images(num_classes=4, n_per_class=16, size=16, seed=0)


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    ctx = D.init_process_group(rank, WORLD, backend="gloo", master_addr="127.0.0.1", master_port=port)
    try:
        # 1) the gather-with-gradient + loss-scale rule on a toy problem: grad of a global-batch loss
        w = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).reshape(3, 4).requires_grad_(True)
        x_all = torch.arange(8 * 3, dtype=torch.float64).reshape(8, 3) / 10.0
        x = x_all[D.shard_slice(8, ctx)]
        z = D.all_gather_with_grad(torch.tanh(x @ w), ctx)
        loss = torch.logsumexp(z @ z.T, dim=1).mean()
        (loss * D.loss_scale(ctx)).backward()
        g = w.grad.clone()
        torch.distributed.all_reduce(g)
        g /= WORLD  # what DDP does
        # 2) the lockstep trainer under DDP
        import experiments.lockstep as T
        _patch_no_bn(T)
        tr = T.LockstepTrainer(_cfg(), _ds(), dist=ctx, quiet=True)
        seen = []
        tr.models["CL"].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
        tr.fit(max_steps=STEPS)
        torch.save({"toy_loss": loss.detach(), "toy_grad": g,
                    "params": {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in tr.models.items()},
                    "history": tr.history, "local_batch": seen, "digest": tr.manifest_dict()["input_digests"]},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        D.destroy()


def _spawn(out_dir: str, timeout: float = 150.0) -> None:
    port = D.find_free_port()
    pc = mp.spawn(_worker, args=(port, out_dir), nprocs=WORLD, join=False)
    t0 = time.time()
    while not pc.join(timeout=2):
        if time.time() - t0 > timeout:
            for p in pc.processes:
                if p.is_alive():
                    p.terminate()
            pytest.fail(f"DDP workers did not finish within {timeout} s")


def test_ddp_two_gloo_processes_match_one_process(tmp_path, monkeypatch):
    _spawn(str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    # toy: reference gradient of the same global loss in one process (autograd, float64)
    w = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).reshape(3, 4).requires_grad_(True)
    x_all = torch.arange(8 * 3, dtype=torch.float64).reshape(8, 3) / 10.0
    z = torch.tanh(x_all @ w)
    loss = torch.logsumexp(z @ z.T, dim=1).mean()
    loss.backward()
    for r in ranks:
        torch.testing.assert_close(r["toy_loss"], loss.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(r["toy_grad"], w.grad, rtol=1e-12, atol=1e-12)

    # trainer: one process on the global batch of 16
    import experiments.lockstep as T
    monkeypatch.setattr(T, "build_simclr_model", T.build_simclr_model)  # undone after the test
    _patch_no_bn(T)
    single = T.LockstepTrainer(_cfg(), _ds(), quiet=True)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in single.models["CL"].modules())
    single.fit(max_steps=STEPS)
    for r in ranks:
        assert r["local_batch"] == [16] * STEPS  # 2 views x 8 samples per rank (global batch 16)
        for name, m in single.models.items():
            for k, v in m.state_dict().items():
                torch.testing.assert_close(r["params"][name][k], v, rtol=1e-5, atol=1e-6, msg=f"{name}.{k}")
        for hs, hr in zip(single.history, r["history"]):
            assert hs["step"] == hr["step"] and hs["lr"] == hr["lr"]
            for name in hs["loss"]:
                assert hr["loss"][name] == pytest.approx(hs["loss"][name], rel=1e-6, abs=1e-6)
    # both ranks hold the same model (DDP keeps them in sync) but consumed different shards
    for name in single.models:
        for k in single.models[name].state_dict():
            assert torch.equal(ranks[0]["params"][name][k], ranks[1]["params"][name][k])
    assert ranks[0]["digest"]["CL"] != ranks[1]["digest"]["CL"]
    assert ranks[0]["digest"]["CL"] == ranks[0]["digest"]["CE"]


def test_helpers_without_a_process_group():
    ctx = D.DistContext(rank=1, world_size=4)
    assert D.shard_slice(16, ctx) == slice(4, 8)
    assert D.shard_slice(16, None) == slice(0, 16)
    assert D.loss_scale(ctx) == 4.0 and D.loss_scale(None) == 1.0
    with pytest.raises(ValueError, match="batch_size must be divisible by the world size 4, got batch_size=18"):
        D.shard_slice(18, ctx)
    with pytest.raises(ValueError, match="rank must lie in"):
        D.DistContext(rank=2, world_size=2)
    x = torch.randn(3, 2, requires_grad=True)
    assert D.all_gather_with_grad(x, D.DistContext(0, 1)) is x
    from experiments.models import build_simclr_model
    m = build_simclr_model("small_cnn", width=0.25, proj_hidden=8, proj_dim=4)
    assert D.has_batchnorm(m) and not D.has_batchnorm(strip_bn(build_simclr_model("mlp", image_size=8)))
    with pytest.raises(ValueError, match=r"^sync_bn=True needs CUDA"):
        D.wrap_model(m, D.DistContext(0, 2), torch.device("cpu"), sync_bn=True)
    assert D.wrap_model(m, None, torch.device("cpu")) is m
    assert 0 < D.find_free_port() < 65536
