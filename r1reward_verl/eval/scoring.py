"""Teacher-forced log-probabilities of given completions under a local model (no sampling).

A continuous probe of what a reward model prefers: where greedy accuracy moves in steps of one pair, the
log-probability margin between a right and a wrong completion of the same prompt moves with every update.
"""

from __future__ import annotations

from r1reward_verl.eval.backends import TransformersBackend
from r1reward_verl.eval.runner import Request


def completion_logprobs(backend: TransformersBackend, request: Request, completions: list[str]) -> list[float]:
    """``sum log pi(completion + eos | prompt)`` for each completion, one forward pass for all of them: the
    request's chat prompt with its images (as :meth:`TransformersBackend.encode` builds it for generation),
    each completion appended and right-padded; prompt-length inputs (e.g. token types) are extended as text."""
    torch = backend.torch
    tok = backend.processor.tokenizer
    enc = backend.encode(request)
    length = enc["input_ids"].shape[1]
    ids = [tok(c + tok.eos_token, add_special_tokens=False)["input_ids"] for c in completions]
    width = max(map(len, ids))
    n = len(completions)
    batch = {}
    for k, v in enc.items():
        if k.startswith("pixel_values") or k.endswith("grid_thw"):  # the images, once per row
            batch[k] = v.repeat(n, *([1] * (v.dim() - 1)))
        elif v.dim() == 2 and tuple(v.shape) == (1, length):  # per-token inputs, extended as text (0)
            batch[k] = torch.cat([v.repeat(n, 1), torch.zeros(n, width, dtype=v.dtype, device=v.device)], 1)
        else:
            batch[k] = v
    comp = torch.full((n, width), tok.pad_token_id, dtype=torch.long, device=backend.device)
    mask = torch.zeros(n, width, dtype=torch.long, device=backend.device)
    for i, row in enumerate(ids):
        comp[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    batch["input_ids"] = torch.cat([enc["input_ids"].repeat(n, 1), comp], 1)
    batch["attention_mask"] = torch.cat([enc["attention_mask"].repeat(n, 1), mask], 1)
    with torch.no_grad():
        logits = backend.model(**batch).logits[:, length - 1 : -1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, comp[:, :, None]).squeeze(-1)
    return [float(v) for v in (logp * mask).sum(1)]
