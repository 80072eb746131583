"""verl loads our plug-ins through the ``verl.plugins`` entry points, in a fresh interpreter and in Ray workers.

verl swallows plug-in load errors (debug log), so these tests read the registries themselves.
"""

import json
import os
import subprocess
import sys

import pytest

# Runs after `import verl` only: reads the registries from the modules verl's plug-in loading imported.
PROBE = """
import json, sys
import verl
ca = sys.modules.get("verl.trainer.ppo.core_algos")
tb = sys.modules.get("verl.trainer.ppo.v1.trainer_base")
rm = sys.modules.get("verl.experimental.reward_loop.reward_manager.registry")
print(json.dumps({
    "loss": bool(ca) and "stable_reinforce" in ca.POLICY_LOSS_REGISTRY,
    "adv": bool(ca) and "stable_reinforce" in ca.ADV_ESTIMATOR_REGISTRY,
    "trainers": sorted(k for k in (tb.TRAINER_REGISTRY if tb else {}) if k.startswith("r1reward")),
    "reward_managers": sorted(k for k in (rm.REWARD_MANAGER if rm else {}) if k.startswith("pairwise")),
}))
"""


def _probe(env_extra):
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fresh_interpreter_import_verl_registers_everything():
    got = _probe({"VERL_USE_EXTERNAL_PLUGINS": "auto"})
    assert got == {
        "loss": True,
        "adv": True,
        "trainers": ["r1reward_colocate_async", "r1reward_separate_async", "r1reward_sync"],
        "reward_managers": ["pairwise_group"],
    }


def test_registration_comes_from_the_entry_points():
    got = _probe({"VERL_USE_EXTERNAL_PLUGINS": "none"})
    assert got["loss"] is False and got["adv"] is False and got["trainers"] == [] and got["reward_managers"] == []
    got = _probe({"VERL_USE_EXTERNAL_PLUGINS": "r1reward_algos"})
    assert got["loss"] is True and got["adv"] is True and got["trainers"] == [] and got["reward_managers"] == []
    got = _probe({"VERL_USE_EXTERNAL_PLUGINS": "r1reward_genrm"})
    assert got["reward_managers"] == ["pairwise_group"] and got["trainers"] == []


@pytest.mark.timeout(600)
def test_registries_inside_a_ray_worker():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=False)
    try:

        @ray.remote(num_cpus=1)
        class Probe:
            def registries(self):
                import sys

                import verl  # noqa: F401  (the worker's own import: plug-ins load here)

                ca = sys.modules["verl.trainer.ppo.core_algos"]
                tb = sys.modules["verl.trainer.ppo.v1.trainer_base"]
                rm = sys.modules["verl.experimental.reward_loop.reward_manager.registry"]
                return {
                    "pid": os.getpid(),
                    "loss": "stable_reinforce" in ca.POLICY_LOSS_REGISTRY,
                    "adv": "stable_reinforce" in ca.ADV_ESTIMATOR_REGISTRY,
                    "trainer": "r1reward_sync" in tb.TRAINER_REGISTRY,
                    "reward_manager": "pairwise_group" in rm.REWARD_MANAGER,
                }

        actor = Probe.remote()
        got = ray.get(actor.registries.remote(), timeout=300)
        ray.kill(actor)
    finally:
        ray.shutdown()
    assert got["pid"] != os.getpid()
    assert got["loss"] and got["adv"] and got["trainer"] and got["reward_manager"]
