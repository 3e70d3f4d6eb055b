"""Random-label control (issue 6 item 8): experiments.data.noisy_labels and its use by the lockstep trainer."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from experiments.data import noisy_labels, synthetic_images
from experiments.lockstep import LockstepTrainer
from experiments.train_config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_p0_is_the_identity_and_a_copy():
    y = torch.arange(50) % 7
    out = noisy_labels(y, 7, 0.0, seed=3)
    assert torch.equal(out, y) and out.data_ptr() != y.data_ptr()


def test_p1_is_uniform_and_independent_of_the_true_labels():
    """Chi-square goodness of fit on 100 000 draws: uniform over the 10 classes, and within each true class."""
    C, n = 10, 100_000
    y = torch.zeros(n, dtype=torch.long)  # all true labels equal: any dependence on them would show
    out = noisy_labels(y, C, 1.0, seed=0)
    counts = torch.bincount(out, minlength=C).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    y2 = torch.arange(n) % C
    out2 = noisy_labels(y2, C, 1.0, seed=1)
    table = torch.zeros(C, C)
    table.index_put_((y2, out2), torch.ones(n), accumulate=True)
    assert stats.chi2_contingency(table.numpy()).pvalue > 1e-3  # independence of true and drawn labels
    # a wrong sampler (say, keep the label with probability 1/2) is caught by the same test
    half = torch.where(torch.arange(n) % 2 == 0, y2, out2)
    t2 = torch.zeros(C, C)
    t2.index_put_((y2, half), torch.ones(n), accumulate=True)
    assert stats.chi2_contingency(t2.numpy()).pvalue < 1e-12


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_fraction_changed_matches_p(p):
    """A label changes with probability p (1 - 1/C): replaced, and the uniform draw differs from it."""
    C, n = 5, 50_000
    y = torch.arange(n) % C
    changed = int((noisy_labels(y, C, p, seed=2) != y).sum())
    expect = n * p * (1 - 1 / C)
    sd = (n * p * (1 - 1 / C) * (1 - p * (1 - 1 / C))) ** 0.5
    assert abs(changed - expect) < 5 * sd


def test_seed_fixes_the_draw_and_bad_inputs_are_one_line():
    y = torch.arange(200) % 4
    assert torch.equal(noisy_labels(y, 4, 0.5, seed=9), noisy_labels(y, 4, 0.5, seed=9))
    assert not torch.equal(noisy_labels(y, 4, 0.5, seed=9), noisy_labels(y, 4, 0.5, seed=10))
    for kw, needle in ((dict(p=1.5), "p must be"), (dict(p=float("nan")), "p must be"), (dict(seed=-1), "seed")):
        args = dict(labels=y, num_classes=4, p=0.5, seed=0)
        args.update(kw)
        with pytest.raises(ValueError, match=needle) as e:
            noisy_labels(**args)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="label_noise"):
        TrainConfig(label_noise=2.0)


def test_trainer_supervised_losses_see_noisy_labels_cl_does_not():
    ds = synthetic_images(num_classes=4, n_per_class=8, size=8, seed=0)
    kw = dict(losses=("CL", "NSCL"), arch="mlp", width=0.05, proj_hidden=8, proj_dim=6, batch_size=16, epochs=1,
              device="cpu")
    clean = LockstepTrainer(TrainConfig(**kw), ds, quiet=True)
    noisy = LockstepTrainer(TrainConfig(**kw, label_noise=1.0, label_noise_seed=4), ds, quiet=True)
    assert torch.equal(clean.labels, ds.labels) and torch.equal(noisy.true_labels, ds.labels)
    assert torch.equal(noisy.labels, noisy_labels(ds.labels, 4, 1.0, seed=4))
    assert noisy.manifest["label_noise"]["changed"] == int((noisy.labels != ds.labels).sum()) > 0
    clean.fit()
    noisy.fit()
    h0, h1 = clean.history, noisy.history
    assert [r["loss"]["CL"] for r in h0] == [r["loss"]["CL"] for r in h1]  # CL never sees a label
    assert [r["loss"]["NSCL"] for r in h0] != [r["loss"]["NSCL"] for r in h1]
