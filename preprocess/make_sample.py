"""``python -m preprocess.make_sample``: the command line of :mod:`r1reward_verl.data.make_sample` (a thin entry point)."""

from r1reward_verl.data.make_sample import main

if __name__ == "__main__":
    raise SystemExit(main())
