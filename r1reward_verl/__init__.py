"""r1reward-verl: train generative multimodal reward models (R1-Reward) with verl.

The verl plug-ins live in :mod:`r1reward_verl.algos` (loss and estimator) and
:mod:`r1reward_verl.trainer` (trainers with filter metrics); verl loads both through the
``verl.plugins`` entry points, so this top-level import stays light.
"""

__version__ = "0.1.0"
