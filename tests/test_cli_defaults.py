"""One default regime (issue 6 item 5): simulate.sweep's fixed options default to SigmaConfig's values (the
simulate.sigma_descent default regime), and every simulate CLI's --help shows the default of every option that
takes a value."""

from __future__ import annotations

import re

import pytest

from simulate import adversarial, montecarlo, sigma_descent, soundness, sweep
from simulate.config import SigmaConfig


def test_sweep_fixed_options_default_to_sigma_descent_regime() -> None:
    args = sweep.build_parser().parse_args([])
    base = sweep.base_config(args)
    D = SigmaConfig()
    for k in ("steps", "delta", "views", "view_slots", "sigma", "replacement", "project", "diag", "separation",
              "embed_dim", "aug_noise"):
        assert base[k] == getattr(D, k), k
    assert base["project"] == "clip" and base["diag"] == "fixed"  # the regime the README reports
    assert args.n_per_class * D.classes == D.n and str(D.classes) in args.classes.split(",")
    assert float(args.eta) == D.eta and int(args.batch_size) == D.batch_size and str(D.tau) in args.tau.split(",")
    # a grid point at the default axes values IS the default SigmaConfig (up to the measurement-only options)
    (task,) = sweep.make_tasks([D.classes], [D.tau], [D.batch_size], [D.eta], [0], args.n_per_class, base)
    cfg = SigmaConfig.from_dict(task["config"])
    skip = {"init_seed", "batch_seed", "aug_seed", "eval_every", "lemma5_trials", "plot"}
    assert {k: v for k, v in cfg.to_dict().items() if k not in skip} == \
        {k: v for k, v in D.to_dict().items() if k not in skip}


def _option_blocks(text: str) -> dict[str, str]:
    """{'--opt': 'its usage + help text'} from an argparse --help page."""
    blocks: dict[str, str] = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"^  (-\w, )?(--[\w-]+)(.*)$", line)
        if m:
            cur = m.group(2)
            blocks[cur] = m.group(3)
        elif cur is not None and line.startswith("    "):
            blocks[cur] += " " + line.strip()
        else:
            cur = None
    return blocks


@pytest.mark.parametrize("mod", [sigma_descent, sweep, adversarial, montecarlo, soundness],
                         ids=lambda m: m.__name__)
def test_every_option_with_a_value_shows_its_default(mod, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    blocks = _option_blocks(capsys.readouterr().out)
    assert len(blocks) >= 4
    # an option takes a value when its usage shows a metavar (--tau TAU) or a choice set ({a,b})
    takes_value = {k: v for k, v in blocks.items() if re.match(r"^ ([A-Z_]+|\{)", v)}
    exempt = {"--config", "--compare", "--init-path", "--labels-path", "--threads", "--resume"}
    missing = [k for k, v in takes_value.items() if "default" not in v.lower() and k not in exempt]
    assert not missing, f"{mod.__name__}: --help shows no default for {missing}"
