"""The pairwise judge: a trained R1-Reward model comparing two answers (``core``), as a reward function of verl's
reward loop (``reward_fn``), as a reward manager judging a prompt's whole group (``group_manager``) and as a
command that ranks candidates offline (``rank``)."""
