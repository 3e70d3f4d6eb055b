"""Fig. 1 (App. A.2): weight-space vs representation-space directions of the contrastive (CL or DCL) and the
NSCL model, and (c) CKA, RSA and the weight gap over epochs.

(a) Weight space: the four flattened weight vectors w_CL^0, w_CL^T, w_NSCL^0, w_NSCL^T (every floating tensor
    of the state dict) are projected by a PCA fitted on the four of them onto a shared 3-D space; the angle is
    between v_CL = p_CL^T - p_CL^0 and v_NSCL = p_NSCL^T - p_NSCL^0. (Four centred points span <= 3 dimensions,
    so the 3-D projection is exact and the angle equals the angle of the raw weight displacements.)
(b) Representation space: 100 training images of one target class, embedded (projections z) by the same four
    models; the 400 representations are projected by one shared 3-D PCA and averaged per model; the angle is
    between the init -> final displacements of the CL and of the NSCL class mean.
(c) CKA and RSA of the CL-NSCL pair (train reference set) and the mean relative weight gap, over epochs.

Needs a run with weights_init.pt / weights_final.pt ({model name: state_dict}; bound_vs_empirical writes them
for small models, or with ``save_weights = true``)."""

from __future__ import annotations

import math
from pathlib import Path
import numpy as np

from .discover import Catalog, EncoderRun, by_value, group_runs
from .plotting import MODEL_COLOR, integer_epochs, Missing, Output, pair_label, plt, style
from ._encoder import cl_pair, run_curve

NAME = "fig1_directions"
CAPTION = ("Learning dynamics of CL and NSCL: (a) weight-space directions diverge, (b) representation-space "
           "directions of one class stay close, (c) CKA/RSA stay high while the weight gap grows.")
NEEDS = ("an encoder run with weights_init.pt and weights_final.pt (save_weights = true) "
         "(python -m experiments.sweep configs/small/fig2_losses.toml)")
N_CLASS_SAMPLES = 100

__all__ = ["pca_points", "angle_deg", "weight_directions", "representation_directions", "make"]


def pca_points(X: np.ndarray, k: int = 3) -> np.ndarray:
    """Rows of X projected onto the top-k principal directions of X's rows (centred). Shape: X (n, d) -> (n, k)
    (fewer columns if X has rank < k after centring)."""
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(0, keepdims=True)
    # the n x n Gram matrix avoids a d x d covariance when d is huge (weights: d ~ 1e7)
    G = Xc @ Xc.T
    w, V = np.linalg.eigh(G)
    order = np.argsort(w)[::-1][:k]
    w, V = w[order], V[:, order]
    keep = w > 1e-12 * max(float(w[0]), 1e-300)
    return V[:, keep] * np.sqrt(w[keep])  # = Xc @ (principal axes), up to the sign of each axis


def angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Angle between two vectors in degrees; ValueError for a zero vector."""
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu == 0 or nv == 0:
        raise ValueError("angle_deg: a direction vector is zero (the model did not move)")
    return math.degrees(math.acos(max(-1.0, min(1.0, float(np.dot(u, v)) / (nu * nv)))))


def _flat(sd: dict) -> np.ndarray:
    import torch

    parts = [v.detach().to("cpu", torch.float64).reshape(-1) for k, v in sorted(sd.items())
             if torch.is_tensor(v) and v.is_floating_point()]
    return torch.cat(parts).numpy()


def weight_directions(w_cl0, w_clT, w_ns0, w_nsT) -> dict:
    """(a): PCA-3D displacements and their angle. Inputs: flat weight vectors (P,)."""
    P = pca_points(np.stack([w_cl0, w_clT, w_ns0, w_nsT]))
    v_cl, v_ns = P[1] - P[0], P[3] - P[2]
    return {"v_cl": v_cl, "v_nscl": v_ns, "angle": angle_deg(v_cl, v_ns),
            "angle_raw": angle_deg(np.asarray(w_clT) - w_cl0, np.asarray(w_nsT) - w_ns0)}


def representation_directions(Z_cl0, Z_clT, Z_ns0, Z_nsT) -> dict:
    """(b): shared PCA-3D of the 4 x n representations, per-model means, displacement angle.
    Shape: each Z (n, d)."""
    Zs = [np.asarray(z, dtype=np.float64) for z in (Z_cl0, Z_clT, Z_ns0, Z_nsT)]
    n = Zs[0].shape[0]
    P = pca_points(np.concatenate(Zs))
    m = [P[i * n:(i + 1) * n].mean(0) for i in range(4)]
    v_cl, v_ns = m[1] - m[0], m[3] - m[2]
    return {"v_cl": v_cl, "v_nscl": v_ns, "angle": angle_deg(v_cl, v_ns)}


def _has_weights(r: EncoderRun) -> bool:
    return (r.path / "weights_init.pt").is_file() and (r.path / "weights_final.pt").is_file()


def _load(path: Path) -> dict:
    from runio.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _class_images(run: EncoderRun):
    """The training images of the run's first class (up to N_CLASS_SAMPLES, fixed seed) and the dataset."""
    import torch

    from experiments.bound_vs_empirical import load_data
    from experiments.config import config_from_dict

    cfg = config_from_dict({k: v for k, v in run.config.items()})
    train, _ = load_data(cfg)
    target = int(train.labels.min())
    idx = torch.nonzero(train.labels == target).flatten()
    g = torch.Generator().manual_seed(0)
    idx = idx[torch.randperm(len(idx), generator=g)[:N_CLASS_SAMPLES]]
    return train.images[idx], train, target


def _embed(run: EncoderRun, sd: dict, images, train) -> np.ndarray:
    import torch

    from experiments.models import build_simclr_model

    c = run.config
    model = build_simclr_model(c["arch"], in_channels=int(train.images.shape[1]), width=float(c["width"]),
                               image_size=int(train.images.shape[-1]), proj_hidden=int(c["proj_hidden"]),
                               proj_dim=int(c["proj_dim"]),
                               num_classes=None, seed=0)  # the CL and NSCL models have no classifier head
    model.load_state_dict(sd)
    model.eval()
    with torch.no_grad():
        _, z = model(images.float() / 255.0 if images.dtype == torch.uint8 else images.float())
    return z.double().numpy()


def _polar(ax, d: dict, cl: str, title: str, norm_label: str) -> None:
    th = math.radians(d["angle"])
    a, b = float(np.linalg.norm(d["v_cl"])), float(np.linalg.norm(d["v_nscl"]))
    s = max(a, b)
    for ang, ln, name in ((0.0, a / s, cl), (th, b / s, "NSCL")):
        ax.annotate("", xy=(ang, ln), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=MODEL_COLOR[name], lw=1.8))
        ax.plot([], [], color=MODEL_COLOR[name], lw=1.8, label=f"{name} ({norm_label} {ln * s:.3g})")
    ax.set_ylim(0, 1.05)
    ax.set_yticklabels([])
    ax.set_thetamin(0)
    ax.set_thetamax(max(90, min(180, 30 * math.ceil(d["angle"] / 30 + 0.5))))
    ax.set_title(f"{title}\nangle {d['angle']:.1f}°", fontsize=8.5)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.05), fontsize=7)


def make(cat: Catalog, out: Output) -> list[Path]:
    runs = [r for r in cat.encoder if _has_weights(r) and "NSCL" in r.losses]
    runs = [r for r in runs if len(r.losses) >= 3] or runs  # the Fig. 2 runs, as in the paper
    # one figure per setting: repeated runs of one config (seeds, the same config under several sweeps) are
    # listed in the CSV's "replicates" column, the figure is drawn for the first of them
    sets = []
    for g in group_runs(runs, set(), by=lambda r: 0, min_values=1):
        sets += [g.main] + [rs for _, rs in by_value(g.controls, lambda r: r.label_noise)]
    reps = {rs[0].name: [r.name for r in rs] for rs in sets if rs}
    runs = [rs[0] for rs in sets if rs]
    if not runs:
        raise Missing(NEEDS)
    written = []
    p = plt()
    table = []
    with style():
        for r in runs:
            cl = r.contrastive
            w0, wT = _load(r.path / "weights_init.pt"), _load(r.path / "weights_final.pt")
            wd = weight_directions(_flat(w0[cl]), _flat(wT[cl]), _flat(w0["NSCL"]), _flat(wT["NSCL"]))
            images, train, target = _class_images(r)
            Z = [_embed(r, sd[m], images, train) for sd, m in ((w0, cl), (wT, cl), (w0, "NSCL"), (wT, "NSCL"))]
            rd = representation_directions(*Z)
            fig = p.figure(figsize=(10.5, 3.6))
            gs = fig.add_gridspec(1, 3, width_ratios=[1, 1, 1.5])
            ax_a = fig.add_subplot(gs[0], projection="polar")
            ax_b = fig.add_subplot(gs[1], projection="polar")
            ax_c = fig.add_subplot(gs[2])
            _polar(ax_a, wd, cl, "(a) weight space", "‖Δw‖ =")
            _polar(ax_b, rd, cl, f"(b) representation space, class {target}", "‖Δ mean z‖ in PCA-3D =")
            pair = cl_pair(r)
            for m, col, mk in (("cka", "#0072B2", "o"), ("rsa", "#CC79A7", "s")):
                x, y = run_curve(r, m)
                ax_c.plot(x, y, "-", marker=mk, color=col, label=f"{pair_label(pair)} {m.upper()}")
            ax_c.set_ylabel("CKA / RSA (train reference set)")
            ax_c.set_xlabel("epoch")
            ax2 = ax_c.twinx()
            x, y = run_curve(r, "weight_gap_mean")
            ax2.plot(x, y, "--", marker="^", color="#D55E00", label="mean relative weight gap")
            ax2.set_ylabel("mean relative weight gap", color="#D55E00")
            ax2.grid(False)
            ax_c.set_title("(c) alignment vs weight gap", fontsize=8.5)
            integer_epochs([ax_c, ax2])
            h1, l1 = ax_c.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax_c.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=7)
            fig.suptitle(f"{cl} vs NSCL: {r.describe()}", fontsize=9, x=0.01, ha="left")
            written += out.save(fig, f"{NAME}__{r.name}")
            table.append({"run": r.name, "weight_angle_deg": wd["angle"], "weight_angle_raw_deg": wd["angle_raw"],
                          "representation_angle_deg": rd["angle"], "target_class": target,
                          "n_images": int(images.shape[0]), "replicates": " ".join(reps[r.name])})
    written.append(out.csv(NAME, table))
    return written
