"""Lockstep trainer: shared randomness, loss wiring against float64 loop references, schedule, checkpoints,
bit-identical resume in a fresh process, signals, NaN handling, config validation."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from experiments.data import synthetic_images
from experiments.train import (
    LockstepTrainer,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    dataset_fingerprint,
)

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_ds(classes: int = 4, per_class: int = 16, size: int = 16, seed: int = 0):
    return synthetic_images(num_classes=classes, n_per_class=per_class, size=size, seed=seed)


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(losses=("CL", "NSCL"), arch="small_cnn", width=0.25, proj_hidden=32, proj_dim=16, batch_size=16,
                tau=0.5, epochs=2, lr=0.1, weight_decay=1e-4, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def record_inputs(trainer: LockstepTrainer) -> dict:
    """Forward pre-hooks storing a copy of every input tensor each model received."""
    seen: dict = {n: [] for n in trainer.models}
    for n, m in trainer.models.items():
        m.register_forward_pre_hook(lambda mod, args, n=n: seen[n].append(args[0].detach().clone()))
    return seen


def params_of(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -----------------------------------------------------------------------------------------------------------
# configuration


@pytest.mark.parametrize("kw, field", [
    (dict(losses=("CL", "XYZ")), "losses"),
    (dict(losses=()), "losses"),
    (dict(losses=("CL", "CL")), "losses"),
    (dict(arch="vgg"), "arch"),
    (dict(optimizer="adam"), "optimizer"),
    (dict(batch_size=1), "batch_size"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(tau=0.0), "tau"),
    (dict(tau=-1.0), "tau"),
    (dict(epochs=0), "epochs"),
    (dict(lr=0.0), "lr"),
    (dict(momentum=1.0), "momentum"),
    (dict(warmup_epochs=5), "warmup_epochs"),
    (dict(grad_clip=-1.0), "grad_clip"),
    (dict(anchors="all"), "anchors"),
    (dict(aug_preset="imagenet-21k"), "name"),
    (dict(device="tpu"), "device"),
    (dict(init_seed=-1), "init_seed"),
])
def test_config_validation_one_line(kw, field):
    with pytest.raises(ValueError) as e:
        tiny_cfg(**kw)
    msg = str(e.value)
    assert field in msg and "\n" not in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_is_a_one_line_error():
    cfg = tiny_cfg(device="cuda")  # a config for a GPU machine validates anywhere; the trainer refuses it here
    with pytest.raises(ValueError, match=r"^device='cuda' requested but CUDA is not available") as e:
        LockstepTrainer(cfg, tiny_ds())
    assert "\n" not in str(e.value)
    assert tiny_cfg(device="auto").device == "auto"  # auto resolves to the CPU here


def test_batch_larger_than_dataset_and_nscl_single_class():
    with pytest.raises(ValueError, match="batch_size must be <= the training set size 64"):
        LockstepTrainer(tiny_cfg(batch_size=65), tiny_ds(), quiet=True)
    with pytest.raises(ValueError, match="NSCL needs >= 2 classes"):
        LockstepTrainer(tiny_cfg(), tiny_ds(classes=1, per_class=32), quiet=True)


# -----------------------------------------------------------------------------------------------------------
# shared randomness


def test_identical_initial_weights_independent_of_global_rng():
    ds = tiny_ds()
    torch.manual_seed(123)
    a = LockstepTrainer(tiny_cfg(losses=("CL", "DCL", "NSCL", "SCL", "CE")), ds, quiet=True)
    torch.manual_seed(999)
    b = LockstepTrainer(tiny_cfg(losses=("CL", "CE")), ds, quiet=True)
    ref = a.models["CL"].state_dict()
    for t in (a, b):
        for name, m in t.models.items():
            sd = m.state_dict()
            body = {k: v for k, v in sd.items() if not k.startswith("head.")}
            assert body.keys() == ref.keys()
            assert all(torch.equal(body[k], ref[k]) for k in ref), name
            assert (m.head is not None) == (name == "CE")
    d = LockstepTrainer(tiny_cfg(losses=("NSCL",)), ds, quiet=True)  # no CE head built: same body weights
    assert all(torch.equal(d.models["NSCL"].state_dict()[k], ref[k]) for k in ref)
    c = LockstepTrainer(tiny_cfg(init_seed=7), ds, quiet=True)
    assert not torch.equal(c.models["CL"].backbone.features[0].weight, a.models["CL"].backbone.features[0].weight)


def _chain(steps: list) -> str:
    """Independent recomputation of the InputDigest chain from recorded (indices, inputs)."""
    def h(t):
        t = t.contiguous()
        d = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
        d.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return d.digest()
    c = hashlib.sha256(b"simdescent input digest v1").digest()
    for idx, x in steps:
        c = hashlib.sha256(c + h(idx) + h(x)).digest()
    return c.hex()


def test_coupled_models_receive_bit_identical_inputs_and_digests_prove_it():
    ds = tiny_ds()
    tr = LockstepTrainer(tiny_cfg(losses=("CL", "DCL", "NSCL", "SCL", "CE"), epochs=2), ds, quiet=True)
    seen = record_inputs(tr)
    got = []
    tr.fit(on_step=lambda t_, t, idx, views: got.append((t, idx.clone(), views.clone())))
    n = tr.total_steps
    assert tr.steps_per_epoch == 4 and n == 8 and [g[0] for g in got] == list(range(n))
    names = list(tr.models)
    for name in names:
        assert len(seen[name]) == n
        for s in range(n):
            assert torch.equal(seen[name][s], seen[names[0]][s])  # every model saw the same tensor
            assert torch.equal(seen[name][s], got[s][2])  # ... which is the step's shared views
    dig = tr.manifest_dict()["input_digests"]
    assert len(set(dig.values())) == 1
    assert dig["CL"] == _chain([(idx, views) for _, idx, views in got])
    assert tr.manifest_dict()["input_digest_steps"] == {nm: n for nm in names}
    # batch order: each epoch a permutation of the dataset, drop_last (64 = 4 x 16: nothing dropped)
    for e in range(2):
        ep = torch.cat([got[s][1] for s in range(4 * e, 4 * e + 4)])
        assert torch.equal(ep.sort().values, torch.arange(64))
    assert not torch.equal(torch.cat([g[1] for g in got[:4]]), torch.cat([g[1] for g in got[4:]]))
    # views: two different augmentations of the same images, in [0, 1]
    v = got[0][2]
    assert v.shape == (32, 3, 16, 16) and v.dtype == torch.float32 and 0 <= v.min() and v.max() <= 1
    assert not torch.equal(v[:16], v[16:])


def test_separate_seeds_control_separate_randomness():
    ds = tiny_ds()

    def run(**kw):
        tr = LockstepTrainer(tiny_cfg(losses=("CL",), **kw), ds, quiet=True)
        out = []
        tr.fit(on_step=lambda t_, t, idx, views: out.append((idx.clone(), views.clone())), max_steps=2)
        return out, params_of(tr.models["CL"])

    base, p0 = run()
    again, p1 = run()
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(base, again))
    assert all(torch.equal(p0[k], p1[k]) for k in p0)  # fully deterministic on CPU
    aug, _ = run(aug_seed=99)  # same order, different views
    assert all(torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1]) for a, b in zip(base, aug))
    order, _ = run(order_seed=99)  # different order
    assert not torch.equal(base[0][0], order[0][0])


# -----------------------------------------------------------------------------------------------------------
# losses and updates against independent float64 computations


def _ref_loss(kind: str, z: torch.Tensor, labels: torch.Tensor, tau: float, anchors: str) -> torch.Tensor:
    """Python loop over anchors, float64: -(1/|P|) sum_P s/tau + log sum_D exp(s/tau) (SimCLR two-view batch)."""
    z = F.normalize(z.double(), dim=1)
    B = z.shape[0] // 2
    lab = torch.cat([labels, labels])
    ids = torch.cat([torch.arange(B), torch.arange(B)])
    rows = range(2 * B) if anchors == "both" else range(B)
    terms = []
    for a in rows:
        s = z[a] @ z.T / tau
        keys = [k for k in range(2 * B) if k != a]
        if kind == "SCL":
            P = [k for k in keys if lab[k] == lab[a]]
        else:
            P = [k for k in keys if ids[k] == ids[a]]
        if kind in ("CL", "SCL"):
            Dn = keys
        elif kind == "DCL":
            Dn = [k for k in keys if ids[k] != ids[a]]
        else:  # NSCL
            Dn = [k for k in keys if lab[k] != lab[a]]
        terms.append(-sum(s[k] for k in P) / len(P) + torch.logsumexp(s[Dn], dim=0))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("anchors", ["both", "first"])
def test_first_step_loss_and_sgd_update_match_float64_reference(anchors):
    ds = tiny_ds()
    losses = ("CL", "DCL", "NSCL", "SCL", "CE")
    tr = LockstepTrainer(tiny_cfg(losses=losses, anchors=anchors, lr=0.05, weight_decay=1e-3), ds, quiet=True)
    init = {n: copy.deepcopy(m) for n, m in tr.models.items()}
    got = []
    tr.fit(on_step=lambda t_, t, idx, views: got.append((idx.clone(), views.clone())), max_steps=1)
    idx, views = got[0]
    labels = ds.labels[idx]
    lr, wd, tau = 0.05, 1e-3, 0.5
    assert tr.history[0]["lr"] == lr  # no warm-up: step 0 runs at the base rate
    for name in losses:
        m = init[name]
        _, z = m(views)
        if name == "CE":
            ref = F.cross_entropy(m.head(z).double(), torch.cat([labels, labels]))
        else:
            ref = _ref_loss(name, z, labels, tau, anchors)
        assert tr.history[0]["loss"][name] == pytest.approx(ref.item(), rel=1e-5, abs=1e-6), name
        assert tr.history[0]["invalid"][name] == 0
        grads = torch.autograd.grad(ref, [p for p in m.parameters()])
        # first SGD step with momentum: buffer = g + wd w (weights only; biases / BN without decay)
        for (pn, p0), g, p1 in zip(m.named_parameters(), grads, tr.models[name].parameters()):
            step = g.float() + (wd * p0 if p0.ndim > 1 else 0.0)
            torch.testing.assert_close(p1, p0 - lr * step, rtol=1e-4, atol=2e-6, msg=f"{name}:{pn}")


def test_lr_schedule_is_linear_warmup_then_cosine_and_lars_runs():
    ds = tiny_ds()
    tr = LockstepTrainer(tiny_cfg(losses=("CL",), epochs=3, warmup_epochs=1.0, lr=0.3, optimizer="lars",
                                  grad_clip=1.0), ds, quiet=True)
    tr.fit()
    T, W = 12, 4
    for t, rec in enumerate(tr.history):
        exp = 0.3 * t / W if t < W else 0.3 * 0.5 * (1 + math.cos(math.pi * (t - W) / (T - W)))
        assert rec["lr"] == pytest.approx(exp, abs=1e-12)
        assert math.isfinite(rec["loss"]["CL"])


def test_grad_clip_bounds_the_update():
    ds = tiny_ds()
    a = LockstepTrainer(tiny_cfg(losses=("CL",), momentum=0.0, weight_decay=0.0, lr=1.0, grad_clip=1e-3), ds,
                        quiet=True)
    p0 = torch.cat([p.detach().flatten().clone() for p in a.models["CL"].parameters()])
    a.fit(max_steps=1)
    p1 = torch.cat([p.detach().flatten() for p in a.models["CL"].parameters()])
    assert (p1 - p0).norm().item() == pytest.approx(1e-3, rel=1e-3)  # lr * clipped norm


# -----------------------------------------------------------------------------------------------------------
# eval callbacks and embed


def test_on_eval_schedule_and_embed():
    ds = tiny_ds()
    tr = LockstepTrainer(tiny_cfg(epochs=2), ds, quiet=True)
    calls = []
    tr.fit(on_eval=lambda t, e, s: calls.append((e, s, t.models["CL"].training)), eval_every=3)
    assert calls == [(0, 0, True), (0, 3, True), (1, 6, True), (2, 8, True)]
    f, z = tr.embed("NSCL", ds.images, batch_size=10)
    assert f.shape == (64, 32) and z.shape == (64, 16) and f.dtype == torch.float32
    m = tr.models["NSCL"]
    assert m.training  # back in train mode
    m.eval()
    with torch.no_grad():
        f2, z2 = m(ds.images.float() / 255)
    m.train()
    torch.testing.assert_close(f, f2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z, z2, rtol=1e-5, atol=1e-6)
    f3, _ = tr.embed("NSCL", ds.images.float() / 255, batch_size=64)
    torch.testing.assert_close(f, f3, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="name must be one of"):
        tr.embed("SCL", ds.images)


# -----------------------------------------------------------------------------------------------------------
# checkpoints and resume


def _compare_states(sa: dict, sb: dict):
    for n in sa["models"]:
        ma, mb = sa["models"][n], sb["models"][n]
        assert ma.keys() == mb.keys()
        for k in ma:
            assert torch.equal(ma[k], mb[k]), f"{n}.{k}"
        oa, ob = sa["optimizers"][n]["state"], sb["optimizers"][n]["state"]
        assert oa.keys() == ob.keys()
        for i in oa:
            for k in oa[i]:
                assert torch.equal(oa[i][k], ob[i][k]), f"{n}.opt{i}.{k}"
    assert sa["history"] == sb["history"]
    assert sa["digest"] == sb["digest"]
    assert torch.equal(sa["order_gen"], sb["order_gen"]) and torch.equal(sa["aug_gen"], sb["aug_gen"])


RESUME_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from experiments.data import synthetic_images
from experiments.train import LockstepTrainer
torch.manual_seed(4242)  # a different process-wide RNG state: resume must not depend on it
ds = synthetic_images(num_classes=4, n_per_class=16, size=16, seed=0)
tr = LockstepTrainer.resume(sys.argv[1], ds, quiet=True)
tr.fit()
tr.save_checkpoint(sys.argv[2])
"""


def test_resume_in_fresh_process_is_bit_identical(tmp_path):
    ds = tiny_ds()
    kw = dict(losses=("CL", "NSCL", "SCL", "CE"), optimizer="lars", warmup_epochs=0.5, grad_clip=5.0)
    straight = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)
    straight.fit()
    half = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)
    half.fit(max_steps=half.steps_per_epoch)
    ck1 = half.save_checkpoint(tmp_path / "epoch1.pt")
    ck2 = tmp_path / "final.pt"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(ck1), str(ck2)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from runio.checkpoint import load_checkpoint
    resumed = load_checkpoint(ck2)
    assert resumed["step"] == straight.step == 8
    _compare_states(straight.state_dict(), resumed)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight.history]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_epoch_saves_and_resume_matches(tmp_path, sig):
    ds = tiny_ds()
    out = tmp_path / "run"
    straight = LockstepTrainer(tiny_cfg(epochs=2), ds, quiet=True)
    straight.fit()
    tr = LockstepTrainer(tiny_cfg(epochs=2, out_dir=str(out)), ds, quiet=True)
    before = signal.getsignal(sig)

    def kill_at_2(trainer, t, idx, views):
        if t == 1:
            os.kill(os.getpid(), sig)

    with pytest.raises(TrainingInterrupted) as e:
        tr.fit(on_step=kill_at_2)
    assert e.value.code == 128 + sig
    assert signal.getsignal(sig) is before  # handlers restored
    assert tr.step == 2 and tr.interrupted == sig.name  # the step in flight finished, nothing after it
    man = json.loads((out / "manifest.json").read_text())
    assert man["interrupted"] == sig.name and man["step"] == 2
    assert len(json.loads((out / "history.json").read_text())) == 2
    re = LockstepTrainer.resume(out / "ckpt.pt", ds, quiet=True)
    assert re.step == 2 and re.manifest_dict()["resumed_from"] == [{"path": str(out / "ckpt.pt"), "step": 2}]
    re.fit()
    _compare_states(straight.state_dict(), re.state_dict())


def test_periodic_checkpoint_and_manifest(tmp_path):
    ds = tiny_ds()
    out = tmp_path / "run"
    seen_steps = []
    tr = LockstepTrainer(tiny_cfg(epochs=3, ckpt_every=1, out_dir=str(out), init_seed=5, order_seed=6,
                                  aug_seed=7), ds, quiet=True)

    def check(trainer, t, idx, views):
        if (out / "ckpt.pt").exists():
            from runio.checkpoint import load_checkpoint
            seen_steps.append(load_checkpoint(out / "ckpt.pt")["step"])

    tr.fit(on_step=check)
    assert sorted(set(seen_steps)) == [4, 8]
    from runio.checkpoint import load_checkpoint
    assert load_checkpoint(out / "ckpt.pt")["step"] == 12  # final
    man = json.loads((out / "manifest.json").read_text())
    assert man["seeds"] == {"init_seed": 5, "order_seed": 6, "aug_seed": 7}
    assert man["config"]["losses"] == ["CL", "NSCL"] and man["config"]["epochs"] == 3
    assert man["versions"]["torch"] == torch.__version__ and "numpy" in man["versions"]
    assert man["device"].startswith("cpu") and "revision" in man["git"]
    assert man["dataset"] == dataset_fingerprint(ds)
    assert man["step"] == 12 and man["input_digest_steps"] == {"CL": 12, "NSCL": 12}
    assert man["input_digests"]["CL"] == man["input_digests"]["NSCL"]
    assert man["invalid_anchors_total"] == {"CL": 0, "NSCL": 0}
    assert len(json.loads((out / "history.json").read_text())) == 12
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt", "history.json", "manifest.json"]


def test_resume_errors_are_one_line(tmp_path):
    ds = tiny_ds()
    tr = LockstepTrainer(tiny_cfg(), ds, quiet=True)
    tr.fit(max_steps=1)
    ck = tr.save_checkpoint(tmp_path / "ck.pt")
    with pytest.raises(ValueError) as e:
        LockstepTrainer.resume(ck, ds, cfg=tiny_cfg(tau=0.2, lr=0.5), quiet=True)
    msg = str(e.value)
    assert "different config" in msg and "tau: saved 0.5, given 0.2" in msg and "lr:" in msg and "\n" not in msg
    assert "epochs" not in msg
    # out_dir / ckpt_every may change
    LockstepTrainer.resume(ck, ds, cfg=tiny_cfg(out_dir=str(tmp_path / "x"), ckpt_every=3), quiet=True)
    with pytest.raises(ValueError, match="was trained on 'synthetic4-train'"):
        LockstepTrainer.resume(ck, tiny_ds(seed=1), quiet=True)
    raw = ck.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match=r"^checkpoint .*cut\.pt is corrupt or truncated: ") as e:
        LockstepTrainer.resume(tmp_path / "cut.pt", ds, quiet=True)
    assert "\n" not in str(e.value)


def test_nan_loss_stops_with_one_line_error_after_saving_last_good_state(tmp_path):
    ds = tiny_ds()
    out = tmp_path / "run"
    tr = LockstepTrainer(tiny_cfg(losses=("CL", "NSCL"), out_dir=str(out)), ds, quiet=True)
    good = {}

    def poison(mod, args, output):
        if tr.step == 2:  # the forward of step index 2
            h, z = output
            return h, z * float("nan")
        return None

    tr.models["NSCL"].register_forward_hook(poison)

    def snap(trainer, t, idx, views):
        good.update({n: params_of(m) for n, m in trainer.models.items()})

    with pytest.raises(TrainingDiverged) as e:
        tr.fit(on_step=snap)
    msg = str(e.value)
    assert msg.startswith("loss of model 'NSCL' is nan at step 2 (epoch 0); last good state saved to ")
    assert "\n" not in msg
    from runio.checkpoint import load_checkpoint
    st = load_checkpoint(out / "last_good.pt")
    assert st["step"] == 2 and len(st["history"]) == 2
    for n in ("CL", "NSCL"):  # parameters are those after step 1 (BN running stats saw the bad forward)
        for k, v in good[n].items():
            if "running" not in k and "num_batches" not in k:
                assert torch.equal(st["models"][n][k], v), (n, k)
    # the saved generators reproduce batch 2 (resume redraws the same batch)
    assert st["perm_epoch"] == 0


def test_cli_runs_and_reports_errors(tmp_path):
    from experiments.train import main
    out = tmp_path / "cli"
    rc = main(["--dataset", "synthetic", "--losses", "CL", "NSCL", "--arch", "mlp", "--width", "0.125",
               "--proj-hidden", "16", "--proj-dim", "8", "--batch-size", "250", "--epochs", "1", "--device", "cpu",
               "--out", str(out), "--quiet"])
    assert rc == 0
    assert json.loads((out / "manifest.json").read_text())["step"] == 4  # 1000 synthetic images / 250
    assert main(["--tau", "-1", "--out", str(out), "--quiet"]) == 2


# -----------------------------------------------------------------------------------------------------------
# shared per-step work, loss path, CUDA code path exercised on the CPU


@pytest.mark.parametrize("anchors", ["both", "first"])
def test_step_loss_bit_identical_to_theory_contrastive_loss(anchors):
    """The trainer's shared-mask loss equals theory.losses.contrastive_loss(simclr_sim(...)) bit for bit."""
    from theory.losses import contrastive_loss, contrastive_masks, simclr_sim
    ds = tiny_ds()
    losses = ("CL", "DCL", "NSCL", "SCL", "CE")
    tr = LockstepTrainer(tiny_cfg(losses=losses, anchors=anchors), ds, quiet=True)
    init = {n: copy.deepcopy(m) for n, m in tr.models.items()}
    got = []
    tr.fit(on_step=lambda t_, t, idx, views: got.append((idx.clone(), views.clone())), max_steps=1)
    idx, views = got[0]
    labels = ds.labels[idx]
    for name in losses:
        _, z = init[name](views)
        if name == "CE":
            ref = F.cross_entropy(init[name].head(z), torch.cat([labels, labels]))
        else:
            batch = simclr_sim(z[:16], z[16:], labels, normalize=True, anchors=anchors)
            ref = contrastive_loss(**batch._asdict(), kind=name, tau=0.5)
        assert tr.history[0]["loss"][name] == ref.item(), name
    # the helpers against theory directly
    o1, o2 = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)).split(8)
    lab = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0])
    small = LockstepTrainer(tiny_cfg(losses=("CL", "DCL", "NSCL", "SCL"), anchors=anchors, batch_size=8), ds,
                            quiet=True)
    b = simclr_sim(o1, o2, lab, normalize=True, anchors=anchors)
    assert torch.equal(small._similarities(o1, o2), b.sim)
    tg = small._targets(lab)
    for kind in ("CL", "DCL", "NSCL", "SCL"):
        pos, den, n_valid, n_invalid = tg.masks[kind]
        rp, rd = contrastive_masks(kind, b.anchor_ids, b.key_ids, b.anchor_labels, b.key_labels, b.self_mask)
        assert torch.equal(pos, rp) and torch.equal(den, rd)
        n_ok = sum(bool(rp[a].any() and rd[a].any()) for a in range(rp.shape[0]))
        assert n_valid.dtype == torch.float32 and int(n_valid) == n_ok and int(n_invalid) == rp.shape[0] - n_ok


def test_shared_work_is_done_once_per_step_and_every_model_gets_the_same_tensor(monkeypatch):
    import experiments.lockstep as T
    calls = {"masks": 0, "aug": 0}
    real_masks = T.contrastive_masks

    def counting_masks(*a, **k):
        calls["masks"] += 1
        return real_masks(*a, **k)

    monkeypatch.setattr(T, "contrastive_masks", counting_masks)
    ds = tiny_ds()
    losses = ("CL", "DCL", "NSCL", "SCL", "CE")
    tr = LockstepTrainer(tiny_cfg(losses=losses), ds, quiet=True)
    real_aug = tr.augment

    class CountingAug:
        def __call__(self, x, g):
            calls["aug"] += 1
            return real_aug(x, g)

    tr.augment = CountingAug()
    fed: dict = {n: [] for n in losses}
    for n, m in tr.models.items():
        m.register_forward_pre_hook(lambda mod, args, n=n: fed[n].append(args[0]))
    views_seen = []
    steps = 3
    tr.fit(on_step=lambda t_, t, idx, views: views_seen.append(views), max_steps=steps)
    assert calls["aug"] == 2 * steps  # two views per step, whatever K
    assert calls["masks"] == 2 + 2 * steps  # CL / DCL masks once per trainer; NSCL / SCL once per step
    assert tr.digest.hashed == 2 * steps  # indices + views hashed once per step, not once per model
    for n in losses:
        assert all(a is b for a, b in zip(fed[n], views_seen))  # the very same tensor object, no per-model copy
    assert len(set(tr.digest.hexdigests().values())) == 1


def test_batch_without_valid_anchor_raises_theory_message():
    from experiments.data import ImageDataset
    base = tiny_ds(classes=2, per_class=4)
    labels = torch.zeros(8, dtype=torch.long)
    labels[0] = 1  # one batch of 4 out of two is single-class: NSCL has no negatives there
    ds = ImageDataset(images=base.images, labels=labels, num_classes=2, name="one-odd")
    tr = LockstepTrainer(tiny_cfg(losses=("CL", "NSCL"), batch_size=4, epochs=3), ds, quiet=True)
    with pytest.raises(ValueError, match=r"^NSCL: no anchor has a negative \(different-label key\) in its "
                                         r"denominator \(batch of 8 anchors, all of class 0\)$"):
        tr.fit()


def test_perm_uploaded_once_per_epoch_gives_the_same_batches():
    """The device path of the batch indices (epoch permutation uploaded once, sliced per step), run on the CPU."""
    ds = tiny_ds()
    ref = LockstepTrainer(tiny_cfg(epochs=3), ds, quiet=True)
    tr = LockstepTrainer(tiny_cfg(epochs=3), ds, quiet=True)
    tr._upload_perm = True
    uploads = []
    real = tr._device_indices

    def spy(step, idx):
        before = tr._perm_dev
        out = real(step, idx)
        if tr._perm_dev is not before:
            uploads.append(step)
        assert torch.equal(out, idx)
        return out

    tr._device_indices = spy
    ref.fit()
    tr.fit()
    assert uploads == [0, 4, 8]
    _compare_states(ref.state_dict(), tr.state_dict())


def test_dataset_is_not_read_again_after_construction():
    ds = tiny_ds()
    ref = LockstepTrainer(tiny_cfg(), ds, quiet=True)
    got_ref = []
    ref.fit(on_step=lambda t_, t, idx, views: got_ref.append(views.clone()), max_steps=3)
    ds2 = tiny_ds()
    tr = LockstepTrainer(tiny_cfg(), ds2, quiet=True)
    assert tr.aug_gen.device == tr.device and tr.images.device == tr.device
    ds2.images = ds2.images[:0]  # any per-step access to the dataset would now fail or change the views
    ds2.labels = ds2.labels[:0]
    got = []
    tr.fit(on_step=lambda t_, t, idx, views: got.append(views.clone()), max_steps=3)
    assert all(torch.equal(a, b) for a, b in zip(got, got_ref))


def test_background_digest_equals_synchronous_and_bounds_pending(monkeypatch):
    """The background (CUDA) digest path on CPU tensors: same chains, snapshot at consume time, bounded queue."""
    import time as _time

    import experiments.input_digest as T
    real = T.tensor_sha256

    def slow(t):
        _time.sleep(0.005)
        return real(t)

    monkeypatch.setattr(T, "tensor_sha256", slow)
    names = ("CL", "NSCL")
    sync, bg = T.InputDigest(names), T.InputDigest(names, background=True, max_pending=2)
    g = torch.Generator().manual_seed(0)
    most = 0
    for step in range(6):
        idx = torch.randperm(10, generator=g)[:4]
        x = torch.rand((8, 3, 4, 4), generator=g)
        for d in (sync, bg):
            d.new_step()
            for n in names:
                d.consume(n, idx, x)
            most = max(most, len(bg._pending))
        x.mul_(0.5)  # an in-place change after consume must not reach the background hash
    assert most <= 2
    assert bg.hexdigests() == sync.hexdigests() and bg.counts == sync.counts == {n: 6 for n in names}
    assert sync.hashed == bg.hashed == 12
    bg.close()


def _amp_cpu(monkeypatch):
    import experiments.lockstep as T
    monkeypatch.setattr(T, "AMP_DEVICE_TYPES", ("cuda", "cpu"))


def test_bf16_autocast_path_on_cpu_keeps_losses_float32_and_close(monkeypatch):
    ds = tiny_ds()
    kw = dict(losses=("CL", "NSCL", "SCL", "CE"), bf16=True, channels_last=False)
    ref = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)  # AMP_DEVICE_TYPES = ("cuda",): fp32 on the CPU
    assert ref.autocast_dtype is None
    ref.fit(max_steps=2)
    _amp_cpu(monkeypatch)
    probe = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)
    assert probe.autocast_dtype == torch.bfloat16
    conv_dtypes = []
    probe.models["CL"].backbone.features[0].register_forward_hook(lambda m, a, o: conv_dtypes.append(o.dtype))
    x = probe.make_views(probe.batch_indices(0))
    tg = probe._targets(probe.labels[probe.batch_indices(0)])
    for name in probe.cfg.losses:
        loss, _ = probe._loss(name, x, tg)
        assert loss.dtype == torch.float32 and loss.requires_grad
    assert conv_dtypes == [torch.bfloat16]  # the forward really ran in bf16
    tr = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)
    tr.fit(max_steps=2)
    for s in range(2):
        for n in kw["losses"]:
            assert tr.history[s]["loss"][n] == pytest.approx(ref.history[s]["loss"][n], rel=5e-3), (s, n)
    for n in kw["losses"]:  # parameters stay float32 and move like the float32 run's
        p_bf = torch.cat([p.detach().flatten() for p in tr.models[n].parameters()])
        p_32 = torch.cat([p.detach().flatten() for p in ref.models[n].parameters()])
        assert p_bf.dtype == torch.float32
        assert (p_bf - p_32).norm() <= 0.02 * p_32.norm(), n


def test_channels_last_path_on_cpu_matches_contiguous(monkeypatch):
    ds = tiny_ds()
    kw = dict(losses=("CL", "NSCL", "CE"), bf16=False, channels_last=True)
    ref = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)
    assert ref.memory_format == torch.contiguous_format
    ref_views = []
    ref.fit(on_step=lambda t_, t, idx, views: ref_views.append(views), max_steps=3)
    _amp_cpu(monkeypatch)
    tr = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)
    assert tr.memory_format == torch.channels_last and tr.autocast_dtype is None
    w = tr.models["CL"].backbone.features[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    views_cl = []
    tr.fit(on_step=lambda t_, t, idx, views: views_cl.append(views), max_steps=3)
    for a, b in zip(views_cl, ref_views):
        assert a.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, b)
    for s in range(3):  # step 0: only the layout differs; later steps: float32 rounding grows through training
        for n in kw["losses"]:
            tol = 1e-6 if s == 0 else 1e-4
            assert tr.history[s]["loss"][n] == pytest.approx(ref.history[s]["loss"][n], rel=tol), (s, n)
    for n in kw["losses"]:  # after 3 SGD steps the weights still agree to float32 noise amplified by training
        p_cl = torch.cat([p.detach().flatten() for p in tr.models[n].parameters()])
        p_ref = torch.cat([p.detach().flatten() for p in ref.models[n].parameters()])
        assert (p_cl - p_ref).norm() <= 1e-3 * p_ref.norm(), n
    one_cl = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)
    with monkeypatch.context() as mp:
        mp.setattr("experiments.lockstep.AMP_DEVICE_TYPES", ("cuda",))
        one_ref = LockstepTrainer(tiny_cfg(**kw), ds, quiet=True)
    one_ref.fit(max_steps=1)
    one_cl.fit(max_steps=1)
    for n in kw["losses"]:  # one step: elementwise agreement to float32 rounding
        for (k, p), q in zip(one_cl.models[n].named_parameters(), one_ref.models[n].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=f"{n}.{k}")
    # the digest hashes logical (NCHW) bytes: the same inputs give the same digest in either layout
    assert tr.manifest_dict()["input_digests"] == ref.manifest_dict()["input_digests"]


def test_training_path_has_one_host_sync_per_step(monkeypatch):
    """The CUDA-relevant property, checked on the CPU: in the main thread a step reads device values exactly once
    (losses + invalid counts); augmentation (fixed order), masks, loss, LARS, clipping and the background digest
    never call item / bool / nonzero / tolist / numpy. (On CUDA each of those would block on the device.)"""
    import threading

    from experiments.train import InputDigest
    ds = tiny_ds()
    tr = LockstepTrainer(tiny_cfg(losses=("CL", "DCL", "NSCL", "SCL", "CE"), optimizer="lars", grad_clip=1.0), ds,
                         quiet=True)
    tr.digest.close()
    tr.digest = InputDigest(tr.cfg.losses, background=True)  # what the trainer uses on CUDA
    tr.fit(max_steps=1)  # first step builds the batch-independent caches
    reads = []

    def guard(name, orig):
        def f(*a, **k):
            if threading.current_thread() is not threading.main_thread():
                return orig(*a, **k)  # the digest worker may read host copies
            if name in ("any", "all") and (len(a) > 1 or "dim" in k):
                return orig(*a, **k)  # a reduction kept on the device
            if name in ("tolist", "cpu"):
                reads.append(name)
                return orig(*a, **k)
            raise AssertionError(f"host synchronisation via {name}")
        return f

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero",
                 "any", "all"):
        monkeypatch.setattr(torch.Tensor, name, guard(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch, "nonzero", guard("nonzero", torch.nonzero))
    tr.fit(max_steps=4)
    monkeypatch.undo()
    assert reads == ["cpu", "tolist"] * 3
    assert tr.digest.counts == {n: 4 for n in tr.cfg.losses}
    tr.close()
