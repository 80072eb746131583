"""The benchmark scripts run as ``benchmarks/RESULTS.md`` writes them: ``.venv/bin/python benchmarks/X.py``
from the repo root (here ``sys.executable``), each with ``--quick`` (its smallest sizes; the numbers
mean nothing), and print their ratio line.

The ratio line is parsed: its numbers are finite and positive, the ratio is the quotient of the numbers the
script prints, and what cannot vary from run to run holds (the quick sizes and counts, the same greedy outputs
or loss where the script compares them, tokens counted by the backend as by the hook). Never whether a goal is
met: a ratio measured once on a busy machine varies. ``benchmarks/RESULTS.md`` gives each script's command and
records a ratio line of the same form, with its numbers.

Python puts a script's own folder first on ``sys.path``, so a script named like one of our packages
(``benchmarks/preprocess.py``) hides it from every script in ``benchmarks/``. Every script must either
take ``--quick`` or declare, on a line of its own, why it cannot run here, e.g.
``# benchmarks-test: skip: needs a verl training run`` (it is then skipped, never run).
"""

import ast
import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))
SKIP_RE = re.compile(r"^# benchmarks-test: skip: (.+)$", re.MULTILINE)
# the line with the measured ratio and its goal, per script, its numbers named; any other script must print one like
# them. RESULTS.md records one such line (or more) per script, from a real run.
RATIO_LINES = {
    "bench_loss.py": r"ratio ours/vanilla: (?P<ratio>\d+\.\d+)x \(goal <= 1\.15x\)",
    "bench_referee.py": r"referee: (?P<rollouts>\d+) rollouts x (?P<ms>\d+) ms, cap (?P<cap>\d+): wall (?P<wall>\d+\.\d+) s "
                        r"vs serial (?P<serial>\d+\.\d+) s -> (?P<pct>\d+\.\d+) % of serial \(goal <= 3 %\); "
                        r"verdicts ok (?P<ok>\d+)/(?P<of>\d+)",
    "bench_preprocess.py": r"speed ours/baseline: (?P<speed>\d+\.\d+)x, with --workers 2 (?P<speed_2>\d+\.\d+)x \(goal >= 3x\); "
                           r"peak RSS baseline/ours: (?P<rss>\d+\.\d+)x; ours at (?P<rows>\d+) <= 1\.5 GB: (?:True|False); "
                           r"ours RSS (?P=rows)/(?P<small_rows>\d+) rows: (?P<rss_growth>\d+\.\d+)x",
    "bench_eval.py": r"prompt tokens, separate / shared: (?P<ratio>\d+\.\d+)x fewer \(goal >= 2x\)",
    "bench_eval_batch.py": r"eval wall time, batch_size 1 / (?P<bs>\d+): (?P<ratio>\d+\.\d+)x faster \(goal >= 3x\); "
                           r"greedy outputs equal (?P<equal>\d+)/(?P<of>\d+)",
    "bench_sft_procs.py": r"SFT wall time, 1 / (?P<procs>\d+) processes: (?P<ratio>\d+\.\d+)x faster \(goal >= 1\.3x\); "
                          r"last loss (?P<loss_1>\d+\.\d+) / (?P<loss_n>\d+\.\d+)",
    "bench_sft_precision.py": r"SFT wall time on (?P<procs>\d+) process\(es\), bf16 autocast / fp32: (?P<ratio>\d+\.\d+)x "
                              r"faster \(goal >= 2x\); last loss (?P<loss_bf16>\d+\.\d+) / (?P<loss_fp32>\d+\.\d+)",
    "bench_genrm.py": r"genrm (?P<mode>group|knockout): (?P<groups>\d+) group\(s\) x (?P<n>\d+) rollouts, (?P<calls>\d+) calls "
                      r"per group \(formula (?:n\(n-1\)|2\(n-1\))\), (?P<ms>\d+) ms per call, cap (?P<cap>\d+): "
                      r"wall (?P<wall>\d+\.\d+) s vs serial (?P<serial>\d+\.\d+) s -> (?P<pct>\d+\.\d+) % of serial "
                      r"\(goal <= 5 %(?:; sequential rounds bound (?P<bound>\d+\.\d+) %)?\)",
}  # fmt: skip
ANY_RATIO_LINE = r".*\d+(?:\.\d+)? ?(?:x|%).*\(goal [<>]=? ?\d+(?:\.\d+)? ?(?:x|%)\).*"
EXTRA_ARGS = {"bench_preprocess.py": ["--workdir", "{tmp}"]}  # its data cache goes to the test's folder
RESULTS_COMMAND_RE = re.compile(r"`(\.venv/bin/python benchmarks/[^`]*)`")


def _numbers(m: re.Match) -> dict[str, float]:
    """The named numbers of a ratio line, each a finite number > 0 (a count, a time, a ratio, a loss); a count of
    successes (``ok``, ``equal``) must be all of them (``of``)."""
    out = {}
    for key, text in m.groupdict().items():
        if text is not None and re.fullmatch(r"\d+(?:\.\d+)?", text):
            out[key] = float(text)
            assert math.isfinite(out[key]) and out[key] > 0, f"{key} = {text} in {m.group(0)!r}"
    for key in ("ok", "equal"):
        if key in out:
            assert out[key] == out["of"], f"{key} {m[key]} of {m['of']} in {m.group(0)!r}"
    return out


def _printed(x: str | float) -> tuple[float, float]:
    """(value, half its last digit) of a number as printed ("1,234", "0.45"); an exact float: (x, 0)."""
    if not isinstance(x, str):
        return float(x), 0.0
    return float(x.replace(",", "")), 0.5 * 10.0 ** -len(x.partition(".")[2])


def _quotient(q: str, num: str | float, den: str | float, scale: float = 1.0) -> bool:
    """Is the printed ``q`` ``scale * num / den`` of the printed ``num`` and ``den``, up to their rounding?"""
    (qv, qh), (nv, nh), (dv, dh) = _printed(q), _printed(num), _printed(den)
    lo = scale * (nv - nh) / (dv + dh)
    hi = scale * (nv + nh) / (dv - dh) if dv > dh else math.inf
    return lo - qh <= qv <= hi + qh


def _line(out: str, pattern: str) -> re.Match:
    m = re.search(pattern, out, re.MULTILINE)
    assert m, f"no line {pattern!r} in:\n{out}"
    return m


# What each script's --quick run must print besides its ratio line: things no machine's speed changes (its sizes,
# its counts, a correctness check the script makes, the ratio being the quotient of the numbers it prints). Never
# whether a goal is met: a ratio measured once on a busy machine varies.


def _check_loss(out, found):
    (m,) = found
    vanilla = _line(out, r"^vanilla \(verl\): +(\d+\.\d+) ms$")[1]
    ours = _line(out, r"^stable_reinforce \(ours\): +(\d+\.\d+) ms$")[1]
    assert _line(out, r"^tensors: (\d+x\d+) fp32, forward\+backward, median of (\d+),")[1] == "16x256"
    assert _quotient(m["ratio"], ours, vanilla), (m["ratio"], ours, vanilla)


def _check_referee(out, found):
    (m,) = found
    assert (m["rollouts"], m["ms"], m["ok"]) == ("32", "10", "32")  # every rollout asked the referee and got a verdict
    serial = 32 * 10 / 1000
    assert m["serial"] == f"{serial:.1f}" and _quotient(m["pct"], m["wall"], serial, scale=100), m.group(0)
    assert _line(out, r"^parsing: (\d+) typical outputs \(mean \d+ chars\) in \d+\.\d+ s -> [\d,]+ outputs/s$")[1] == "200"


def _check_preprocess(out, found):
    (m,) = found
    assert (m["rows"], m["small_rows"]) == ("1000", "250")
    row = r" +{} rows: +([\d,]+) rows/s, peak RSS +(\d+) MiB"
    ours, two = _line(out, "^ours" + row.format(1000) + "$"), _line(out, "^ours, --workers 2" + row.format(1000))
    base, small = _line(out, "^baseline" + row.format(1000) + "$"), _line(out, "^ours" + row.format(250) + "$")
    # the same rows in each run (the script asserts it), so speed is the ratio of rows/s
    assert _quotient(m["speed"], ours[1], base[1]) and _quotient(m["speed_2"], two[1], base[1]), m.group(0)
    assert _quotient(m["rss"], base[2], ours[2]) and _quotient(m["rss_growth"], ours[2], small[2]), m.group(0)
    assert f"ours at 1000 <= 1.5 GB: {int(ours[2]) <= 1536}" in m.group(0)


def _check_eval(out, found):
    (m,) = found
    rows = re.findall(r"^  (one n=k request|k separate requests) +prompt tokens processed +(\d+) "
                      r"\(backend's account +(\d+)\), (\d+) samples, \d+\.\d+ s$", out, re.MULTILINE)  # fmt: skip
    assert [r[0] for r in rows] == ["one n=k request", "k separate requests"], out
    for mode, counted, accounted, samples in rows:  # the hook's count is the backend's own; 2 pairs x k = 2
        assert counted == accounted and samples == "4", (mode, counted, accounted, samples)
    shared, separate = int(rows[0][1]), int(rows[1][1])
    assert 0 < shared < separate  # one prefill for the k samples: counted tokens, not a time
    assert m["ratio"] == f"{separate / shared:.2f}"


def _check_eval_batch(out, found):
    (m,) = found
    assert (m["bs"], m["equal"]) == ("2", "8")  # 4 pairs x 2 orders: every greedy output the same, batched or not
    secs = dict(re.findall(r"^batch_size (\d+): 8 prompts x \(greedy \+ 1 samples\) in (\d+\.\d+) s$", out, re.MULTILINE))
    assert set(secs) == {"1", "2"} and _quotient(m["ratio"], secs["1"], secs["2"]), (m.group(0), secs)


def _sft_runs(out, labels):
    runs = re.findall(r"^(.+): 2 steps x 4 rows in (\d+\.\d+) s, last loss (\d+\.\d+)$", out, re.MULTILINE)
    assert [r[0] for r in runs] == labels, out
    return {label: (secs, loss) for label, secs, loss in runs}


def _check_sft_procs(out, found):
    (m,) = found
    procs = m["procs"]
    runs = _sft_runs(out, [f"{n} process(es)" for n in sorted({"1", procs})])
    (s1, l1), (sn, ln) = runs["1 process(es)"], runs[f"{procs} process(es)"]
    assert (m["loss_1"], m["loss_n"]) == (l1, ln) and _quotient(m["ratio"], s1, sn), m.group(0)
    # data parallel over the same global batch: the same training, so the same loss (to float rounding)
    assert abs(float(l1) - float(ln)) <= 2e-4, m.group(0)


def _check_sft_precision(out, found):
    (m,) = found
    runs = _sft_runs(out, ["bf16 autocast (verl's default)", "fp32 (ours)"])
    (sb, lb), (sf, lf) = runs["bf16 autocast (verl's default)"], runs["fp32 (ours)"]
    assert (m["loss_bf16"], m["loss_fp32"]) == (lb, lf) and _quotient(m["ratio"], sb, sf), m.group(0)
    # the same training, only the precision of the forward differs: the losses agree to bf16's rounding
    assert abs(float(lb) - float(lf)) <= 0.02 * float(lf), m.group(0)


def _check_genrm(out, found):
    assert [(m["mode"], m["groups"]) for m in found] == [("group", "1"), ("group", "2"), ("knockout", "1"),
                                                         ("knockout", "2")], out  # fmt: skip
    for m in found:
        n, groups = int(m["n"]), int(m["groups"])
        calls = n * (n - 1) if m["mode"] == "group" else 2 * (n - 1)
        assert (n, m["ms"], int(m["calls"])) == (4, "10", calls), m.group(0)
        serial = groups * calls * 10 / 1000
        assert m["serial"] == f"{serial:.2f}" and _quotient(m["pct"], m["wall"], serial, scale=100), m.group(0)
        bound = f"{100 * math.ceil(math.log2(n)) / calls:.1f}" if (m["mode"], groups) == ("knockout", 1) else None
        assert m["bound"] == bound, m.group(0)  # a knockout's rounds are sequential: rounds / calls of serial


QUICK_CHECKS = {"bench_loss.py": _check_loss, "bench_referee.py": _check_referee, "bench_preprocess.py": _check_preprocess,
                "bench_eval.py": _check_eval, "bench_eval_batch.py": _check_eval_batch,
                "bench_sft_procs.py": _check_sft_procs, "bench_sft_precision.py": _check_sft_precision,
                "bench_genrm.py": _check_genrm}  # fmt: skip


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
    found = [m for line in res.stdout.splitlines() if (m := pattern.fullmatch(line.strip()))]
    assert found, f"no ratio line ({pattern.pattern}) in:\n{res.stdout}"
    for m in found:
        _numbers(m)
    if name in QUICK_CHECKS:
        QUICK_CHECKS[name](res.stdout, found)


def test_every_script_with_a_ratio_line_has_its_checks():
    assert set(QUICK_CHECKS) == set(RATIO_LINES)


@pytest.mark.parametrize("name", sorted(RATIO_LINES))
def test_results_md_records_each_scripts_ratio_line(name):
    """RESULTS.md gives each script's command and the ratio line a real run printed, with its numbers."""
    text = (BENCH / "RESULTS.md").read_text()
    assert f"`.venv/bin/python benchmarks/{name}" in text, f"benchmarks/RESULTS.md has no command for {name}"
    found = [m for line in text.splitlines() if (m := re.fullmatch(RATIO_LINES[name], line.strip()))]
    assert found, f"benchmarks/RESULTS.md records no line {RATIO_LINES[name]!r} of {name}"
    for m in found:
        _numbers(m)
