"""``python -m preprocess.pairs``: the command line of :mod:`r1reward_verl.data.pairs` (a thin entry point)."""

from r1reward_verl.data.pairs import main

if __name__ == "__main__":
    raise SystemExit(main())
