"""Mutation check: apply deliberate bugs to the formulas and the step, and report which the tests catch.

Usage (from the repository root; not part of the default test run; measured on the shared 2-core machine under
load: ~40 min with --jobs 2, ~11 min with --claims-only):

    python benchmarks/mutation_check.py --jobs 2
    python benchmarks/mutation_check.py --only L6_rhs_2Delta,eq1_sign --jobs 1
    python benchmarks/mutation_check.py --list

For each mutation the working tree (tracked + untracked files that git does not ignore, not .git) is copied
into a temporary directory, ONE anchored text replacement is applied there (the code is located by a unique
pattern, never by line number; a pattern found zero or several times stops the script with exit status 2
before anything runs), and then, on the copy:

  1. ``pytest -x`` on tests/test_claims_rhs.py (the claim-by-claim reference tests): the first failing test;
  2. ``pytest -x`` on the other tests of the formulas and the step (TESTS below): the first failing test;
  3. a short Sigma-descent run (RUN_ARGS) whose checks.json is compared with the same run on the unmutated
     copy: the claims whose verdict ("holds") flipped, and the claims whose max LHS/RHS changed.

Tests that already fail on the unmutated copy (someone's work in progress) are deselected for every mutation
and listed in the report. Writes benchmarks/results/mutation_check.md and .csv (``--out`` to change). Exit
status 0 when every mutation is caught by the tests, 1 otherwise, 2 on bad arguments or a missing pattern.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAIMS_TEST = "tests/test_claims_rhs.py"
TESTS = ["tests/test_checks.py", "tests/test_simulate.py", "tests/test_bounds.py", "tests/test_constants.py"]
# a short run in which every per-step claim is evaluated inside its premise (Delta finite, logits clipped)
RUN_ARGS = ["--n", "48", "--classes", "4", "--batch-size", "32", "--tau", "1.0", "--eta", "4", "--steps", "40",
            "--delta", "0.5", "--embed-dim", "16", "--eval-every", "20", "--lemma5-trials", "200", "--no-plot",
            "--quiet"]


@dataclass(frozen=True)
class Mutation:
    """One deliberate bug: replace ``old`` (must occur exactly once in ``path``) by ``new``.

    ``path``: a file, or alternatives separated by "|" with glob patterns (a module that may be split into a
    package): the pattern must occur exactly once over all the files they match.
    """

    id: str
    what: str
    path: str
    old: str
    new: str


MUTATIONS = [
    Mutation("L6_rhs_2Delta", "Lem. 6 RHS Delta -> 2 Delta", "simulate/claims.py",
             'claims["L6"] = _eval(l1, Delta, prem & has_neg)', 'claims["L6"] = _eval(l1, 2.0 * Delta, prem & has_neg)'),
    Mutation("L6_l2_rhs_sqrt2", "Lem. 6 (l2) RHS Delta -> sqrt(2) Delta", "simulate/claims.py",
             'claims["L6_l2"] = _eval(l2, Delta, prem & has_neg)',
             'claims["L6_l2"] = _eval(l2, math.sqrt(2.0) * Delta, prem & has_neg)'),
    Mutation("Cor3_mass_e1tau", "Cor. 3 mass RHS Delta/2 -> e^{1/tau} Delta/2", "simulate/claims.py",
             'claims["Cor3_mass"] = _eval(z_ratio, Delta / 2.0, prem)',
             'claims["Cor3_mass"] = _eval(z_ratio, math.exp(inv) * Delta / 2.0, prem)'),
    Mutation("L8_A_no_sqrtB", "Lem. 8 term (A) RHS missing 1/sqrt(B)", "simulate/claims.py",
             'claims["L8_A"] = _eval(gap_A, inj, prem_paper)',
             'claims["L8_A"] = _eval(gap_A, inj * math.sqrt(B), prem_paper)'),
    Mutation("mult_sqrt_q", "Lem. 8 / Thm. 1 multiplicity injection sqrt(q) -> q", "simulate/claims.py",
             "math.sqrt(q_rows)", "q_rows"),
    Mutation("mult_kappa_1", "multiplicity forms: symmetric kappa = 2 -> 1", "simulate/claims.py",
             "kappa = 2.0 if g.symmetric else 1.0", "kappa = 1.0"),
    Mutation("L4_e1tau", "Lem. 4 ratio bound e^{2/tau} -> e^{1/tau}", "simulate/claims.py",
             "exp_or_inf(2 * inv) * n_pos / n_neg.clamp(min=1)", "exp_or_inf(inv) * n_pos / n_neg.clamp(min=1)"),
    Mutation("Cor3_frac_excl", "Cor. 3 negative fraction (B - n)/B -> (B - n)/(B - 1)", "simulate/claims.py",
             "frac_in = (B - same_b) / B", "frac_in = (B - same_b) / (B - 1)"),
    Mutation("inject_no_sqrtB", "Thm. 1 injection Delta/(tau sqrt B) -> Delta/tau (engine constants)",
             "simulate/config.py", '"inject": Delta / (tau * math.sqrt(B)),', '"inject": Delta / tau,'),
    Mutation("lipschitz_2x", "Lem. 2 Lipschitz 1/(2 tau^2 B) -> 1/(tau^2 B)", "simulate/config.py",
             '"lipschitz": 1.0 / (2.0 * tau * tau * B),', '"lipschitz": 1.0 / (tau * tau * B),'),
    Mutation("Delta_C_minus_1", "Delta_{C,delta}: 1/C -> 1/(C - 1) in the numerator", "theory/constants.py",
             "(1.0 / C + eps) / (margin - eps)", "(1.0 / (C - 1) + eps) / (margin - eps)"),
    Mutation("eps_log_B", "eps_{B,delta}: log(T B/delta) -> log(B/delta)", "theory/constants.py",
             "math.log(T * B / delta) / (2.0 * B)", "math.log(B / delta) / (2.0 * B)"),
    Mutation("eq1_sign", "Eq. 1 step sign: Sigma - eta G -> Sigma + eta G", "simulate/step.py",
             "coef = layout.row_scale * (-eta / tau)", "coef = layout.row_scale * (eta / tau)"),
    Mutation("eq1_scale", "Eq. 1 step scale: eta -> eta/2", "simulate/step.py",
             "coef = layout.row_scale * (-eta / tau)", "coef = layout.row_scale * (-eta / (2.0 * tau))"),
    Mutation("diag_fixed_moves", "diag fixed: the ordered step still moves Sigma(i, i)", "simulate/step.py",
             "    if layout.diag_fixed:\n        d = layout.diag_entries",
             "    if False:\n        d = layout.diag_entries"),
    Mutation("eq1_transposed", "Eq. 1 update read and written at Sigma^T (transposed block)", "simulate/layout.py",
             "self.block_index = (self.block_rows[:, None] * M + unique_cols[None, :]).reshape(-1)",
             "self.block_index = (self.block_rows[:, None] + unique_cols[None, :] * M).reshape(-1)"),
    Mutation("nscl_keeps_positive", "NSCL denominator keeps a same-class key (the positive)", "simulate/layout.py",
             "bias = torch.sub(self._log_keys_per_col[None, :], torch.reciprocal(self.other_label_mask).sub_(1.0))",
             "bias = torch.sub(self._log_keys_per_col[None, :], torch.reciprocal(self.other_label_mask).sub_(1.0))\n"
             "        bias[self._pos_unique[0], self._pos_unique[1]] = 0.0"),
    Mutation("gronwall_off_by_one", "Thm. 1 recurrence D_{t+1} = (1 + a_t)(D_t + g_t): product one step too long",
             "theory/bounds.py|theory/bounds/*.py", "d = (1.0 + eta[t] * L[t]) * d + eta[t] * g[t]",
             "d = (1.0 + eta[t] * L[t]) * (d + eta[t] * g[t])"),
    Mutation("gronwall_product_from_s", "Grönwall product prod_{u>s} -> prod_{u>=s} (unrolled_terminal)",
             "theory/bounds.py|theory/bounds/*.py",
             "suffix = np.concatenate([np.cumsum(log1p[::-1])[::-1][1:], [0.0]])",
             "suffix = np.cumsum(log1p[::-1])[::-1]"),
    Mutation("thm1_closed_rate", "Eq. 2 exponent S/(2 tau^2 B) -> S/(tau^2 B)", "theory/bounds.py|theory/bounds/*.py",
             "out = np.exp(S / (2.0 * tau * tau * B)) * S * D / (tau * math.sqrt(B))",
             "out = np.exp(S / (tau * tau * B)) * S * D / (tau * math.sqrt(B))"),
    Mutation("gap_recurrence_rate", "Thm1_gap recurrence without the Lipschitz growth", "simulate/run.py",
             'state.gap_bound = (1.0 + eta_t * info["mult_alpha"]) * state.gap_bound + eta_t * info["gap_A"]',
             'state.gap_bound = state.gap_bound + eta_t * info["gap_A"]'),
    Mutation("cor1_one_minus_rho", "Cor. 1/2 cosine bound (1 - rho)/(1 + rho) -> 1 - rho", "theory/bounds.py|theory/bounds/*.py",
             "return -1.0 if math.isinf(r) else (1.0 - r) / (1.0 + r)", "return -1.0 if math.isinf(r) else 1.0 - r"),
    Mutation("cos_sharp_no_sqrt", "tight cosine bound sqrt(1 - rho^2) -> 1 - rho^2", "theory/bounds.py|theory/bounds/*.py",
             "return math.sqrt(1.0 - r * r) if r < 1.0 else -1.0", "return 1.0 - r * r if r < 1.0 else -1.0"),
    Mutation("rsa_M_not_sqrtM", "Cor. 2 scale sqrt(M) sigma_D -> M sigma_D", "theory/bounds.py|theory/bounds/*.py",
             "return math.sqrt(M) * s", "return M * s"),
    Mutation("cka_exact_uncentred", "Cor1_exact rho_T without centring (||D||_F / ||K^CL||_F)",
             "simulate/certificates.py", "rho_T = centred_fro(S2, S1) / k",
             "rho_T = float(torch.linalg.matrix_norm(S2 - S1)) / k"),
    Mutation("loss_gap_e1tau", "loss-gap bound e^{2/tau} -> e^{1/tau}", "theory/bounds.py|theory/bounds/*.py",
             "x = _exp(2.0 / tau) / (C - 1)", "x = _exp(1.0 / tau) / (C - 1)"),
    Mutation("lem6_sharp_factor", "thm1_bound_sharp: Lem. 6 (l2) factor 1/sqrt(2) dropped", "theory/bounds.py|theory/bounds/*.py",
             "return D / (math.sqrt(2.0) * (1.0 + D / 2.0))", "return D / (1.0 + D / 2.0)"),
]


# ----------------------------------------------------------------------------------------------------------
# the copy


def tree_files(root: Path) -> list[str]:
    """Tracked and untracked-not-ignored files of the working tree that exist (deleted files skipped)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                         capture_output=True).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def copy_tree(root: Path, files: list[str], dest: Path) -> None:
    for f in files:
        d = dest / f
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, d)


def locate(root: Path, m: Mutation) -> str:
    """The one file (relative path) holding ``m.old``; ValueError unless it occurs exactly once over m.path."""
    files = sorted({f for alt in m.path.split("|") for f in root.glob(alt) if f.is_file()})
    if not files:
        raise ValueError(f"mutation {m.id}: no file matches {m.path}")
    hits = [(f, f.read_text().count(m.old)) for f in files]
    n = sum(c for _, c in hits)
    if n != 1:
        raise ValueError(f"mutation {m.id}: pattern found {n} times in {m.path} (expected exactly once): {m.old!r}")
    return str(next(f for f, c in hits if c).relative_to(root))


def apply_mutation(copy: Path, m: Mutation) -> str:
    """Apply ``m`` to the copy; returns the mutated file (relative path)."""
    rel = locate(copy, m)
    p = copy / rel
    p.write_text(p.read_text().replace(m.old, m.new))
    return rel


def check_patterns(root: Path, muts: list[Mutation]) -> None:
    """ValueError naming the first mutation whose pattern is not found exactly once in the working tree."""
    for m in muts:
        locate(root, m)


# ----------------------------------------------------------------------------------------------------------
# running things on a copy


def _env(copy: Path) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg")
    return env


def _run(cmd: list[str], copy: Path, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(cmd, 124, e.stdout or "", (e.stderr or "") + "\ntimeout")


_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)", re.M)


def run_pytest(copy: Path, files: list[str], deselect: list[str], first_only: bool, timeout: float) -> tuple[int, list[str]]:
    """(exit status, failing test ids) of pytest on the copy (-x if first_only)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=no", "-rfE"]
    if first_only:
        cmd.append("-x")
    for d in deselect:
        cmd += ["--deselect", d]
    res = _run(cmd + files, copy, timeout)
    fails = [m.group(2) for m in _FAILED.finditer(res.stdout)]
    if res.returncode not in (0, 1) and not fails:
        tail = (res.stdout + res.stderr).strip().splitlines()[-1:] or ["?"]
        fails = [f"pytest exit {res.returncode}: {tail[0][:120]}"]
    return res.returncode, fails


def run_sigma(copy: Path, out: Path, timeout: float) -> tuple[dict | None, str]:
    """checks.json of the short Sigma-descent run on the copy (None and the last error line if it failed)."""
    res = _run([sys.executable, "-m", "simulate.sigma_descent", *RUN_ARGS, "--out", str(out)], copy, timeout)
    p = out / "checks.json"
    if res.returncode != 0 or not p.is_file():
        tail = (res.stdout + res.stderr).strip().splitlines()[-1:] or ["?"]
        return None, f"run failed (exit {res.returncode}): {tail[0][:120]}"
    return json.loads(p.read_text()), ""


def verdict_diff(base: dict, mut: dict | None, err: str) -> tuple[str, str]:
    """(flipped verdicts, changed max ratios) of the mutated run vs the baseline run."""
    if mut is None:
        return err, "-"
    flipped, changed = [], []
    for cid, o in base.items():
        if cid.startswith("_") or not isinstance(o, dict):
            continue
        m = mut.get(cid, {})
        if m.get("holds") != o.get("holds"):
            flipped.append(f"{cid} ({_h(o.get('holds'))}->{_h(m.get('holds'))})")
        a, b = o.get("max_ratio"), m.get("max_ratio")
        if (a is None) != (b is None) or (a is not None and not _close(a, b)):
            changed.append(cid)
    return (", ".join(flipped) or "none"), (", ".join(changed) or "none")


def _h(x) -> str:
    return "n/a" if x is None else ("yes" if x else "NO")


def _close(a: float, b: float) -> bool:
    if a == b:
        return True
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


# ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2, help="mutations checked in parallel (one core each)")
    ap.add_argument("--only", default=None, help="comma-separated mutation ids (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mutation_check"),
                    help="output path without extension (.md and .csv are written)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest / run command")
    ap.add_argument("--no-run", action="store_true", help="skip the Sigma-descent verdict comparison")
    ap.add_argument("--claims-only", action="store_true",
                    help="run only tests/test_claims_rhs.py (a quick check; implies --no-run)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.claims_only:
        args.no_run = True
    if args.list:
        for m in MUTATIONS:
            print(f"{m.id:24s} {m.path:26s} {m.what}")
        return 0
    muts = MUTATIONS
    if args.only:
        want = [s for s in args.only.split(",") if s]
        unknown = [s for s in want if s not in {m.id for m in MUTATIONS}]
        if unknown:
            ap.error(f"--only: unknown mutation id {unknown[0]!r} (see --list)")
        muts = [m for m in MUTATIONS if m.id in want]
    try:
        check_patterns(ROOT, muts)
    except ValueError as e:
        print(f"mutation_check: error: {e}", file=sys.stderr)
        return 2

    files = tree_files(ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="mutation_check_"))
    t0 = time.perf_counter()
    try:
        # one snapshot of the working tree (others may edit it meanwhile); every copy is made from it
        snap = tmp / "snapshot"
        copy_tree(ROOT, files, snap)
        try:
            check_patterns(snap, muts)
        except ValueError as e:
            print(f"mutation_check: error: {e}", file=sys.stderr)
            return 2
        base = tmp / "base"
        shutil.copytree(snap, base)
        where = _run([sys.executable, "-c", "import simulate, theory; print(simulate.__file__, theory.__file__)"],
                     base, 60).stdout
        if str(base) not in where:
            print(f"mutation_check: error: the copy does not shadow the installed package ({where.strip()})",
                  file=sys.stderr)
            return 2
        print(f"baseline: {len(files)} files copied to {base}", flush=True)
        rc1, base_fail_claims = run_pytest(base, [CLAIMS_TEST], [], False, args.timeout)
        rc2, base_fail_other = (0, []) if args.claims_only else run_pytest(base, TESTS, [], False, args.timeout)
        broken = [f for f in base_fail_claims + base_fail_other if "::" not in f]
        if rc1 not in (0, 1) or rc2 not in (0, 1) or broken:
            print(f"mutation_check: error: the tests do not run on the unmutated copy: {broken or (rc1, rc2)}",
                  file=sys.stderr)
            return 2
        deselect = base_fail_claims + base_fail_other
        if base_fail_claims or base_fail_other:
            print(f"baseline failures (deselected): {base_fail_claims + base_fail_other}", flush=True)
        base_checks, err = (None, "skipped") if args.no_run else run_sigma(base, tmp / "base_run", args.timeout)
        if not args.no_run and base_checks is None:
            print(f"mutation_check: error: baseline Sigma-descent run failed: {err}", file=sys.stderr)
            return 2

        def one(m: Mutation) -> dict:
            ts = time.perf_counter()
            copy = tmp / m.id
            shutil.copytree(snap, copy)
            rel = apply_mutation(copy, m)
            _, f1 = run_pytest(copy, [CLAIMS_TEST], deselect, True, args.timeout)
            f2 = ["skipped"] if args.claims_only else run_pytest(copy, TESTS, deselect, True, args.timeout)[1]
            if args.no_run:
                flipped, changed = "skipped", "skipped"
            else:
                mc, err = run_sigma(copy, tmp / f"{m.id}_run", args.timeout)
                flipped, changed = verdict_diff(base_checks, mc, err)
            shutil.rmtree(copy, ignore_errors=True)
            row = {"mutation": m.id, "what": m.what, "file": rel,
                   "caught_by_test_claims_rhs": f1[0] if f1 else "NOT CAUGHT",
                   "caught_by_other_tests": f2[0] if f2 else "NOT CAUGHT",
                   "verdicts_flipped": flipped, "max_ratio_changed": changed,
                   "seconds": round(time.perf_counter() - ts, 1)}
            print(f"{m.id}: claims_rhs={row['caught_by_test_claims_rhs']} | other={row['caught_by_other_tests']} | "
                  f"flipped={flipped} | changed={changed}", flush=True)
            return row

        with ThreadPoolExecutor(max_workers=args.jobs) as ex:
            rows = list(ex.map(one, muts))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t0

    n = len(rows)
    caught = lambda x: x not in ("NOT CAUGHT", "skipped")  # noqa: E731
    by_claims = sum(caught(r["caught_by_test_claims_rhs"]) for r in rows)
    by_other = sum(caught(r["caught_by_other_tests"]) for r in rows)
    by_any = sum(caught(r["caught_by_test_claims_rhs"]) or caught(r["caught_by_other_tests"]) for r in rows)
    by_verdict = sum(r["verdicts_flipped"] not in ("none", "skipped") for r in rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cmd = "python benchmarks/mutation_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Mutation check", "",
        f"Command: `{cmd.strip()}` ({wall:.0f} s wall, {args.jobs} jobs). Each mutation is one anchored text",
        "replacement in a copy of the working tree; tests run with `pytest -x` on the copy; the verdicts are those",
        "of the short run `python -m simulate.sigma_descent " + " ".join(RUN_ARGS) + "` compared with the same",
        "run unmutated (flipped = a claim's `holds` changed; changed = its max LHS/RHS changed).", "",
        f"**{by_any}/{n} caught by the tests** ({by_claims}/{n} by tests/test_claims_rhs.py, {by_other}/{n} by "
        f"{', '.join(TESTS)}); {by_verdict}/{n} flip a verdict of the short run.", "",
        "| mutation | what | file | caught by test_claims_rhs.py | caught by other tests | verdicts flipped | "
        "max LHS/RHS changed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mutation']} | {r['what']} | {r['file']} | {r['caught_by_test_claims_rhs']} | "
                     f"{r['caught_by_other_tests']} | {r['verdicts_flipped']} | {r['max_ratio_changed']} |")
    if deselect:
        lines += ["", "Deselected (failing before any mutation): " + ", ".join(deselect)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[6:]))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")
    return 0 if by_any == n else 1


if __name__ == "__main__":
    sys.exit(main())
