"""``python -m r1reward_verl.demo``: the paper in miniature (see :mod:`r1reward_verl.demo`)."""

import sys

from r1reward_verl.demo.pipeline import main

sys.exit(main())
