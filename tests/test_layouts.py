"""The paper run at GPU scale, read on CPU: layouts that fit 8-GPU nodes, the dry run refusing the ones that
cannot start (pools, divisibility, memory per GPU), and the memory arithmetic checked against verl's own
published Qwen2.5-VL-7B examples (they run) and against the layouts of issue 24 (they did not)."""

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1reward_verl.cluster.memory import PAPER_BASE, memory_report, model_size
from r1reward_verl.cluster.pools import Cluster, Pool, layout_problems, parse_cluster, placement_problem, pools_of
from r1reward_verl.config import compose_config, validate_like_main_ppo
from r1reward_verl.dryrun import check

ENDPOINT = ("referee=endpoint", "reward.custom_reward_function.reward_kwargs.referee_base_url=http://referee:8000/v1")
VERL_CONFIG = Path(__import__("verl").__file__).parent / "trainer" / "config"


@pytest.fixture(autouse=True)
def r1r_env(monkeypatch):
    for k in [k for k in os.environ if k.startswith("R1R_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("R1R_POLICY_PATH", "/ckpt/sft")
    monkeypatch.setenv("R1R_DATA_DIR", "/data/rl")
    monkeypatch.setenv("R1R_CKPT_DIR", "/shared/ckpt")  # several nodes need one directory they all see


def budget(report, pool, moment):
    (b,) = [b for b in report.budgets if b.pool == pool and b.moment == moment]
    return b


def line(b, item):
    (x,) = [x for x in b.lines if x.item == item]
    return x.gib


@pytest.mark.parametrize(
    "env, overrides, cluster, refused",
    [
        # issue 24 defect 1: R1R_GPUS_PER_NODE=8 + the hosted referee = 9 GPUs on an 8-GPU node
        ({"R1R_GPUS_PER_NODE": "8"}, (), "1x8", "policy 1 node x 8 = 8 + reward model 1 node x 1 = 1 = 9 GPUs; the cluster has 1 node x 8 = 8"),
        # ... and the README's former two-node command: 17 on 16
        ({"R1R_GPUS_PER_NODE": "8", "R1R_NNODES": "2"}, (), "2x8", "= 17 GPUs; the cluster has 2 nodes x 8 = 16"),
        # 7 policy GPUs with the paper's 256 prompts
        ({"R1R_GPUS_PER_NODE": "7"}, (), "1x8", "256 samples do not split over 7"),
        # whole nodes for the policy leave no GPU for the hosted referee
        ({}, ("layout=full8",), "1x8", "= 9 GPUs"),
        # node8 on three nodes: 224 prompts over 21 GPUs
        ({"R1R_NNODES": "3"}, ("layout=node8",), "3x8", "224 samples do not split over 21"),
        # Megatron's TP 2 x PP 2 cannot use 7 GPUs
        ({}, ("layout=node8",), "1x8", "not a multiple of Megatron's TP x PP x CP = 4"),
        # the shipped layouts start
        ({}, (), "1x8", None),  # paper: 4 + 1 of 8
        ({}, ("layout=node8",), "1x8", None),
        ({"R1R_NNODES": "2"}, ("layout=node8",), "2x8", None),
        ({"R1R_NNODES": "4"}, ("layout=node8",), "4x8", None),
        ({}, ("layout=full8", *ENDPOINT), "1x8", None),
        ({"R1R_NNODES": "2"}, ("layout=full8", *ENDPOINT), "2x8", None),
    ],
)
def test_dry_run_refuses_layouts_that_cannot_start_on_8_gpu_nodes(monkeypatch, env, overrides, cluster, refused):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    megatron = "Megatron" in (refused or "")
    res = check("r1reward_megatron" if megatron else "r1reward", list(overrides), cluster=cluster)
    notes = " | ".join(res.notes)
    if refused is None:
        assert res.ok, notes
        assert "rollout wake-up" in res.memory and "OVER" not in res.memory
    else:
        assert not res.ok and refused in notes, notes


def test_the_policy_rewarded_by_a_hosted_judge_fits_an_8_gpu_node(monkeypatch):
    """genrm_policy gave the policy 8 GPUs and verl the judge 1 more: 9 of 8."""
    monkeypatch.setenv("R1R_POLICY_DATA", "/data/qa")
    monkeypatch.setenv("R1R_JUDGE_PATH", "/ckpt/r1reward_hf")
    res = check("genrm_policy", [], cluster="1x8")
    assert res.ok, res.notes
    assert [(p.role, p.per_node) for p in pools_of(res.config)] == [("policy", (4,)), ("reward model", (4,))]
    monkeypatch.setenv("R1R_GPUS_PER_NODE", "8")
    res = check("genrm_policy", [], cluster="1x8")
    assert not res.ok and any("= 12 GPUs; the cluster has 1 node x 8 = 8" in n for n in res.notes), res.notes
    monkeypatch.setenv("R1R_JUDGE_URL", "http://judge:8000/v1")
    assert check("genrm_policy", ["judge=endpoint"], cluster="1x8").ok  # 8 policy GPUs, the judge elsewhere


def test_node8_uses_every_gpu_of_each_node():
    cfg = compose_config("r1reward", ["layout=node8", "trainer.nnodes=2"])
    pools = pools_of(cfg)
    assert [(p.role, p.per_node) for p in pools] == [("policy", (7, 7)), ("reward model", (1, 1))]
    assert sum(p.gpus for p in pools) == 16 and placement_problem(pools, parse_cluster("2x8")) is None
    validate_like_main_ppo(cfg)
    assert (cfg.data.train_batch_size, cfg.actor_rollout_ref.actor.ppo_mini_batch_size) == (224, 112)


def test_placement_is_per_node_not_only_the_total():
    """verl compares totals; a placement group must sit on one node (STRICT_PACK) or Ray waits forever."""
    pools = [Pool("policy", "global_pool", (8,)), Pool("referee", "reward_pool", (1,))]
    assert placement_problem(pools, parse_cluster("1x9")) is None
    why = placement_problem(pools, parse_cluster("2x5"))  # 10 GPUs >= 9, but no node holds 8
    assert why and "group of 8 GPUs must sit on one node" in why and "wait forever" in why
    assert placement_problem([Pool("policy", "global_pool", (4, 4)), Pool("referee", "reward_pool", (1,))],
                             parse_cluster("2x4")) is not None  # fmt: skip
    assert placement_problem([Pool("policy", "global_pool", (4, 4)), Pool("referee", "reward_pool", (1,))],
                             parse_cluster("2x5")) is None  # fmt: skip
    with pytest.raises(ValueError, match="NODESxGPUS"):
        parse_cluster("8")


def test_model_size_counts_the_real_model(tiny_model_dir):
    """The meta-device count equals the loaded model's, and the paper's 7B is 8.29e9 (its vision tower 0.68e9)."""
    from transformers import AutoModelForImageTextToText

    real = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    size = model_size(tiny_model_dir)
    assert size.params == sum(p.numel() for p in real.parameters())
    assert size.vision == sum(p.numel() for n, p in real.named_parameters() if "visual" in n) > 0
    base = model_size(PAPER_BASE)
    assert (base.params, base.vision, base.hidden, base.layers, base.vocab) == (8_292_166_656, 676_550_144, 3584, 28, 152064)
    assert base.max_stage(2) > base.params / 2  # the first stage also holds the embedding and vision tower
    assert model_size("/no/such/checkpoint") is None


def _verl_example(*overrides, megatron=False):
    """verl 0.9.1's own config tree with the settings of examples/grpo_trainer/run_qwen2_5_vl_7b_{fsdp,megatron}.sh."""
    common = [
        "algorithm.adv_estimator=grpo", "data.train_files=/d/train.parquet", "data.val_files=/d/test.parquet",
        "data.train_batch_size=512", "data.max_prompt_length=1024", "data.max_response_length=2048",
        f"actor_rollout_ref.model.path={PAPER_BASE}", "actor_rollout_ref.model.use_remove_padding=True",
        "actor_rollout_ref.actor.ppo_mini_batch_size=128", "actor_rollout_ref.actor.use_dynamic_bsz=True",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576", "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.tensor_model_parallel_size=2",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.6", "actor_rollout_ref.rollout.n=5",
        "trainer.n_gpus_per_node=8", "trainer.nnodes=1",
    ]  # fmt: skip
    if megatron:
        common += ["model_engine=megatron", "actor_rollout_ref.actor.megatron.tensor_model_parallel_size=2",
                   "actor_rollout_ref.actor.megatron.pipeline_model_parallel_size=2",
                   "actor_rollout_ref.ref.megatron.tensor_model_parallel_size=2",
                   "actor_rollout_ref.ref.megatron.pipeline_model_parallel_size=2"]  # fmt: skip
    else:
        common += ["actor_rollout_ref.model.enable_gradient_checkpointing=True", "actor_rollout_ref.actor.strategy=fsdp2",
                   "actor_rollout_ref.ref.fsdp_config.param_offload=True"]  # fmt: skip
    return compose_config("ppo_trainer", [*common, *overrides], config_dir=VERL_CONFIG)


@pytest.mark.parametrize("megatron", [False, True], ids=["fsdp", "megatron"])
def test_memory_arithmetic_lets_verls_published_7b_vl_examples_start(megatron):
    cfg = _verl_example(megatron=megatron)
    validate_like_main_ppo(cfg)
    report = memory_report(cfg, Cluster(1, 8))
    assert report.problems == [], report.table()
    assert layout_problems(cfg) == []


def test_memory_arithmetic_refuses_the_issues_megatron_and_reference_layouts():
    """Defects 2 and 5 of issue 24, with the issue's arithmetic (GiB a GPU)."""
    gpu = Cluster(1, 8)
    # Megatron TP 2, PP 1 on 8 GPUs (the former backend/megatron.yaml): ~35 resident + vLLM's 0.6 share
    before = compose_config("r1reward_megatron", ["layout=full8", *ENDPOINT, "actor_rollout_ref.actor.megatron.pipeline_model_parallel_size=1"])
    wake = budget(memory_report(before, gpu), "policy", "rollout wake-up")
    assert [round(line(wake, k), 1) for k in ("actor params", "actor grad buffer", "actor optimizer")] == [7.7, 15.4, 11.6]
    assert not wake.fits and wake.total > 82
    # what ships: PP 2 on 8 GPUs fits without offload; on the paper's 4 the optimizer goes to the CPU
    after = budget(memory_report(compose_config("r1reward_megatron", ["layout=full8", *ENDPOINT]), gpu), "policy", "rollout wake-up")
    assert after.fits and line(after, "actor optimizer") > 0
    paper = budget(memory_report(compose_config("r1reward_megatron"), gpu), "policy", "rollout wake-up")
    assert paper.fits and line(paper, "actor optimizer") == 0
    without_offload = compose_config("r1reward_megatron", ["r1reward.megatron_optimizer_offload=false"])
    assert memory_report(without_offload, gpu).problems
    # preset=authors_script turns the reference on; fp32 and resident it is 7.7 GiB a GPU too many
    resident_ref = compose_config("r1reward", ["preset=authors_script", "actor_rollout_ref.ref.fsdp_config.param_offload=false"])
    wake = budget(memory_report(resident_ref, gpu), "policy", "rollout wake-up")
    assert round(line(wake, "reference"), 1) == 7.7 and not wake.fits
    shipped = memory_report(compose_config("r1reward", ["preset=authors_script"]), gpu)
    assert shipped.problems == [] and line(budget(shipped, "policy", "rollout wake-up"), "reference") == 0
    # a smaller GPU: the paper layout does not fit 40 GiB cards
    assert memory_report(compose_config("r1reward"), Cluster(1, 8, 39.4)).problems


@pytest.mark.parametrize("name, overrides", [("r1reward", ()), ("r1reward", ("preset=authors_script",)), ("r1reward_megatron", ())])
def test_micro_batches_by_tokens_agree_across_actor_rollout_and_ref(name, overrides):
    """Defect 3: token budgets, the same for the three passes (verl asserts it), holding the longest sequence."""
    cfg = compose_config(name, list(overrides))
    a = cfg.actor_rollout_ref
    assert a.actor.use_dynamic_bsz and a.rollout.log_prob_use_dynamic_bsz and a.ref.log_prob_use_dynamic_bsz
    budgets = {a.actor.ppo_max_token_len_per_gpu, a.rollout.log_prob_max_token_len_per_gpu, a.ref.log_prob_max_token_len_per_gpu}
    assert len(budgets) == 1 and budgets.pop() >= cfg.data.max_prompt_length + cfg.data.max_response_length
    assert layout_problems(cfg) == []
    short = compose_config(name, [*overrides, "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=4096"])
    assert any("cannot hold the longest sequence" in p for p in layout_problems(short))


def test_checkpoints_are_bounded(monkeypatch):
    """Defects 6 and 7: the RL run keeps two checkpoints; the cold start saves every 100 steps and keeps two."""
    for name in ("r1reward", "r1reward_megatron", "r1reward_ablations"):
        trainer = compose_config(name).trainer
        assert trainer.max_actor_ckpt_to_keep == 2 and isinstance(trainer.save_freq, int)
    monkeypatch.setenv("R1R_SFT_DIR", "/data/sft")
    sft = compose_config("r1reward_sft").trainer
    assert (sft.save_freq, sft.max_ckpt_to_keep) == (100, 2)


def test_the_overlong_prompt_filter_runs_in_several_processes_on_gpu_nodes():
    """Defect 10: verl's filter tokenized 17k image rows in one process (tens of minutes); the CPU run keeps one."""
    assert compose_config("r1reward").data.filter_overlong_prompts_workers == 8
    assert compose_config("r1reward_cpu").data.filter_overlong_prompts_workers is None


def test_the_megatron_extra_brings_vllm():
    import tomllib

    from r1reward_verl.config import REPO_ROOT

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "vllm" in extras["megatron"][0]  # verl's own megatron example runs with --extra vllm --extra megatron


def test_preset_authors_script_names_the_optimizer_it_mirrors():
    """Defect 10: OpenRLHF's optimizer defaults and one episode, spelled for either backend's optimizer."""
    from verl.utils.config import omega_conf_to_dataclass

    for name, schedule in (("r1reward", ("lr_scheduler_type", "cosine")), ("r1reward_megatron", ("lr_decay_style", "cosine"))):
        cfg = compose_config(name, ["preset=authors_script"])
        optim = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor.optim)
        assert (optim.lr, optim.lr_warmup_steps_ratio, list(optim.betas), optim.weight_decay) == (3e-7, 0.03, [0.9, 0.95], 0.0)
        assert getattr(optim, schedule[0]) == schedule[1] and cfg.trainer.total_epochs == 1
        paper = omega_conf_to_dataclass(compose_config(name).actor_rollout_ref.actor.optim)
        assert getattr(paper, schedule[0]) == "constant" and list(paper.betas) == [0.9, 0.999]
    assert OmegaConf.select(compose_config("r1reward_megatron", ["preset=authors_script"]), "actor_rollout_ref.actor.optim.min_lr") == 3e-8
