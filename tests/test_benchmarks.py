"""The benchmark scripts run as ``benchmarks/RESULTS.md`` writes them: ``.venv/bin/python benchmarks/X.py``
from the repo root (here ``sys.executable``), each with ``--quick`` (its smallest sizes; the numbers
mean nothing), and print their ratio line.

Python puts a script's own folder first on ``sys.path``, so a script named like one of our packages
(``benchmarks/preprocess.py``) hides it from every script in ``benchmarks/``. Every script must either
take ``--quick`` or declare, on a line of its own, why it cannot run here, e.g.
``# benchmarks-test: skip: needs a verl training run`` (it is then skipped, never run).
"""

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))
SKIP_RE = re.compile(r"^# benchmarks-test: skip: (.+)$", re.MULTILINE)
# the line with the measured ratio and its goal, per script; any other script must print one like them
RATIO_LINES = {
    "bench_loss.py": r"ratio ours/vanilla: \d+\.\d+x \(goal <= 1\.15x\)",
    "bench_referee.py": r"referee: \d+ rollouts .* -> \d+\.\d+ % of serial \(goal <= 3 %\); verdicts ok (\d+)/\1",
    "bench_preprocess.py": r"speed ours/baseline: \d+\.\d+x, with --workers 2 \d+\.\d+x \(goal >= 3x\); .*",
    "bench_eval.py": r"prompt tokens, separate / shared: \d+\.\d+x fewer \(goal >= 2x\)",
    "bench_eval_batch.py": r"eval wall time, batch_size 1 / \d+: \d+\.\d+x faster \(goal >= 3x\); greedy outputs equal (\d+)/\1",
    "bench_sft_procs.py": r"SFT wall time, 1 / \d+ processes: \d+\.\d+x faster \(goal >= 1\.3x\); last loss \d+\.\d+ / \d+\.\d+",
    "bench_sft_precision.py": r"SFT wall time on \d+ process\(es\), bf16 autocast / fp32: \d+\.\d+x faster \(goal >= 2x\); last loss \d+\.\d+ / \d+\.\d+",
    "bench_genrm.py": r"genrm (group|knockout): \d+ group\(s\) x \d+ rollouts, \d+ calls per group .* -> \d+\.\d+ % of serial \(goal <= 5 %(; sequential rounds bound \d+\.\d+ %)?\)",
}
ANY_RATIO_LINE = r".*\d+(?:\.\d+)? ?(?:x|%).*\(goal [<>]=? ?\d+(?:\.\d+)? ?(?:x|%)\).*"
EXTRA_ARGS = {"bench_preprocess.py": ["--workdir", "{tmp}"]}  # its data cache goes to the test's folder
RESULTS_COMMAND_RE = re.compile(r"`(\.venv/bin/python benchmarks/[^`]*)`")


def _takes_quick(source: str) -> bool:
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
               and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "--quick"
               for node in ast.walk(ast.parse(source)))  # fmt: skip


def _shadowed(stem: str) -> str | None:
    """Where the module a script named ``stem.py`` would hide lives, or None."""
    spec = importlib.util.find_spec(stem)
    return None if spec is None else (spec.origin or str(list(spec.submodule_search_locations or [])))


def test_results_md_commands_name_existing_scripts_that_shadow_nothing():
    commands = RESULTS_COMMAND_RE.findall((BENCH / "RESULTS.md").read_text())
    assert commands, "no `.venv/bin/python benchmarks/...` command in benchmarks/RESULTS.md"
    for command in commands:
        script = command.split()[1]
        assert (REPO / script).is_file(), f"benchmarks/RESULTS.md: `{command}` names a missing script"
        where = _shadowed(Path(script).stem)
        assert where is None, f"benchmarks/RESULTS.md: `{command}`: {script} hides the module {where} from its imports"


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_shadows_a_module_and_each_names_itself(name):
    where = _shadowed(Path(name).stem)
    assert where is None, f"benchmarks/{name} hides {where} from every script in benchmarks/: rename it (bench_*.py)"
    doc = ast.get_docstring(ast.parse((BENCH / name).read_text())) or ""
    assert f".venv/bin/python benchmarks/{name}" in doc, f"benchmarks/{name}: its docstring should say how it is run"


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_runs_as_results_md_writes_it(name, tmp_path):
    source = (BENCH / name).read_text()
    skip = SKIP_RE.search(source)
    if skip:
        pytest.skip(f"benchmarks/{name}: {skip.group(1)}")
    if not _takes_quick(source):
        pytest.fail(f"benchmarks/{name} takes no --quick: add one (its smallest sizes), or declare on a line of its "
                    f"own '# benchmarks-test: skip: <reason>' if it needs a verl training run")  # fmt: skip
    extra = [a.format(tmp=tmp_path) for a in EXTRA_ARGS.get(name, [])]
    res = subprocess.run([sys.executable, f"benchmarks/{name}", "--quick", *extra], cwd=REPO, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, f"benchmarks/{name} exited {res.returncode}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    pattern = re.compile(RATIO_LINES.get(name, ANY_RATIO_LINE))
    lines = res.stdout.splitlines()
    assert any(pattern.fullmatch(line.strip()) for line in lines), f"no ratio line ({pattern.pattern}) in:\n{res.stdout}"
