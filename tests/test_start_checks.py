"""What ``python -m verl.trainer.main_ppo`` with our Hydra callbacks settles in the driver before verl's TaskRunner
actor runs: the config's values (issue 24, defect 8), and a checkpoint directory every node shares
(defect 7)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1reward_verl.config import compose_config, resolve_for_the_task, validate_like_main_ppo
from tests.conftest import compose
from tests.test_hydra_config import _main_ppo_guarded

# In run_ppo, where verl calls ray.init and then sends `config` to the TaskRunner actor: without the driver's R1R_*
# variables (the task reads the config after they changed), save the config run_ppo holds, as Ray would ship it;
# then put them back and fail the job (an exception, not an exit: a -m sweep goes on to its next member).
HANDOVER_GUARD = """\
import os
import pickle
import sys

import ray


def _hand_over(*args, **kwargs):
    frame = sys._getframe(1)
    assert frame.f_code.co_name == "run_ppo", frame.f_code.co_name
    start = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("R1R_")]:
        del os.environ[name]
    out = os.environ["TEST_HANDOVER_DIR"]
    with open(os.path.join(out, f"{len(os.listdir(out))}.pkl"), "wb") as f:
        pickle.dump(frame.f_locals["config"], f)
    os.environ.update(start)  # for the next member's start-up checks
    raise RuntimeError("R1R-TEST: handed over to the TaskRunner")


ray.init = _hand_over
"""

# The TaskRunner actor on another node: its own process and environment, where TaskRunner.run resolves the config.
ACTOR_SIDE = """\
import json
import pickle
import sys

from omegaconf import OmegaConf

config = pickle.load(open(sys.argv[1], "rb"))
raw = json.dumps(OmegaConf.to_container(config, resolve=False))
OmegaConf.resolve(config)  # TaskRunner.run
keys = ["trainer.nnodes", "trainer.n_gpus_per_node", "trainer.default_local_dir", "trainer.project_name",
        "trainer.experiment_name", "data.train_files", "actor_rollout_ref.model.path",
        "reward.reward_model.n_gpus_per_node"]
print(json.dumps({"oc.env left": "oc.env" in raw, **{k: OmegaConf.select(config, k) for k in keys}}))
"""

# what the node the actor lands on has in its environment (a `ray start` shell without the driver's exports)
OTHER_NODE = {"R1R_NNODES": "1", "R1R_GPUS_PER_NODE": "4", "R1R_DATA_DIR": "/node-b/data",
              "R1R_POLICY_PATH": "/node-b/policy", "R1R_REFEREE_GPUS": "1"}  # fmt: skip


def _driver_env(tmp_path) -> dict:
    for name in ("train.parquet", "val.parquet"):
        (tmp_path / name).touch()
    return {"R1R_NNODES": "2", "R1R_GPUS_PER_NODE": "2", "R1R_CKPT_DIR": str(tmp_path / "shared"),
            "R1R_PROJECT": "from-the-driver", "R1R_DATA_DIR": str(tmp_path), "R1R_POLICY_PATH": str(tmp_path),
            "R1R_REFEREE_GPUS": "2"}  # fmt: skip


def _actor_side(pkl: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1R_")}
    out = subprocess.run([sys.executable, "-c", ACTOR_SIDE, str(pkl)], capture_output=True, text=True, timeout=60,
                         env={**env, **OTHER_NODE}, check=True)  # fmt: skip
    return json.loads(out.stdout)


def _handed_over(tmp_path, *args: str, **env_vars: str) -> list[dict]:
    """main_ppo with ``args`` and the driver's ``env_vars``; what the TaskRunner of each job resolves on a node
    with the :data:`OTHER_NODE` environment."""
    handover = tmp_path / "handover"
    handover.mkdir()
    out = _main_ppo_guarded(tmp_path, "r1reward", *args, guard=HANDOVER_GUARD, TEST_HANDOVER_DIR=str(handover),
                            **env_vars)  # fmt: skip
    assert "R1R-TEST: handed over" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
    return [_actor_side(handover / f"{i}.pkl") for i in range(len(list(handover.iterdir())))]


def _expected(tmp_path, experiment: str) -> dict:
    return {"oc.env left": False, "trainer.nnodes": 2, "trainer.n_gpus_per_node": 2,
            "trainer.default_local_dir": f"{tmp_path}/shared/from-the-driver/{experiment}",
            "trainer.project_name": "from-the-driver", "trainer.experiment_name": experiment,
            "data.train_files": f"{tmp_path}/train.parquet", "actor_rollout_ref.model.path": str(tmp_path),
            "reward.reward_model.n_gpus_per_node": 2}  # fmt: skip


def test_the_taskrunner_gets_the_values_the_driver_checked(tmp_path):
    """verl resolves its config inside the TaskRunner actor; on a `ray start` cluster its node's environment is not
    the driver's. Before the fix that actor ran with 1 node, 4 GPUs, checkpoints/ and node B's data."""
    (job,) = _handed_over(tmp_path, **_driver_env(tmp_path))
    assert job == _expected(tmp_path, "r1reward-paper-none-fsdp")


def test_each_sweep_member_gets_the_values_the_driver_checked(tmp_path):
    """-m: Hydra's basic launcher composes each member and runs it with no callback hook in between."""
    jobs = _handed_over(tmp_path, "-m", "ablation=none,no_preclip", **_driver_env(tmp_path))
    experiments = ["r1reward-paper-none-fsdp", "r1reward-paper-no_preclip-fsdp"]
    assert jobs == [_expected(tmp_path, e) for e in experiments]


def test_an_interpolation_that_does_not_resolve_stops_main_ppo_in_one_line(tmp_path):
    """Resolved in the driver, an unset variable the local-input check does not read is one line, exit 2
    (it used to be a traceback in the TaskRunner actor)."""
    env = _driver_env(tmp_path)
    out = _main_ppo_guarded(tmp_path, "r1reward", "referee=endpoint", **env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("r1reward:")]
    assert lines == ["r1reward: not starting: reward.custom_reward_function.reward_kwargs.referee_base_url: cannot "
                     "resolve '${oc.env:R1R_REFEREE_URL}': environment variable R1R_REFEREE_URL is not set"], lines


RUNS = [
    ("r1reward", []), ("r1reward", ["preset=authors_script", "referee=endpoint"]), ("r1reward_megatron", []),
    ("r1reward_cpu", []), ("genrm_policy", []), ("genrm_policy", ["judge=endpoint"]), ("genrm_policy_cpu", []),
]  # fmt: skip


@pytest.mark.parametrize("name, overrides", RUNS, ids=[" ".join([n, *o]) for n, o in RUNS])
def test_resolving_in_the_driver_changes_no_value_verl_resolves(monkeypatch, name, overrides):
    """verl's main and TaskRunner.run set trainer.device (auto_set_device) and transfer_queue.enable before their
    OmegaConf.resolve: the result must not depend on whether the driver resolved first."""
    from verl.utils.device import auto_set_device

    env = {"R1R_DATA_DIR": "/d", "R1R_POLICY_PATH": "/p", "R1R_REFEREE_URL": "http://r:1/v1", "R1R_POLICY_DATA": "/q",
           "R1R_JUDGE_PATH": "/j", "R1R_JUDGE_URL": "http://j:1/v1"}  # fmt: skip
    for var, value in env.items():
        monkeypatch.setenv(var, value)

    def as_verl_resolves(cfg):
        auto_set_device(cfg)
        cfg.transfer_queue.enable = True
        OmegaConf.resolve(cfg)
        return OmegaConf.to_container(cfg)

    late, early = compose_config(name, overrides), compose_config(name, overrides)
    assert resolve_for_the_task(early) is None
    assert "oc.env" not in json.dumps(OmegaConf.to_container(early, resolve=False))
    assert as_verl_resolves(early) == as_verl_resolves(late)


# --- checkpoints across nodes (defect 7) ---


def test_a_relative_checkpoint_dir_is_refused_when_the_run_spans_nodes():
    with pytest.raises(ValueError) as err:
        validate_like_main_ppo(compose("r1reward", "trainer.nnodes=2"))
    msg = str(err.value)
    assert "trainer.default_local_dir is relative ('checkpoints/r1reward/r1reward-paper-none-fsdp')" in msg, msg
    assert "trainer.nnodes=2" in msg and "R1R_CKPT_DIR=/shared/" in msg and "\n" not in msg
    with pytest.raises(ValueError, match=r"reward\.reward_model\.nnodes=2"):  # the referee's pool on 2 nodes
        validate_like_main_ppo(compose("r1reward", "reward.reward_model.nnodes=2"))
    validate_like_main_ppo(compose("r1reward", "trainer.nnodes=2", "trainer.default_local_dir=/shared/ckpt"))
    validate_like_main_ppo(compose("r1reward"))  # one node: a relative directory is that node's


def test_the_dry_run_refuses_it_too(monkeypatch):
    from r1reward_verl.dryrun import check

    for var, value in {"R1R_NNODES": "2", "R1R_DATA_DIR": "/data", "R1R_POLICY_PATH": "/policy"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("R1R_CKPT_DIR", raising=False)
    bad = check("r1reward", ["trainer.n_gpus_per_node=2"])
    assert not bad.ok and any("trainer.default_local_dir is relative" in n for n in bad.notes), bad.notes
    monkeypatch.setenv("R1R_CKPT_DIR", "/shared/ckpt")
    assert check("r1reward", ["trainer.n_gpus_per_node=2"]).ok


def test_main_ppo_refuses_a_relative_checkpoint_dir_on_two_nodes_in_one_line(tmp_path):
    env = {k: v for k, v in _driver_env(tmp_path).items() if k != "R1R_CKPT_DIR"}
    out = _main_ppo_guarded(tmp_path, "r1reward", **env)
    assert "R1R-TEST: ray.init reached" not in out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("r1reward:")]
    assert len(lines) == 1 and lines[0].startswith(
        "r1reward: invalid configuration, not starting: trainer.default_local_dir is relative "
        "('checkpoints/from-the-driver/r1reward-paper-none-fsdp') but the run spans nodes (trainer.nnodes=2)"), lines
