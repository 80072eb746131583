"""``python -m preprocess.synth``: the command line of :mod:`r1reward_verl.demo.synth` (a thin entry point)."""

from r1reward_verl.demo.synth import main

if __name__ == "__main__":
    raise SystemExit(main())
