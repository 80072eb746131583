"""The transformers evaluation backend: one prefill shared by the n samples, left-padded batches."""

import pytest


def test_shared_prefix_sampling_matches_plain_generate(tiny_model_dir):
    """One prefill for n samples gives the same next-token scores as running each sequence whole."""
    import torch

    from r1reward_verl.eval.backends import TransformersBackend
    from tests.support.media import _png
    from r1reward_verl.eval.loaders import EvalPair
    from r1reward_verl.eval.runner import build_request

    be = TransformersBackend(tiny_model_dir, max_new_tokens=5)
    pair = EvalPair("vl_rewardbench", "a", "k", "general", "a", "What?", "Yes.", "No.", [_png("x")])
    enc = be.encode(build_request(pair, True, greedy=True, n=3))
    with torch.no_grad():
        ref = be.model.generate(**enc, do_sample=False, max_new_tokens=5, output_scores=True, return_dict_in_generate=True)
        shared = be.sample_shared(enc, 3, do_sample=False, output_scores=True, return_dict_in_generate=True)
    length = enc["input_ids"].shape[1]
    assert torch.equal(shared.sequences[:, length:], ref.sequences[:, length:].expand(3, -1))
    for a, b in zip(ref.scores, shared.scores):
        torch.testing.assert_close(b, a.expand_as(b), rtol=1e-4, atol=1e-4)


def test_batched_generation_matches_one_prompt_at_a_time(tiny_model_dir):
    """``batch_size`` > 1 left-pads prompts of different lengths into one batch: the same greedy outputs as one
    prompt at a time, k samples per request, the prompt tokens counted per sequence; a chunk that mixes
    request kinds goes one by one."""
    import torch

    from r1reward_verl.eval.backends import TransformersBackend
    from tests.support.media import _png
    from r1reward_verl.eval.loaders import EvalPair
    from r1reward_verl.eval.runner import build_request

    pairs = [EvalPair("vl_rewardbench", str(i), "k", "general", "a", "What colour? " * (1 + 3 * i), "Red." * (i + 1),
                      "Blue, not red.", [_png(str(i))]) for i in range(5)]  # fmt: skip
    requests = [build_request(p, i % 2 == 0, greedy=True, n=2) for i, p in enumerate(pairs)]
    one = TransformersBackend(tiny_model_dir, max_new_tokens=6, min_new_tokens=6).run(requests, progress=False)
    batched_be = TransformersBackend(tiny_model_dir, max_new_tokens=6, min_new_tokens=6, batch_size=3)
    batched = batched_be.run(requests, progress=False)
    assert len({len(batched_be.encode(r)["input_ids"][0]) for r in requests}) == 5  # padding really happens
    assert [r.greedy for r in batched] == [r.greedy for r in one]
    # the random model writes the same greedy text for every prompt, so compare what it computes: every
    # generated position's scores of the padded batch against the prompt run alone
    with torch.no_grad():
        kw = dict(do_sample=False, max_new_tokens=4, output_scores=True, return_dict_in_generate=True)
        whole = batched_be.model.generate(**batched_be.encode_batch(requests), **kw)
        for j, req in enumerate(requests):
            alone = batched_be.model.generate(**batched_be.encode(req), **kw)
            for a, b in zip(alone.scores, whole.scores):
                torch.testing.assert_close(b[j], a[0], rtol=1e-4, atol=1e-4)
    assert all(len(r.samples) == 2 and all(isinstance(x, str) for x in r.samples) for r in batched)
    for req, res in zip(requests, batched):
        assert res.prompt_tokens == 3 * batched_be.encode(req)["input_ids"].shape[1]  # greedy + 2 samples
    mixed = [requests[0], build_request(pairs[1], False, greedy=True, n=0), requests[2]]
    out = batched_be.run(mixed, progress=False)
    assert [r.greedy for r in out] == [one[0].greedy, one[1].greedy, one[2].greedy] and out[1].samples == []
    with pytest.raises(ValueError, match="batch_size"):
        TransformersBackend(tiny_model_dir, batch_size=0)
