"""Fixes for verl bugs that hit every platform (GPU and CPU alike); verl loads this module in every
process through the ``verl.plugins`` entry point ``r1reward_fixes`` (pyproject.toml).

Fix 1: mrope ``position_ids`` whose nested tensor is ragged along the wrong dim (verl 0.9.1).

* TransferQueue packs each sample's Qwen2.5-VL mrope ``position_ids`` (shape ``(4, L_i)``) with
  ``torch.nested.as_nested_tensor(values, layout=torch.jagged)``
  (``transfer_queue/storage/managers/simple_storage_manager.py:574``, and again on the wire:
  ``transfer_queue/utils/serial_utils.py:323``). When the ``L_i`` differ, torch makes the sequence dim
  ragged (``_ragged_idx=2``). When they are ALL EQUAL, torch makes the 4-channel dim ragged instead
  (``_ragged_idx=1``, offsets ``0, 4, 8, ...``, values ``(4B, L)``).
* ``verl/utils/tensordict_utils.py:910-915`` ``maybe_fix_3d_position_ids`` always sets
  ``_ragged_idx = 2`` and keeps the offsets. On a channel-ragged tensor that makes the offsets
  ``0, 4, 8, ...`` index the sequence dim: ``unbind`` (``tensordict_utils.py:495``, reached from
  ``make_iterator`` in ``train_mini_batch`` and from ``rearrange_micro_batches``) dies with
  "split_with_sizes expects split_sizes to sum exactly to L ... got [4, 4, ...]" (or, when
  ``L == 4B``, silently returns ``(4B, 4)`` slices), and ``chunk_tensordict``
  (``tensordict_utils.py:353-366``, the log-prob micro-batching) catches that error and falls back
  to ``to_padded_tensor``, silently building wrong position ids.

The fix: when ``position_ids`` is a jagged 3-D tensor ragged along the channel dim (``_ragged_idx == 1``,
every offset step equal to 4 and the offsets indexing the rows of ``values``), rebuild it ragged along
the sequence dim with verl's own ``nested_tensor_from_tensor_list(..., ragged_idx=2)``
(``tensordict_utils.py:162``); in every other case call verl's original function unchanged.

Mechanism (why the code object is swapped): verl binds the function by name at import time in
``verl/workers/engine_workers.py:45``, ``verl/workers/engine/base.py:27`` and
``verl/workers/engine_workers_tinker.py:22``. Replacing the attribute on ``tensordict_utils`` would not
reach those bindings, and re-binding each importer needs an import hook because Ray workers import them
after the plug-ins load (and a third-party recipe may import it too). All those names point at ONE
function object, so we give that object a two-line trampoline as ``__code__``; the trampoline looks up
the fixed function under a single extra global of ``verl.utils.tensordict_utils``. Every binding,
past or future, runs the fix; tracebacks point into this file; ``verl_original`` keeps verl's function.
Applying twice (or reloading this module) is a no-op. A one-time warning is logged when the fix fires.

Drop this fix once verl's ``maybe_fix_3d_position_ids`` handles channel-ragged tensors (the canary
``tests/test_position_ids_fix.py::test_verl_original_still_broken`` then fails).
"""

from __future__ import annotations

import logging
import types

import torch
from verl.utils import tensordict_utils as _tdu

logger = logging.getLogger(__name__)

_HOOK = "_r1reward_fixed_maybe_fix_3d_position_ids"  # the one global we add to verl.utils.tensordict_utils
_MROPE_CHANNELS = 4  # verl's 3-D position_ids are (4, L): verl/workers/engine/fsdp/transformer_impl.py:1293-1294
_logged = False


def _trampoline(data):  # becomes the __code__ of verl's maybe_fix_3d_position_ids; globals = tensordict_utils
    return _r1reward_fixed_maybe_fix_3d_position_ids(data)  # noqa: F821


def channel_ragged(pos) -> bool:
    """True for a jagged ``(B, 4, L)`` tensor that torch made ragged along the 4 channels (all L equal)."""
    if not (isinstance(pos, torch.Tensor) and pos.is_nested and pos.layout == torch.jagged and pos.dim() == 3):
        return False
    values, offsets = pos.values(), pos.offsets()
    if getattr(pos, "_ragged_idx", None) != 1 or pos.lengths() is not None or values.dim() != 2:
        return False
    steps = offsets.diff()
    return int(offsets[-1]) == values.shape[0] and bool((steps == _MROPE_CHANNELS).all())


def _make_fixed(verl_original):
    def maybe_fix_3d_position_ids(data):
        """verl's maybe_fix_3d_position_ids, plus: rebuild channel-ragged mrope ids ragged along the sequence."""
        global _logged
        pos = data["position_ids"] if "position_ids" in data.keys() else None
        if channel_ragged(pos):
            values = pos.values()
            batch, seq_len = values.shape[0] // _MROPE_CHANNELS, values.shape[1]
            samples = list(values.reshape(batch, _MROPE_CHANNELS, seq_len).unbind(0))
            data["position_ids"] = _tdu.nested_tensor_from_tensor_list(samples, ragged_idx=2)
            if not _logged:
                _logged = True
                logger.warning(
                    "r1reward_verl.verl_fixes: position_ids of %d samples, all of length %d, were ragged along the "
                    "mrope channels (TransferQueue packing); rebuilt them ragged along the sequence (works around "
                    "verl/utils/tensordict_utils.py:915). Logged once per process.",
                    batch,
                    seq_len,
                )
            return None
        return verl_original(data)

    maybe_fix_3d_position_ids.verl_original = verl_original
    return maybe_fix_3d_position_ids


def apply() -> None:
    """Install the fix into verl's one ``maybe_fix_3d_position_ids`` function object (idempotent)."""
    global verl_original
    target = _tdu.maybe_fix_3d_position_ids
    installed = getattr(_tdu, _HOOK, None)
    if installed is not None:  # applied before (maybe by an earlier copy of this module): keep verl's original
        verl_original = installed.verl_original
    else:
        verl_original = types.FunctionType(
            target.__code__, target.__globals__, target.__name__, target.__defaults__, target.__closure__
        )
        verl_original.__doc__, verl_original.__qualname__ = target.__doc__, target.__qualname__
    setattr(_tdu, _HOOK, _make_fixed(verl_original))
    target.__code__ = _trampoline.__code__


verl_original = None  # verl's unpatched maybe_fix_3d_position_ids, set by apply()
apply()
