"""verl's reward loop driven the way its trainer drives it: trajectories built like the agent loop's, scored by
verl's own ``RewardLoopWorker`` (a Ray actor in training, a plain object here)."""

import asyncio

import numpy as np
from omegaconf import OmegaConf
import torch
from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

from r1reward_verl.prompt import build_table1_prompt


def agent_loop_item(tokenizer, response: str, ground_truth="1", index=0) -> DataProto:
    """One trajectory as ``AgentLoopWorker._compute_score`` hands it to a reward-loop worker."""
    question = "What colour is the square?"
    prompt_text = build_table1_prompt(question, "It is red.", "It is blue.", num_images=0)
    raw_prompt = [{"role": "user", "content": prompt_text}]
    prompt_ids = tokenizer.apply_chat_template(raw_prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    prompts = torch.tensor(prompt_ids, dtype=torch.int64)
    responses = torch.tensor(tokenizer(response)["input_ids"] + [tokenizer.eos_token_id], dtype=torch.int64)
    input_ids = torch.cat([prompts, responses])
    kwargs = {
        "data_source": "r1reward",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {"question": question, "index": index, "swapped": False},
        "raw_prompt": raw_prompt,
        "index": index,
    }
    batch = TensorDict(
        {
            "prompts": prompts[None],
            "responses": responses[None],
            "attention_mask": torch.ones_like(input_ids)[None],
            "input_ids": input_ids[None],
            "position_ids": torch.arange(len(input_ids))[None],
        },
        batch_size=1,
    )
    non_tensor = {k: np.array([v], dtype=object) if isinstance(v, (dict, list)) else np.array([v]) for k, v in kwargs.items()}
    non_tensor["raw_prompt"] = np.empty(1, dtype=object)
    non_tensor["raw_prompt"][0] = raw_prompt
    non_tensor.update(__num_turns__=np.array([1]), tool_extra_fields=np.array([{}], dtype=object),
                      prompt_len=np.array([len(prompts)]), response_len=np.array([len(responses)]))  # fmt: skip
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def run_worker(config, router_address, items):
    """Score ``items`` with verl's ``RewardLoopWorker`` built from ``config``, as the trainer's reward loop does."""
    async def go():
        worker = RewardLoopWorker(config, router_address)  # verl's class; a Ray actor in training
        return await asyncio.gather(*[worker.compute_score(item) for item in items])

    return asyncio.run(go())


def policy_items(tiny_model_dir, tmp_path, answers):
    """Agent-loop items for the n answers of the first policy_qa prompt, built from verl's RLHFDataset row."""
    import torch
    from tensordict import TensorDict
    from verl import DataProto
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from r1reward_verl.demo.policy_qa import write

    write(tmp_path / "pqa", n_train=4, n_val=1, seed=0)
    tok, proc = hf_tokenizer(tiny_model_dir), hf_processor(tiny_model_dir)
    cfg = OmegaConf.create({"max_prompt_length": 1024, "filter_overlong_prompts_workers": None, "image_key": "images",
                            "cache_dir": str(tmp_path / "cache")})  # fmt: skip
    row = RLHFDataset(str(tmp_path / "pqa" / "train.parquet"), tok, cfg, proc)[0]
    items = []
    for i, text in enumerate(answers):
        prompts = torch.tensor(tok("<prompt>")["input_ids"], dtype=torch.int64)
        responses = torch.tensor(tok(text)["input_ids"] + [tok.eos_token_id], dtype=torch.int64)
        ids = torch.cat([prompts, responses])
        batch = TensorDict({"prompts": prompts[None], "responses": responses[None], "input_ids": ids[None],
                            "attention_mask": torch.ones_like(ids)[None], "position_ids": torch.arange(len(ids))[None]},
                           batch_size=1)  # fmt: skip
        nt = {}
        for k in ("data_source", "reward_model", "extra_info", "raw_prompt", "uid"):
            nt[k] = np.empty(1, dtype=object)
            nt[k][0] = row[k] if k != "uid" else "prompt-0"
        nt["session_id"] = np.array([i])
        items.append(DataProto(batch=batch, non_tensor_batch=nt))
    return row, items
