"""``python -m preprocess.policy_qa``: the command line of :mod:`r1reward_verl.demo.policy_qa` (a thin entry point)."""

from r1reward_verl.demo.policy_qa import main

if __name__ == "__main__":
    raise SystemExit(main())
