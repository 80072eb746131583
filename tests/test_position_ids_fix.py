"""mrope ``position_ids`` survive verl 0.9.1's worker path when every sequence has the same length.

The bug and the fix: :mod:`r1reward_verl.verl_fixes`. The batches are packed by TransferQueue's own
``AsyncSimpleStorageManager._pack_field_values`` (transfer_queue/storage/managers/simple_storage_manager.py:542-574,
what ``get_data`` returns to a worker) and then go through verl's own code, as a worker runs it:
``maybe_fix_3d_position_ids`` under the names verl's call-site modules imported it
(engine_workers.py:45/252/290, engine/base.py:27/124/145, engine_workers_tinker.py:22/151), ``unbind``,
``make_iterator`` -> ``index_select_tensor_dict`` (train mini-batches), ``prepare_micro_batches`` ->
``chunk_tensordict`` / ``rearrange_micro_batches`` (micro-batches), and the FSDP engine's
``prepare_model_inputs`` (padded and remove-padding model inputs). Each sample is compared to the original.

This file does not import the fix: it is active because ``import verl`` loaded the ``r1reward_fixes`` entry
point. ``VERL_USE_EXTERNAL_PLUGINS=none .venv/bin/python -m pytest tests/test_position_ids_fix.py`` runs the
same checks against verl's unpatched function: the equal-length cases fail there.
"""

import json
import os
import pickle
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import verl  # noqa: F401  (loads the verl.plugins entry points, the fix among them)
from tensordict import TensorDict
from transfer_queue.storage.managers.simple_storage_manager import AsyncSimpleStorageManager
from verl.utils import tensordict_utils as tu
from verl.workers import engine_workers, engine_workers_tinker
from verl.workers.engine import base as engine_base
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead
from verl.workers.engine.utils import prepare_micro_batches

FIX_MODULE = "r1reward_verl.verl_fixes"

# maybe_fix_3d_position_ids as each verl call-site module bound it (`from ... import maybe_fix_3d_position_ids`)
CALL_SITES = {
    "engine_workers": lambda: engine_workers.maybe_fix_3d_position_ids,
    "engine.base": lambda: engine_base.maybe_fix_3d_position_ids,
    "engine_workers_tinker": lambda: engine_workers_tinker.maybe_fix_3d_position_ids,
}

# Per-sample sequence lengths. Equal lengths are what TQ packs ragged along the 4 channels:
# L > 4B crashes in unbind, L == 4B gives wrong shapes silently, L < 4B fails torch's own check.
EQUAL = {"equal_L23_B4": [23] * 4, "equal_L16_B4": [16] * 4, "equal_L5_B4": [5] * 4, "equal_L23_B2": [23] * 2}
CASES = {**EQUAL, "unequal": [23, 17, 30, 9], "unequal_sum_4B": [3, 5]}


def _mrope_ids(lengths):
    """Distinct (4, L_i) ids per sample, so any mix-up of samples, channels or positions shows."""
    channel = torch.arange(4).view(4, 1) * 100
    return [torch.arange(4 * n).view(4, n) + 1000 * (i + 1) + channel for i, n in enumerate(lengths)]


def _worker_batch(lengths, transport):
    """The TensorDict a verl worker gets: TQ-packed fields, optionally shipped through Ray's pickle."""
    pack = AsyncSimpleStorageManager._pack_field_values  # simple_storage_manager.py:542, line 574 packs
    td = TensorDict(
        {
            "position_ids": pack(_mrope_ids(lengths)),
            "input_ids": pack([torch.arange(n) + 7 for n in lengths]),
        },
        batch_size=[len(lengths)],
    )
    if transport == "ray_pickle":  # what verl's protocol.py:1278 chunk does before a Ray call: consolidate, pickle
        td = pickle.loads(pickle.dumps(tu.contiguous(td).consolidate()))
    return td


def _assert_samples(nt, expected, where):
    got = nt.unbind()
    assert len(got) == len(expected), where
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.shape == e.shape and torch.equal(g, e), f"{where}: sample {i} {tuple(g.shape)} != {tuple(e.shape)}"


def _model_inputs(micro, remove_padding):
    """verl's FSDP engine turns a micro-batch into model inputs (transformer_impl.py:1145, 1189-1194 / 1276-1295)."""
    tu.assign_non_tensor(micro, use_remove_padding=remove_padding, temperature=1.0)
    stub = SimpleNamespace(pad_to_length=False, use_ulysses_sp=False, _get_packed_pad_size=lambda n: 0)
    return FSDPEngineWithLMHead.prepare_model_inputs(stub, micro)[0]["position_ids"]


def run_worker_path(fix, lengths, transport):
    """Run a TQ-packed batch through verl's worker code with `fix` as maybe_fix_3d_position_ids; assert every sample."""
    orig = _mrope_ids(lengths)
    batch = len(lengths)
    data = _worker_batch(lengths, transport)

    fix(data)  # engine_workers.py:252 (train_mini_batch) / engine/base.py:145 (infer_batch)
    _assert_samples(data["position_ids"], orig, "unbind after maybe_fix_3d_position_ids")

    # train: make_iterator -> index_select_tensor_dict (unbind at tensordict_utils.py:495), then engine_workers.py:290
    mini_size = max(1, batch // 2)
    for k, mini in enumerate(tu.make_iterator(data, mini_batch_size=mini_size, epochs=1)):
        fix(mini)
        _assert_samples(mini["position_ids"], orig[k * mini_size : (k + 1) * mini_size], f"mini-batch {k}")

    # micro-batches: chunk_tensordict (fixed size; the log-prob path) and rearrange_micro_batches (dynamic)
    for dynamic in (False, True):
        micro_in = _worker_batch(lengths, transport)  # infer_batch / train_batch get a batch like `data`
        tu.assign_non_tensor(micro_in, use_dynamic_bsz=dynamic, micro_batch_size_per_gpu=1, max_token_len_per_gpu=64)
        fix(micro_in)  # engine/base.py:124/145 before forward_backward_batch
        micros, idx_lists = prepare_micro_batches(micro_in)
        idx_lists = idx_lists or [[i] for i in range(batch)]
        assert sorted(i for idx in idx_lists for i in idx) == list(range(batch))
        for micro, idx in zip(micros, idx_lists, strict=True):
            expected = [orig[i] for i in idx]
            where = f"{'dynamic' if dynamic else 'chunk'} micro-batch {list(idx)}"
            _assert_samples(micro["position_ids"], expected, where)
            # padded model inputs: (4, b, max_len); remove-padding inputs: (4, 1, total_nnz)
            max_len = max(e.shape[1] for e in expected)
            padded = torch.stack([F.pad(e, (0, max_len - e.shape[1])) for e in expected]).transpose(0, 1)
            assert torch.equal(_model_inputs(micro, remove_padding=False), padded), where + " padded"
            rmpad = torch.cat(expected, dim=1).unsqueeze(1)
            got = _model_inputs(micro, remove_padding=True)
            assert got.shape == rmpad.shape and torch.equal(got, rmpad), where + " remove-padding"


@pytest.mark.parametrize("transport", ["tq_get", "ray_pickle"])
@pytest.mark.parametrize("lengths", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("call_site", CALL_SITES)
def test_verl_worker_path_keeps_every_sample(call_site, lengths, transport):
    run_worker_path(CALL_SITES[call_site](), lengths, transport)


def test_tq_packs_equal_lengths_ragged_along_channels():
    """The trigger, as TQ produces it (the premise of the fix)."""
    equal = _worker_batch([23] * 3, "tq_get")["position_ids"]
    assert equal._ragged_idx == 1 and equal.offsets().tolist() == [0, 4, 8, 12] and equal.values().shape == (12, 23)
    unequal = _worker_batch([23, 9, 5], "tq_get")["position_ids"]
    assert unequal._ragged_idx == 2 and unequal.offsets().tolist() == [0, 23, 32, 37]


def _verl_original():
    fixes = sys.modules.get(FIX_MODULE)
    return fixes.verl_original if fixes else tu.maybe_fix_3d_position_ids


@pytest.mark.parametrize("lengths", EQUAL.values(), ids=EQUAL.keys())
def test_verl_original_still_broken(lengths):
    """Canary: verl 0.9.1's own function loses equal-length batches. When this fails, verl fixed it: drop the fix."""
    with pytest.raises((RuntimeError, AssertionError)):
        run_worker_path(_verl_original(), lengths, "tq_get")


def test_log_prob_micro_batching_silently_wrong_without_fix_right_with_it():
    """chunk_tensordict (tensordict_utils.py:353-366) swallows the unbind error and pads: no error, wrong ids."""
    orig = _mrope_ids([23] * 4)
    data = _worker_batch([23] * 4, "tq_get")
    _verl_original()(data)
    chunks = tu.chunk_tensordict(data, 2)  # no exception: the fallback to to_padded_tensor
    got = [s for c in chunks for s in c["position_ids"].unbind()]
    assert [tuple(s.shape) for s in got] == [(4, 4)] * 4  # 4x4 corner of each sample instead of (4, 23)

    data = _worker_batch([23] * 4, "tq_get")
    engine_base.maybe_fix_3d_position_ids(data)
    got = [s for c in tu.chunk_tensordict(data, 2) for s in c["position_ids"].unbind()]
    assert all(torch.equal(g, o) for g, o in zip(got, orig, strict=True)), "fix not active"


def test_verl_original_kept_for_other_inputs():
    """Unequal lengths after Ray's pickle (ragged_idx reset to 1) still need, and get, verl's own fix."""
    data = _worker_batch([23, 9, 5], "ray_pickle")
    assert data["position_ids"]._ragged_idx == 1
    engine_workers.maybe_fix_3d_position_ids(data)
    assert data["position_ids"]._ragged_idx == 2
    _assert_samples(data["position_ids"], _mrope_ids([23, 9, 5]), "pickled unequal")


@pytest.fixture
def fixes():
    if FIX_MODULE not in sys.modules:
        pytest.skip("fix not loaded: VERL_USE_EXTERNAL_PLUGINS excludes r1reward_fixes")
    return sys.modules[FIX_MODULE]


def test_apply_is_idempotent_and_logs_once(fixes, caplog):
    import importlib

    target = tu.maybe_fix_3d_position_ids
    original = fixes.verl_original
    fixes.apply()
    fixes = importlib.reload(fixes)  # a second copy of the module must not wrap the fix in itself
    assert tu.maybe_fix_3d_position_ids is target and fixes.verl_original is original
    assert engine_base.maybe_fix_3d_position_ids is target and engine_workers.maybe_fix_3d_position_ids is target
    with caplog.at_level("WARNING", logger=FIX_MODULE):
        for _ in range(2):
            run_worker_path(target, [23] * 4, "tq_get")
    fired = [r for r in caplog.records if r.name == FIX_MODULE]
    assert len(fired) == 1 and "tensordict_utils.py:915" in fired[0].getMessage()


# Fresh interpreter: only `import verl`, then verl's own call-site binding on a TQ-packed equal-length batch.
PROBE = """
import json, sys, torch
import verl
from transfer_queue.storage.managers.simple_storage_manager import AsyncSimpleStorageManager
from tensordict import TensorDict
from verl.workers import engine_workers
orig = [torch.arange(4 * 23).view(4, 23) + 100 * i for i in range(4)]
td = TensorDict({"position_ids": AsyncSimpleStorageManager._pack_field_values(orig)}, batch_size=[4])
engine_workers.maybe_fix_3d_position_ids(td)
try:
    ok, err = all(torch.equal(a, b) for a, b in zip(td["position_ids"].unbind(), orig, strict=True)), ""
except RuntimeError as e:
    ok, err = False, str(e)
print(json.dumps({"loaded": "r1reward_verl.verl_fixes" in sys.modules, "ok": ok, "error": err}))
"""


def _probe(policy):
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": policy}
    cmd = [sys.executable, "-c", PROBE]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_entry_point_registered():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert eps.get("r1reward_fixes") == FIX_MODULE


def test_fix_active_in_fresh_interpreter_after_import_verl():
    assert _probe("auto") == {"loaded": True, "ok": True, "error": ""}
    assert _probe("r1reward_fixes") == {"loaded": True, "ok": True, "error": ""}
    broken = _probe("none")  # verl alone: the bug
    assert broken["loaded"] is False and broken["ok"] is False
    assert "split_with_sizes expects split_sizes to sum exactly to 23" in broken["error"]
