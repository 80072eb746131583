"""The main job: the R1-Reward paper in miniature (``python -m r1reward_verl.demo``), on CPU, through verl's own
trainers. ``plan`` (its sizes), ``synth`` (the task generator), ``referee`` (its consistency referee), ``stages``
(data, base model, SFT, RL), ``evaluate``, ``report``, ``pipeline`` (the run and its command line).

``r1reward_verl.demo.<name>`` finds ``<name>`` in those modules on first use (so that importing the task generator
alone, as the tiny model's tokenizer does, imports nothing else)."""

import importlib

_MODULES = ("pipeline", "plan", "stages", "evaluate", "report")


def __getattr__(name: str):
    if not name.startswith("__"):
        for mod in _MODULES:
            module = importlib.import_module(f"{__name__}.{mod}")
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
