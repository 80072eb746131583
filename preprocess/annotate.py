"""``python -m preprocess.annotate``: the command line of :mod:`r1reward_verl.data.annotate` (a thin entry point)."""

from r1reward_verl.data.annotate import main

if __name__ == "__main__":
    raise SystemExit(main())
