"""The trained model as a pairwise reward for verl's reward loop (``pkg://reward_fns.pairwise_genrm``): a thin entry
point; the function and its reward kwargs are :mod:`r1reward_verl.judge.reward_fn`."""

from r1reward_verl.judge.reward_fn import compute_score

__all__ = ["compute_score"]
