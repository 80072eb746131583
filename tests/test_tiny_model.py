"""The tiny Qwen2.5-VL: offline, deterministic, loads through HF and verl, generates and scores on CPU."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from verl.utils import hf_processor, hf_tokenizer

from r1reward_verl.tiny import SPECIAL_TOKENS, build_tiny_qwen25vl
from tests.cli_support import one_line, run_main


def test_loads_with_autoprocessor_and_verl(tiny_model_dir):
    assert type(AutoProcessor.from_pretrained(tiny_model_dir)).__name__ == "Qwen2_5_VLProcessor"
    proc = hf_processor(tiny_model_dir)
    assert type(proc).__name__ == "Qwen2_5_VLProcessor"
    assert proc.config.model_type == "qwen2_5_vl"  # verl binds the model config for get_rope_index
    tok = hf_tokenizer(tiny_model_dir)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    for special in SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(special) != tok.unk_token_id
    text = "<think>Response 1 is better.</think><answer>1</answer>"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_generates_and_scores_an_image_prompt(tiny_model_dir):
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 450_000
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which is better?"}]}]
    chat = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in chat and chat.endswith("<|im_start|>assistant\n")
    enc = proc(text=[chat], images=[Image.new("RGB", (56, 56), (200, 10, 10))], return_tensors="pt")
    n_image_tokens = int((enc["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(enc["image_grid_thw"].prod()) // 4 > 0
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    with torch.no_grad():
        logits = model(input_ids=out, pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"]).logits
    dist = torch.log_softmax(logits[:, :-1], -1)
    logp = dist.gather(-1, out[:, 1:, None]).squeeze(-1)
    start = enc["input_ids"].shape[1] - 1
    gen_logp = logp[:, start:]
    assert gen_logp.shape[1] == out.shape[1] - enc["input_ids"].shape[1]
    # scoring reproduces generation: each greedy token is the argmax of the scored distribution at its position
    # (an off-by-one, a lost image or wrong position ids would break it)
    assert torch.allclose(gen_logp, dist[:, start:].max(-1).values, atol=1e-5), (gen_logp, dist[:, start:].max(-1))
    # and the image is read: another image changes the scores of the same tokens
    other = proc(text=[chat], images=[Image.new("RGB", (56, 56), (10, 10, 200))], return_tensors="pt")
    with torch.no_grad():
        logits2 = model(input_ids=out, pixel_values=other["pixel_values"], image_grid_thw=other["image_grid_thw"]).logits
    assert (logits2[:, start:] - logits[:, start:]).abs().max() > 1e-4


@pytest.mark.parametrize("argv, names", [
    (["--head-dim", "0"], "argument --head-dim: wants an integer >= 1, got 0"),
    (["--head-dim", "24"], "--head-dim must divide the hidden size 64 and be a multiple of 8, got 24"),
    (["--layers", "-1"], "argument --layers: wants an integer >= 1, got -1"),
    (["--init-std", "0"], "argument --init-std: wants a number > 0, got 0.0"),
])
def test_cli_bad_sizes_are_one_line_exit_2(tmp_path, capsys, argv, names):
    from r1reward_verl.tiny import main

    code, _, err = run_main(main, capsys, "--out", tmp_path / "m", *argv)
    assert code == 2 and names in one_line(err), err
    assert not (tmp_path / "m").exists()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        h.update((path / name).read_bytes())
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def test_build_is_deterministic(tmp_path, tiny_model_dir):
    again = build_tiny_qwen25vl(tmp_path / "again")
    assert _digest(again) == _digest(Path(tiny_model_dir))
    assert json.loads((again / "r1reward_tiny.json").read_text())["seed"] == 0
    other = build_tiny_qwen25vl(tmp_path / "other", seed=1)
    assert _digest(other) != _digest(again)


def test_task_corpus_and_layers(tmp_path, tiny_model_dir):
    """``corpus="synth"``: the colour task's words become single tokens; ``layers`` sets the text depth;
    ``init_std`` the spread of the random weights, text and vision (HF's default 0.02)."""
    import json

    from transformers import AutoConfig, AutoTokenizer

    from r1reward_verl.demo.synth import PALETTE, SHAPES, reasoning_text

    path = build_tiny_qwen25vl(tmp_path / "m", seed=1, head_dim=32, corpus="synth", layers=3, init_std=0.06)
    tok = AutoTokenizer.from_pretrained(path)
    assert all(len(tok.encode(" " + w, add_special_tokens=False)) == 1 for w in (*PALETTE, *SHAPES))
    text = reasoning_text("orange", "circle", "red", "orange")
    assert len(tok.encode(text, add_special_tokens=False)) <= 40
    cfg = AutoConfig.from_pretrained(path)
    assert cfg.text_config.num_hidden_layers == 3 and cfg.text_config.hidden_size // cfg.text_config.num_attention_heads == 32
    meta = json.loads((path / "r1reward_tiny.json").read_text())
    assert meta["corpus"] == "synth" and meta["layers"] == 3 and meta["init_std"] == 0.06
    from safetensors.torch import load_file

    weights = load_file(path / "model.safetensors")
    stds = {k: v.float().std().item() for k, v in weights.items() if k.endswith(("q_proj.weight", "qkv.weight", "embed_tokens.weight"))}
    assert any("visual" in k for k in stds) and any("embed_tokens" in k for k in stds), sorted(stds)
    assert all(0.055 < s < 0.065 for s in stds.values()), stds
    default = load_file(Path(tiny_model_dir) / "model.safetensors")  # built with the default init_std
    assert all(0.017 < default[k].float().std().item() < 0.023 for k in stds if k in default)
    with pytest.raises(ValueError, match="unknown task corpus"):
        build_tiny_qwen25vl(tmp_path / "x", corpus="nope")
