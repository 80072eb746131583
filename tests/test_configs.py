"""Every run of hydra_configs/ composes against verl's real config tree and passes verl's own checks."""

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from r1reward_verl.config import CONFIG_DIR, REPO_ROOT, compose_config, validate_like_main_ppo, validate_like_sft_trainer
from r1reward_verl.dryrun import check, sweep_members

ENV = {"R1R_POLICY_PATH": "/ckpt/sft", "R1R_DATA_DIR": "/data/rl", "R1R_SFT_DIR": "/data/sft"}


@pytest.fixture(autouse=True)
def r1r_env(monkeypatch):
    for k in [k for k in os.environ if k.startswith("R1R_")]:
        monkeypatch.delenv(k)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def get(cfg, key):
    return OmegaConf.select(cfg, key, throw_on_missing=True)


PAPER = {
    "actor_rollout_ref.model.path": "/ckpt/sft",
    "data.train_files": "/data/rl/train.parquet",
    "data.val_files": "/data/rl/val.parquet",
    "algorithm.adv_estimator": "stable_reinforce",
    "algorithm.adv_filter_sigma": 3.0,
    "algorithm.adv_filter_base": "reinforce_plus_plus",
    "actor_rollout_ref.actor.policy_loss.loss_mode": "stable_reinforce",
    "actor_rollout_ref.actor.policy_loss.preclip": True,
    "actor_rollout_ref.actor.policy_loss.preclip_min": 1e-3,
    "actor_rollout_ref.actor.policy_loss.preclip_max": 1e3,
    "actor_rollout_ref.actor.policy_loss.dual_clip": False,
    "actor_rollout_ref.actor.clip_ratio": 0.2,
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "data.train_batch_size": 256,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 128,
    "actor_rollout_ref.rollout.n": 1,
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.name": "vllm",
    "trainer.total_epochs": 5,
    "algorithm.use_kl_in_reward": False,
    "algorithm.kl_ctrl.kl_coef": 0.0,
    "actor_rollout_ref.actor.use_kl_loss": False,
    "reward.custom_reward_function.path": "pkg://reward_fns.r1_reward",
    "reward.custom_reward_function.name": "compute_score",
    "reward.custom_reward_function.reward_kwargs.referee": "hosted",
    "reward.custom_reward_function.reward_kwargs.mismatch_value": 0.0,
    "reward.custom_reward_function.reward_kwargs.w_consistency": 0.5,
    "reward.custom_reward_function.reward_kwargs.w_format": 0.5,
    "reward.reward_model.enable": True,
    "reward.reward_model.enable_resource_pool": True,
    "reward.reward_model.model_path": "Qwen/Qwen2.5-VL-7B-Instruct",
    "reward.reward_model.n_gpus_per_node": 1,
    "reward.reward_model.rollout.name": "vllm",
    "trainer.logger": ["console", "tensorboard"],
    "trainer.n_gpus_per_node": 4,
    "trainer.nnodes": 1,
    "trainer.v1.trainer_mode": "r1reward_sync",
    "trainer.experiment_name": "r1reward-paper-none-fsdp",
    "actor_rollout_ref.actor.strategy": "fsdp2",
}

DROP = object()  # a PAPER key that does not apply to the variant (the referee's pool when there is none)

# what each selectable option changes against PAPER (everything else must stay as in PAPER)
VARIANTS = {
    ("r1reward", "preset=authors_script"): {
        "actor_rollout_ref.actor.optim.lr": 3e-7,
        "algorithm.use_kl_in_reward": True,
        "algorithm.kl_ctrl.kl_coef": 1e-3,
        "algorithm.kl_ctrl.type": "fixed",
        "algorithm.kl_penalty": "kl",
        "actor_rollout_ref.actor.loss_agg_mode": "seq-mean-token-mean",
        "data.max_prompt_length": 20480,
        "data.max_response_length": 1024,
        "reward.custom_reward_function.reward_kwargs.mismatch_value": -1.0,
        "trainer.experiment_name": "r1reward-authors_script-none-fsdp",
        # train.sh's num_episodes 1, OpenRLHF's optimizer defaults, a token budget for 20480 + 1024
        "trainer.total_epochs": 1,
        "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": 0.03,
        "actor_rollout_ref.actor.optim.lr_scheduler_type": "cosine",
        "actor_rollout_ref.actor.optim.min_lr_ratio": 0.1,
        "actor_rollout_ref.actor.optim.betas": [0.9, 0.95],
        "actor_rollout_ref.actor.optim.weight_decay": 0.0,
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": 24576,
    },
    ("r1reward", "ablation=no_adv_filter"): {
        "algorithm.adv_filter_sigma": None,
        "trainer.experiment_name": "r1reward-paper-no_adv_filter-fsdp",
    },
    ("r1reward", "ablation=no_preclip"): {
        "actor_rollout_ref.actor.policy_loss.preclip": False,
        "trainer.experiment_name": "r1reward-paper-no_preclip-fsdp",
    },
    # the paper's Reinforce++ baseline: our estimator and loss with the filter, pre-clip and dual clip off
    ("r1reward", "ablation=reinforce_pp"): {
        "algorithm.adv_filter_sigma": None,
        "actor_rollout_ref.actor.policy_loss.preclip": False,
        "trainer.experiment_name": "r1reward-paper-reinforce_pp-fsdp",
    },
    ("r1reward", "ablation=no_consistency"): {
        "reward.custom_reward_function.reward_kwargs.referee": "off",
        "reward.reward_model.enable": False,
        "reward.reward_model.enable_resource_pool": False,
        "trainer.experiment_name": "r1reward-paper-no_consistency-fsdp",
    },
    ("r1reward", "referee=endpoint", "reward.custom_reward_function.reward_kwargs.referee_base_url=http://h:8000/v1"): {
        "reward.custom_reward_function.reward_kwargs.referee": "endpoint",
        "reward.custom_reward_function.reward_kwargs.referee_base_url": "http://h:8000/v1",
        "reward.custom_reward_function.reward_kwargs.referee_model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "reward.custom_reward_function.reward_kwargs.referee_api_key_env": None,
        "reward.reward_model.enable": False,
        "reward.reward_model.enable_resource_pool": False,
        **{k: DROP for k in ("reward.reward_model.model_path", "reward.reward_model.n_gpus_per_node", "reward.reward_model.rollout.name")},
    },
    ("r1reward", "referee=off"): {
        "reward.custom_reward_function.reward_kwargs.referee": "off",
        "reward.reward_model.enable": False,
        "reward.reward_model.enable_resource_pool": False,
        **{k: DROP for k in ("reward.reward_model.model_path", "reward.reward_model.n_gpus_per_node", "reward.reward_model.rollout.name")},
    },
    ("r1reward_megatron",): {
        "actor_rollout_ref.actor.strategy": "megatron",
        "actor_rollout_ref.actor.megatron.tensor_model_parallel_size": 2,
        "actor_rollout_ref.actor.megatron.use_mbridge": True,
        "trainer.experiment_name": "r1reward-paper-none-megatron",
    },
}


@pytest.mark.parametrize("variant", [("r1reward",), *VARIANTS], ids=lambda v: " ".join(v))
def test_every_run_composes_validates_and_has_the_papers_values(variant):
    name, *overrides = variant
    cfg = compose_config(name, overrides)
    validate_like_main_ppo(cfg)
    expected = {k: v for k, v in {**PAPER, **VARIANTS.get(variant, {})}.items() if v is not DROP}
    got = {k: get(cfg, k) for k in expected}
    assert got == expected
    OmegaConf.to_container(cfg, resolve=True)  # nothing left unresolved
    # the same dataclasses verl's workers build
    from verl.utils.config import omega_conf_to_dataclass

    from r1reward_verl.algos import StableReinforceAlgoConfig, StableReinforcePolicyLossConfig

    assert isinstance(omega_conf_to_dataclass(cfg.algorithm), StableReinforceAlgoConfig)
    assert isinstance(omega_conf_to_dataclass(cfg.actor_rollout_ref.actor).policy_loss, StableReinforcePolicyLossConfig)


def test_presets_and_ablations_combine():
    for preset, ablation in itertools.product(["paper", "authors_script"], ["none", "no_preclip", "reinforce_pp"]):
        cfg = compose_config("r1reward", [f"preset={preset}", f"ablation={ablation}"])
        validate_like_main_ppo(cfg)
        assert cfg.trainer.experiment_name == f"r1reward-{preset}-{ablation}-fsdp"
    cfg = compose_config("r1reward", ["preset=authors_script", "ablation=no_preclip"])
    assert cfg.actor_rollout_ref.actor.optim.lr == 3e-7 and cfg.actor_rollout_ref.actor.policy_loss.preclip is False


def test_ablation_sweep_has_the_four_members_and_each_validates():
    members = sweep_members("r1reward_ablations", [])
    assert members == [[f"ablation={a}"] for a in ("no_adv_filter", "no_preclip", "reinforce_pp", "no_consistency")]
    names = set()
    for ovs in members:
        cfg = compose_config("r1reward_ablations", ovs)
        validate_like_main_ppo(cfg)
        names.add(cfg.trainer.experiment_name)
    assert len(names) == 4  # each member logs and checkpoints under its own name
    # command-line sweeps replace the config's list and multiply with other sweeps
    assert sweep_members("r1reward_ablations", ["ablation=none,no_preclip", "preset=paper,authors_script"]) == [
        ["ablation=none", "preset=paper"], ["ablation=none", "preset=authors_script"],
        ["ablation=no_preclip", "preset=paper"], ["ablation=no_preclip", "preset=authors_script"],
    ]  # fmt: skip


def test_verl_entry_point_composes_the_megatron_run():
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(CONFIG_DIR),
           "--config-name", "r1reward_megatron", "--cfg", "job", "--resolve"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **ENV})
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = yaml.safe_load(out.stdout)
    actor = cfg["actor_rollout_ref"]["actor"]
    assert actor["strategy"] == "megatron" and actor["policy_loss"]["loss_mode"] == "stable_reinforce"
    assert actor["megatron"]["tensor_model_parallel_size"] == 2 and "fsdp_config" not in actor
    assert actor["megatron"]["override_transformer_config"]["recompute_granularity"] == "full"
    assert cfg["trainer"]["experiment_name"] == "r1reward-paper-none-megatron"


@pytest.mark.parametrize(
    "overrides, ok",
    [
        (["trainer.n_gpus_per_node=8"], True),
        (["trainer.n_gpus_per_node=8", "trainer.nnodes=2", "trainer.default_local_dir=/shared/ckpt"], True),
        (["trainer.n_gpus_per_node=3"], False),  # 256 prompts cannot be split over 3 GPUs
        (["trainer.n_gpus_per_node=8", "trainer.nnodes=3", "trainer.default_local_dir=/shared/ckpt"], False),  # nor over 24
    ],
)
def test_gpu_counts_go_through_verls_validation(overrides, ok):
    cfg = compose_config("r1reward", overrides)
    if ok:
        validate_like_main_ppo(cfg)
    else:
        with pytest.raises((AssertionError, ValueError)):
            validate_like_main_ppo(cfg)


def test_sizes_and_paths_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("R1R_GPUS_PER_NODE", "8")
    monkeypatch.setenv("R1R_NNODES", "2")
    monkeypatch.setenv("R1R_REFEREE_GPUS", "2")
    monkeypatch.setenv("R1R_CKPT_DIR", "/ckpt")
    cfg = compose_config("r1reward")
    validate_like_main_ppo(cfg)
    assert (cfg.trainer.n_gpus_per_node, cfg.trainer.nnodes, cfg.reward.reward_model.n_gpus_per_node) == (8, 2, 2)
    assert cfg.trainer.default_local_dir == "/ckpt/r1reward/r1reward-paper-none-fsdp"
    # an override replaces the environment lookup; a missing variable is a clear error
    monkeypatch.delenv("R1R_POLICY_PATH")
    assert compose_config("r1reward", ["actor_rollout_ref.model.path=/m"]).actor_rollout_ref.model.path == "/m"
    res = check("r1reward", [])
    assert not res.ok and "R1R_POLICY_PATH" in res.notes[0]
    # no home directories or machine paths hard-coded in any config (comments may show examples)
    for f in CONFIG_DIR.rglob("*.yaml"):
        values = "\n".join(line.split("#")[0] for line in f.read_text().splitlines())
        assert not re.search(r"(~/|/home/|/root/|/data/|/mnt/|/ckpt)", values), f


def test_sft_config_through_verls_sft_trainer_and_dataset(tiny_model_dir, tmp_path):
    from r1reward_verl.data.pairs import convert
    from verl.trainer.sft_trainer import create_sft_dataset

    convert([str(REPO_ROOT / "r1reward_verl/data/sample_data/pairs.jsonl")], tmp_path / "rl", sft_out=tmp_path / "sft",
            val_fraction=0.1, progress=False)  # fmt: skip
    cfg = compose_config("r1reward_sft", [f"model.path={tiny_model_dir}", f"data.train_files={tmp_path}/sft/train.parquet",
                                          f"data.val_files={tmp_path}/sft/val.parquet"])  # fmt: skip
    assert (cfg.optim.lr, cfg.data.train_batch_size, cfg.trainer.total_epochs) == (1e-5, 256, 1)
    assert cfg.engine.strategy == "fsdp2" and cfg.data.messages_key == "messages" and cfg.data.image_key == "images"
    assert "hf_model" in cfg.checkpoint.save_contents  # the RL run starts from global_step_N/huggingface
    assert validate_like_sft_trainer(cfg) == []  # verl's SFTTrainer._build_config, model part included
    from verl.utils import hf_processor, hf_tokenizer

    ds = create_sft_dataset(cfg.data.train_files, cfg.data, hf_tokenizer(tiny_model_dir), hf_processor(tiny_model_dir))
    item = ds[0]
    assert "pixel_values" in item["multi_modal_inputs"] and item["loss_mask"].sum() > 0


def test_sft_command_splits_the_batch_over_one_process_per_core():
    from r1reward_verl.cpu.sft import sft_command, sft_procs

    assert (sft_procs(16, cores=2), sft_procs(16, cores=1), sft_procs(5, cores=2), sft_procs(16, cores=64)) == (2, 1, 1, 2)
    cmd = sft_command(Path("m"), Path("d"), Path("c"), epochs=1, lr=1e-3, batch=16, nproc=2)
    assert cmd[cmd.index("--nproc_per_node") + 1] == "2"
    assert {"data.train_batch_size=16", "data.micro_batch_size_per_gpu=8", "trainer.n_gpus_per_node=2"} <= set(cmd)
    with pytest.raises(ValueError, match="batch .15. must be a multiple of the processes .2."):
        sft_command(Path("m"), Path("d"), Path("c"), epochs=1, lr=1e-3, batch=15, nproc=2)


def test_cpu_runs_compute_in_fp32_not_verls_bf16_autocast(tiny_model_dir, tmp_path):
    """verl's FSDP engine autocasts to ``mixed_precision.param_dtype`` (bf16 when unset); on an AVX2 CPU bf16 is
    emulated, 4-5x slower (RESULTS.md). The CPU SFT command and the CPU RL configs set fp32, as verl reads it."""
    import torch
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.torch_dtypes import PrecisionType

    from r1reward_verl.data.pairs import convert
    from r1reward_verl.cpu.sft import sft_command

    convert([str(REPO_ROOT / "r1reward_verl/data/sample_data/pairs.jsonl")], tmp_path / "rl", sft_out=tmp_path / "sft",
            val_fraction=0.1, progress=False)  # fmt: skip
    cmd = sft_command(Path(tiny_model_dir), tmp_path / "sft", tmp_path / "ckpt", epochs=1, lr=1e-3, batch=4, nproc=1)
    cfg = compose_config("r1reward_sft", cmd[cmd.index("r1reward_sft") + 1 :])
    assert validate_like_sft_trainer(cfg) == []  # verl's SFTTrainer._build_config, model part included
    assert PrecisionType.to_dtype(omega_conf_to_dataclass(cfg.engine).mixed_precision["param_dtype"]) == torch.float32
    for name in ("r1reward_cpu", "genrm_policy_cpu"):
        cfg = compose_config(name, [])
        for role in ("actor", "ref"):
            engine = omega_conf_to_dataclass(cfg.actor_rollout_ref[role].fsdp_config)
            assert PrecisionType.to_dtype(engine.mixed_precision["param_dtype"]) == torch.float32, (name, role)


def test_demo_plan_refuses_what_its_trainers_cannot_run():
    from r1reward_verl.demo import Plan

    assert (Plan().sft_schedule, Plan().sft_procs, Plan(sft_schedule="constant", sft_procs=1).rl_updates) == ("cosine", 2, 80)
    with pytest.raises(ValueError, match="sft_schedule must be constant or cosine; got 'linear'"):
        Plan(sft_schedule="linear")
    with pytest.raises(ValueError, match=r"rl_prompts \(10\) must be a multiple of rl_mini_batch \(4\)"):
        Plan(rl_prompts=10)
    with pytest.raises(ValueError, match=r"sft_procs \(3\) must divide sft_batch \(16\)"):
        Plan(sft_procs=3)


EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.sh"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_scripts_parse_and_name_only_existing_things(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    import importlib.util

    for mod in re.findall(r"-m ([a-zA-Z_][\w.]+)", text):
        assert importlib.util.find_spec(mod) is not None, f"{script.name}: no module {mod}"
    for name in re.findall(r"(?:^|\s)(?:ppo|sft) \"?((?:r1reward|genrm)[\w]*)", text, re.M):
        assert (CONFIG_DIR / f"{name}.yaml").exists(), f"{script.name}: no config {name}"
    for path in re.findall(r"examples/[\w]+\.sh", text):
        assert (REPO_ROOT / path).exists(), f"{script.name}: no {path}"


def run_example(*args, env=None, timeout=600):
    env = {**os.environ, "PYTHON": sys.executable, "DRY_RUN": "1", **(env or {})}
    return subprocess.run(["bash", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=env)


def test_example_scripts_dry_run_what_they_would_launch(monkeypatch):
    for k in ENV:
        monkeypatch.delenv(k)  # the scripts' dry run must stand on its own
    out = run_example("examples/run_rl.sh", "preset=authors_script")
    assert out.returncode == 0 and "r1reward preset=authors_script: ppo OK" in out.stdout, out.stdout + out.stderr
    assert "actor_rollout_ref.actor.optim.lr = 3e-07" in out.stdout
    out = run_example("examples/run_rl.sh", env={"BACKEND": "megatron"})
    assert "r1reward-paper-none-megatron" in out.stdout, out.stdout + out.stderr
    out = run_example("examples/run_ablations.sh")
    assert out.returncode == 0 and out.stdout.count("ppo OK") == 4, out.stdout + out.stderr
    out = run_example("examples/run_sft.sh")
    assert out.returncode == 0 and "r1reward_sft: sft OK" in out.stdout and "optim.lr = 1e-05" in out.stdout
    out = run_example("examples/dry_run.sh", "--config-name", "r1reward", "trainer.n_gpus_per_node=3")
    assert out.returncode == 1 and "FAILED" in out.stdout  # verl's validation rejects it
    out = run_example("examples/run_policy_with_genrm.sh", "genrm=knockout", "judge=endpoint")
    assert out.returncode == 0 and "genrm_policy genrm=knockout judge=endpoint: ppo OK" in out.stdout, out.stdout + out.stderr


def test_submit_to_a_real_ray_cluster_through_its_dashboard(tmp_path):
    """examples/submit_cluster.sh -> `ray job submit` -> the job runs the RL example (dry run) on the cluster."""
    import secrets
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Ray >= 2.59 requires a token for the job API; the head and the client share it
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    for k in ENV:
        env.pop(k, None)
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests/ray_head.py"), str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        import time

        for _ in range(120):
            if "ready" in (tmp_path / "head.log").read_text() or head.poll() is not None:
                break
            time.sleep(1)
        assert "ready" in (tmp_path / "head.log").read_text(), (tmp_path / "head.log").read_text()[-2000:]
        ray_cli = str(Path(sys.executable).parent / "ray")
        # The head says "ready" once ray.init returns; its dashboard agent registers with the job API a little
        # later, and on a loaded machine a submission before that is refused ("No available agent to submit
        # job, please try again later"): retry that refusal only, as its message asks.
        for _ in range(6):
            out = run_example("examples/submit_cluster.sh", "rl", "preset=authors_script",
                              env={**env, "RAY": ray_cli, "RAY_ADDRESS": f"http://127.0.0.1:{port}",
                                   "R1R_PROJECT": "from-the-submitter"})  # fmt: skip
            if "No available agent to submit job" not in out.stdout + out.stderr:
                break
            time.sleep(10)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "succeeded" in out.stdout + out.stderr
        # the job ran on the cluster, with the R1R_* variables of the submitting shell
        assert "r1reward preset=authors_script: ppo OK" in out.stdout
        assert "trainer.project_name = from-the-submitter" in out.stdout
    finally:
        head.terminate()
        head.wait(timeout=60)
        log.close()


def _hosted_referee_runs():
    """(config name, overrides) of every run whose referee verl hosts: each preset, the Megatron run, the sweep."""
    presets = sorted(p.stem for p in (CONFIG_DIR / "preset").glob("*.yaml"))
    assert {"paper", "authors_script"} <= set(presets)
    runs = [("r1reward", [f"preset={p}", "referee=hosted"]) for p in presets]
    runs += [("r1reward_megatron", []), ("r1reward", ["preset=authors_script", "ablation=no_preclip"])]
    runs += [("r1reward_ablations", ovs) for ovs in sweep_members("r1reward_ablations", [])]
    return runs


def test_hosted_referee_is_never_put_to_sleep():
    """verl's RewardModelManager.__init__ puts the referee's vLLM servers to sleep when
    reward.reward_model.rollout.free_cache_engine is true; only RewardLoopManager.compute_rm_score (the
    colocated reward path) wakes them, and the standalone pool never calls it: a sleeping referee would
    time out on every request. Run verl's own __init__ on each composed run and check it does not sleep."""
    from verl.experimental.reward_loop.reward_model import RewardModelManager
    from verl.workers.rollout.replica import get_rollout_replica_class

    class NoServers(RewardModelManager):
        """verl's __init__ as is; only the servers and the router are not started."""

        def _initialize_llm_servers(self):
            self.rollout_replicas = []

        def _initialize_router(self):
            self.router_address = None

        def sleep(self):
            self.slept = True

    hosted = 0
    for name, overrides in _hosted_referee_runs():
        cfg = compose_config(name, overrides)
        validate_like_main_ppo(cfg)
        if not cfg.reward.reward_model.enable:  # no_consistency: no referee, no RewardModelManager
            assert cfg.reward.custom_reward_function.reward_kwargs.referee == "off", (name, overrides)
            continue
        hosted += 1
        assert cfg.reward.reward_model.enable_resource_pool is True
        # RewardLoopManager passes config.reward.reward_model as is
        manager = NoServers(cfg.reward.reward_model, None)
        assert not getattr(manager, "slept", False), (name, overrides)
        # the server side: the replica's RolloutConfig, built as verl's RolloutReplica.__init__ builds it
        replica = get_rollout_replica_class(cfg.reward.reward_model.rollout.name)(
            replica_rank=0, config=cfg.reward.reward_model.rollout, model_config=None,
            gpus_per_node=cfg.reward.reward_model.n_gpus_per_node, is_reward_model=True,
        )  # fmt: skip
        assert replica.config.free_cache_engine is False and replica.config.enable_sleep_mode is False
    assert hosted == len(_hosted_referee_runs()) - 1


def test_megatron_recomputes_activations_through_transformer_config():
    """enable_gradient_checkpointing is read by verl's FSDP engine only; Megatron's activation recompute is
    set in override_transformer_config, which verl's Megatron engine (_build_tf_config) forwards to
    Megatron-Core's TransformerConfig (through Megatron-Bridge's provider or mbridge's set_extra_args)."""
    from verl.utils.config import omega_conf_to_dataclass

    cfg = compose_config("r1reward_megatron")
    validate_like_main_ppo(cfg)
    want = {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
    # the engine config verl's actor worker builds (McoreActorConfig.engine = its megatron section)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert {k: actor.engine.override_transformer_config.get(k) for k in want} == want
    # the reference policy (forward only) takes the actor's through verl's oc.select default
    ref_otc = OmegaConf.to_container(cfg.actor_rollout_ref.ref.megatron.override_transformer_config, resolve=True)
    assert {k: ref_otc.get(k) for k in want} == want
    # FSDP runs are untouched
    fsdp = OmegaConf.to_container(compose_config("r1reward").actor_rollout_ref.actor, resolve=True)
    assert "megatron" not in fsdp or fsdp["megatron"] is None


def test_bt_config_through_verls_sft_trainer_call_sites(tiny_model_dir, tmp_path):
    """``r1reward_bt``: the GPU config as verl's SFT trainer reads it (its dataclasses, its ``create_sft_dataset`` with
    our ``data.custom_cls``), sized for 8 GPUs: the pairs of a step divide over the ranks and a pair (two rows)
    fits a dynamic micro-batch."""
    from verl.trainer.sft_trainer import create_sft_dataset
    from verl.utils import hf_processor, hf_tokenizer

    from r1reward_verl.bt.dataset import BTPairDataset, PairCollator
    from r1reward_verl.cpu.bt import bt_command
    from r1reward_verl.data.pairs import convert

    convert([str(REPO_ROOT / "r1reward_verl/data/sample_data/pairs.jsonl")], tmp_path / "rl", bt_out=tmp_path / "bt",
            val_fraction=0.1, progress=False)  # fmt: skip
    cfg = compose_config("r1reward_bt", [f"model.path={tiny_model_dir}", f"data.train_files={tmp_path}/bt/train.parquet",
                                         f"data.val_files={tmp_path}/bt/val.parquet"])  # fmt: skip
    assert validate_like_sft_trainer(cfg) == []
    assert cfg.trainer.n_gpus_per_node == 8 and cfg.data.train_batch_size % (8 * cfg.trainer.nnodes) == 0
    assert cfg.data.max_token_len_per_gpu >= 2 * cfg.data.max_length and cfg.data.use_dynamic_bsz
    assert "hf_model" in cfg.checkpoint.save_contents and cfg.model.override_config.bt_head_hidden == 1024
    ds = create_sft_dataset(cfg.data.train_files, cfg.data, hf_tokenizer(tiny_model_dir), hf_processor(tiny_model_dir))
    assert isinstance(ds, BTPairDataset)
    batch = PairCollator(cfg.data.pad_mode)([ds[0], ds[1]])
    roles = batch["pair_role"].values().tolist()
    assert roles == [0, 1, 0, 1]
    assert batch["loss_mask"].values().sum() == 4  # one token a row: the loss counts pairs
    assert "pixel_values" in ds[0]["chosen"]["multi_modal_inputs"] and "pixel_values" in ds[0]["rejected"]["multi_modal_inputs"]
    # the CPU command composes into the same trainer config
    cmd = bt_command(Path(tiny_model_dir), tmp_path / "bt", tmp_path / "ckpt", steps=3, lr=1e-3, batch=4, nproc=2)
    cpu = compose_config("r1reward_bt", cmd[cmd.index("r1reward_bt") + 1 :])
    assert validate_like_sft_trainer(cpu) == [] and cpu.trainer.device == "cpu" and cpu.data.micro_batch_size_per_gpu == 2


def test_bt_config_dry_runs(monkeypatch, capsys):
    from r1reward_verl.dryrun import main as dryrun

    monkeypatch.setenv("R1R_BT_DIR", "/data/bt")
    assert dryrun(["--config-name", "r1reward_bt"]) == 0
    out = capsys.readouterr().out
    assert "r1reward_bt: sft OK" in out and "custom_cls" in out and "BTPairDataset" in out
