"""What a run asks of a GPU cluster, checked on CPU before anything starts.

``pools``: the resource pools verl 0.9.1 builds for a config and whether they can be placed on a cluster of
N nodes x G GPUs (verl compares totals only). ``memory``: per GPU, the resident memory of each role at the
rollout's wake-up and in the update, from the model's size and the layout (arithmetic, not a measurement).
``python -m r1reward_verl.dryrun`` prints both and refuses a layout that cannot start.
"""
