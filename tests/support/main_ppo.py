"""``python -m verl.trainer.main_ppo`` on our configs in a subprocess whose ``ray.init`` is guarded: the start-up
checks are tested up to the point where verl would start Ray, and no further."""

import os
import subprocess
import sys

from r1reward_verl.config import CONFIG_DIR

# a sitecustomize: ray.init prints a marker and exits 97
RAY_GUARD = """\
import ray


def _refuse(*args, **kwargs):
    print("R1R-TEST: ray.init reached", flush=True)
    raise SystemExit(97)


ray.init = _refuse
"""


def main_ppo_guarded(tmp_path, config: str, *overrides: str, guard: str = RAY_GUARD,
                     **env_vars: str) -> subprocess.CompletedProcess:  # fmt: skip
    """``python -m verl.trainer.main_ppo`` with no ``R1R_*`` but ``env_vars``, where ``ray.init`` exits 97 (or does
    what the sitecustomize ``guard`` makes of it)."""
    (tmp_path / "guard").mkdir(exist_ok=True)
    (tmp_path / "guard" / "sitecustomize.py").write_text(guard)
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1R_")}
    env.update(env_vars, PYTHONPATH=str(tmp_path / "guard"))
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(CONFIG_DIR), "--config-name", config,
           *overrides]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


def read_metrics(path) -> dict[int, dict]:
    """verl's file logger (one JSON line per step), read by r1reward_verl.runlogs: ``{step: {metric: value}}``."""
    from r1reward_verl.runlogs import read_jsonl

    return read_jsonl(path).by_step()
