"""Blog Fig. 6: CKA / RSA between the contrastive (DCL or CL) and the NSCL model at the end of training, for
every encoder run (datasets x architectures, ResNet and ViT where run); train and test reference sets.
CSV + Markdown + LaTeX."""

from __future__ import annotations

from pathlib import Path

from .discover import Catalog, group_runs
from .plotting import Missing, Output
from ._encoder import cl_pair, final_value

NAME = "blog_fig6_alignment_table"
CAPTION = ("Representation similarity between the contrastive and the NSCL model trained with matched "
           "initialisation and mini-batch order, at the last evaluation.")
NEEDS = ("encoder runs (python -m experiments.sweep configs/small/blog_fig6_cka_rsa.toml; every encoder run found "
         "is listed)")


def make(cat: Catalog, out: Output) -> list[Path]:
    runs = [r for r in cat.encoder if r.metrics]
    if not runs:
        raise Missing(NEEDS)
    # the runs over datasets x architectures (blog: ResNet and ViT on several datasets); without such a sweep,
    # every encoder run found
    vary = {"dataset", "arch", "data_root", "n_per_class", "test_per_class", "image_size", "width"}
    groups = group_runs(runs, vary, by=lambda r: (str(r.config.get("dataset")), str(r.config.get("arch"))))
    if groups:
        runs = list(dict.fromkeys(r for g in groups for r in g.runs))
    runs = sorted(runs, key=lambda r: (str(r.config.get("dataset")), str(r.config.get("arch")), r.C,
                                       r.label_noise, r.name))
    header = ["dataset", "arch", "C′", "τ", "B", "epochs", "labels", "pair", "CKA train", "CKA test", "RSA train",
              "RSA test", "run"]
    rows = []
    for r in runs:
        c = r.config
        rows.append([c.get("dataset"), c.get("arch"), r.C, f"{float(c.get('tau')):g}", c.get("batch_size"),
                     c.get("epochs"), f"random p={r.label_noise:g}" if r.is_control else "real",
                     cl_pair(r).replace("-", "–")]
                    + [f"{final_value([r], m, s):.3f}" for m in ("cka", "rsa") for s in ("train", "test")]
                    + [r.name])
    return out.table(NAME, header, rows, CAPTION)
