"""verl's trainer on two Ray nodes of this machine: the paper configuration (``r1reward_cpu.yaml``) submitted as a
Ray job with the README's command (``examples/submit_cluster.sh rl_cpu``), its policy spread over both nodes.

The cluster (tests/support/ray_cluster.py): a head and one worker node on this machine, one ``GPU`` slot each (the ``cpu``
platform's worker slot), each with its own temp dir and ports; the nodes' environment has no ``R1R_*``
variable (the submitting shell's are forwarded to the job). ``trainer.nnodes=2 trainer.n_gpus_per_node=1``: one
actor rank and one vLLM rollout server per node, FSDP over gloo between them. The referee is an OpenAI-compatible
endpoint on 127.0.0.1 (``referee=endpoint``, the rule verdicts of ``tests.support.fake_servers`` served from this
test's process): both slots are the policy's.

Three submissions on one cluster: 2 steps with a checkpoint at step 2, a resume that runs step 3 from it, and a
two-member ablation sweep (``-m``) whose second member finds the slots the first one held.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from r1reward_verl.config import REPO_ROOT
from r1reward_verl.procs import run_in_session
from tests.support.main_ppo import read_metrics
from tests.support.servers import held_referee
from tests.support.ray_cluster import RAY_CLI, RayCluster

pytestmark = pytest.mark.timeout(2400)

SUBMIT_TIMEOUT = 900
EXPERIMENT = "r1reward-paper-none-fsdp"
# what each submission adds to the README's command: two nodes of one slot each, the referee at an endpoint, no
# validation (the one-node test has it)
TWO_NODES = ("trainer.nnodes=2", "trainer.n_gpus_per_node=1", "referee=endpoint", "trainer.test_freq=-1")
# training/rollout_probs_diff_mean (mean |p_vLLM - p_actor| over the response tokens) when the weights are synced:
# 3.3e-6 to 4.4e-6 in 5 runs (fp32 on both sides). Had a server kept the initial weights, the difference would have
# been ~3.3e-3 for its samples after 2 updates (the initial policy against the step-2 checkpoint on the SFT
# responses), ~1.6e-3 on a batch half served by it. The one-node test's 0.05 would pass a server never synced.
SYNCED = 1e-4
STEP_KEYS = ("adv_filter/filtered_frac", "adv_filter/z_max", "actor/preclip_frac", "actor/pg_loss", "reward/format_mean",
             "reward/result_mean", "reward/consistency_mean", "referee/asked", "reward/tail_wait_s",
             "reward/overlap_frac", "timing_s/step", "training/rollout_probs_diff_mean")  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with RayCluster([1, 1], keep_logs=tmp_path_factory.mktemp("ray-logs")) as c:
        yield c


@pytest.fixture(scope="module")
def referee():
    with held_referee(hold=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def run_dir(cpu_dir, tmp_path_factory):
    """R1R_CPU_DIR of this module: the session's cold start (models, data) linked in; logs and checkpoints its own.
    An absolute directory, which every node of this machine sees."""
    out = tmp_path_factory.mktemp("two-nodes")
    for name in ("policy", "tiny-qwen25vl", "rl"):
        (out / name).symlink_to(cpu_dir / name)
    return out


def submit(cluster: RayCluster, referee, run_dir: Path, log_root: Path, *overrides: str) -> tuple[int, str, str]:
    """``examples/submit_cluster.sh rl_cpu TWO_NODES... overrides...`` from the repo root, as a user's shell on the
    cluster would run it; returns (exit code, the client's output: the job's log, the submission id)."""
    env = {**cluster.env, "PYTHON": sys.executable, "RAY": RAY_CLI, "RAY_ADDRESS": cluster.dashboard,
           "R1R_CPU_DIR": str(run_dir), "R1R_REFEREE_URL": f"http://{referee.addr}/v1"}  # fmt: skip
    cmd = ["bash", "examples/submit_cluster.sh", "rl_cpu", *TWO_NODES, *overrides,
           f"hydra.run.dir={log_root}/hydra", f"hydra.sweep.dir={log_root}/hydra_multirun"]  # fmt: skip
    log = log_root / "submit.log"  # Hydra's own output goes under log_root too (the job runs in the repo)
    # the head's dashboard agent registers with the job API a little after the node is up; a submission before
    # that is refused ("No available agent to submit job, please try again later"): retry that refusal only
    for _ in range(12):
        rc = run_in_session(cmd, log, env=env, cwd=REPO_ROOT, timeout=SUBMIT_TIMEOUT)
        text = log.read_text(errors="replace")
        if "No available agent to submit job" not in text:
            break
        time.sleep(5)
    ids = re.findall(r"Job '(raysubmit_\w+)' submitted successfully", text)
    return rc, text, ids[0] if ids else ""


def ray_job_of(cluster: RayCluster, submission_id: str) -> str:
    """The Ray job id of a submission's driver (its first ``ray.init``; the job table shows no other)."""
    (job,) = [j["job_id"] for j in cluster.jobs() if j.get("submission_id") == submission_id and j.get("job_id")]
    return job


def test_paper_config_on_two_nodes_checkpoints_resumes_and_sweeps(cluster, referee, run_dir, tmp_path):
    nodes = {n["node_id"]: n for n in cluster.nodes()}
    assert sorted(n["resources_total"].get("GPU") for n in nodes.values()) == [1, 1], nodes
    logs = run_dir / "logs" / "r1reward_cpu"
    ckpt = run_dir / "checkpoints" / EXPERIMENT

    # 1. two steps, a checkpoint at step 2
    asked_before = referee.stats["requests"]
    rc, log, sid = submit(cluster, referee, run_dir, tmp_path / "run1", "trainer.total_training_steps=2",
                          "trainer.save_freq=2")  # fmt: skip
    assert rc == 0 and f"Job '{sid}' succeeded" in log, log[-6000:]
    actors = cluster.actors(ray_job_of(cluster, sid))
    print("actors of the job:", sorted((a["class_name"], a["name"], a["node_id"][:8]) for a in actors))

    # the policy's ranks: verl names each worker of a group {prefix}{class}_{placement group}:{local rank}
    ranks = [a for a in actors if re.search(r"_\d+:\d+$", a["name"] or "")]
    assert len(ranks) == 2 and {a["node_id"] for a in ranks} == set(nodes), ranks
    # one rollout server per node, each fed by the actor rank beside it
    servers = [a for a in actors if "server" in a["class_name"].lower()]
    assert {a["node_id"] for a in servers} == set(nodes), servers

    # verl's loggers (in the TaskRunner actor, on either node) wrote where the driver's config says, not into the
    # cwd of a node's Ray workers
    assert [p for d in cluster.node_cwds for p in d.iterdir()] == []
    assert list((run_dir / "tensorboard" / EXPERIMENT).glob("events.out.tfevents.*"))
    steps = read_metrics(logs / f"{EXPERIMENT}.jsonl")
    assert sorted(steps) == [1, 2], sorted(steps)
    for n, m in steps.items():
        for key in STEP_KEYS:
            assert key in m, (n, key, sorted(m))
    asked = sum(m["referee/asked"] for m in steps.values())
    assert asked > 0, "the cold-started policy writes answers, so the referee must be asked"
    assert referee.stats["requests"] - asked_before == asked, referee.stats  # every question reached 127.0.0.1
    assert all(m["referee/failed_frac"] == 0 for m in steps.values() if m["referee/asked"]), steps
    assert any(m["reward/format_mean"] > 0 for m in steps.values())
    # the actor's weights reached both vLLM servers (verl's load balancer sends each about half the samples): their
    # token probabilities match the actor's
    assert all(m["training/rollout_probs_diff_mean"] < SYNCED for m in steps.values()), steps

    # the checkpoint: both ranks' shards in the one directory of R1R_CPU_DIR, resolved by the driver
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    actor = ckpt / "global_step_2" / "actor"
    shards = sorted(p.name for p in actor.glob("model_world_size_2_rank_*.pt"))
    assert shards == ["model_world_size_2_rank_0.pt", "model_world_size_2_rank_1.pt"], sorted(actor.iterdir())
    assert (ckpt / "global_step_2" / "data.pt").is_file()

    # 2. a second submission resumes from it: step 3
    rc, log, sid = submit(cluster, referee, run_dir, tmp_path / "run2", "trainer.total_training_steps=3",
                          "trainer.save_freq=-1")  # fmt: skip
    assert rc == 0 and f"Job '{sid}' succeeded" in log, log[-6000:]
    assert "global_step_2" in log  # verl reports what it loaded
    resumed = read_metrics(logs / f"{EXPERIMENT}.jsonl")  # verl's file logger starts the file anew
    assert sorted(resumed) == [3], sorted(resumed)
    assert resumed[3]["training/rollout_probs_diff_mean"] < SYNCED, resumed  # the loaded weights reached vLLM

    # 3. a two-member sweep in one submission: the second member finds both slots free
    members = ["no_preclip", "no_adv_filter"]
    jobs_before = {a["job_id"] for a in cluster.actors()}
    rc, log, sid = submit(cluster, referee, run_dir, tmp_path / "sweep", "-m", f"ablation={','.join(members)}",
                          "trainer.total_training_steps=1", "trainer.save_freq=-1", "trainer.resume_mode=disable")  # fmt: skip
    assert rc == 0 and f"Job '{sid}' succeeded" in log, log[-6000:]
    assert "Total available GPUs" not in log, log[-6000:]  # verl's resource check
    # each member, before its Ray session ends, removed its placement groups and waited (if it had to) until both
    # slots were free again: it never gave up
    print("the release:", [ln for ln in log.splitlines() if ln.startswith("r1reward:")])
    assert "r1reward: warning" not in log, log[-6000:]
    for member in members:
        steps = read_metrics(logs / f"r1reward-paper-{member}-fsdp.jsonl")
        assert sorted(steps) == [1], (member, sorted(steps))
        assert steps[1]["actor/pg_loss"] == steps[1]["actor/pg_loss"], (member, steps)  # ran, not NaN
    # each member is a Ray job of its own (RayPerSweepMember ends the session, run_ppo starts the next): both spread
    # their ranks over both nodes
    sweep = {a["job_id"] for a in cluster.actors()} - jobs_before
    assert len(sweep) == 2, sweep
    for job in sweep:
        ranks = [a for a in cluster.actors(job) if re.search(r"_\d+:\d+$", a["name"] or "")]
        assert len(ranks) == 2 and {a["node_id"] for a in ranks} == set(nodes), (job, ranks)


# --- what the two-node run found, checked without a cluster ---


def test_the_cpu_configs_tell_every_ray_worker_where_to_log(monkeypatch, tmp_path):
    """verl's file and TensorBoard loggers run in the TaskRunner actor. On a ``ray start`` cluster its environment
    is its node's, not the driver's: the variables Hydra's ``env_set`` put in the driver (how the CPU configs said
    where to log) never reached it, and the two-node run wrote ``r1reward_cpu/*.jsonl`` and ``tensorboard_log/``
    into the cwd of a node's Ray workers. They are in Ray's runtime_env now, resolved by the driver: absolute, and
    per member of a sweep (each -m member starts its own Ray session)."""
    from r1reward_verl.config import compose_config, resolve_for_the_task

    monkeypatch.setenv("R1R_CPU_DIR", str(tmp_path))
    for name, overrides, want in [
        ("r1reward_cpu", [], {"VERL_FILE_LOGGER_ROOT": f"{tmp_path}/logs",
                              "TENSORBOARD_DIR": f"{tmp_path}/tensorboard/r1reward-paper-none-fsdp"}),
        ("r1reward_cpu", ["ablation=no_preclip"], {"VERL_FILE_LOGGER_ROOT": f"{tmp_path}/logs",
                                                   "TENSORBOARD_DIR": f"{tmp_path}/tensorboard/r1reward-paper-no_preclip-fsdp"}),
        ("genrm_policy_cpu", [], {"VERL_FILE_LOGGER_ROOT": f"{tmp_path}/logs"}),
    ]:  # fmt: skip
        cfg = compose_config(name, overrides)
        assert resolve_for_the_task(cfg) is None
        assert dict(cfg.ray_kwargs.ray_init.runtime_env.env_vars) == want, (name, overrides)


def test_a_sweep_given_after_the_scripts_own_overrides(tmp_path):
    """``submit_cluster.sh rl_cpu -m ablation=a,b``: the entry puts its overrides (``ray_kwargs.ray_init.num_gpus=null``
    ...) before the user's, and Hydra's command line (argparse) takes no flag after an override: the job failed
    with "main_ppo.py: error: unrecognized arguments". examples/common.sh moves ``-m`` to the front. The dry run
    of the same command line, which also crashed (``sweep_members`` on a config without sweeper params)."""
    import os
    import subprocess

    from r1reward_verl.dryrun import sweep_members

    assert sweep_members("r1reward_cpu", ["ablation=none,no_preclip"]) == [["ablation=none"], ["ablation=no_preclip"]]
    env = {**os.environ, "PYTHON": sys.executable, "DRY_RUN": "1", "BACKEND": "cpu", "R1R_CPU_DIR": str(tmp_path)}
    out = subprocess.run(["bash", "examples/run_rl.sh", "ray_kwargs.ray_init.num_gpus=null",
                          "ray_kwargs.ray_init.num_cpus=null", *TWO_NODES, "-m", "ablation=none,no_preclip"],
                         capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
                         env={**env, "R1R_REFEREE_URL": "http://127.0.0.1:1/v1"})  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for i, member in enumerate(["none", "no_preclip"], 1):
        assert f"# [{i}/2] r1reward_cpu ray_kwargs.ray_init.num_gpus=null ray_kwargs.ray_init.num_cpus=null " \
               f"{' '.join(TWO_NODES)} ablation={member}: ppo OK" in out.stdout, out.stdout[-3000:]  # fmt: skip
