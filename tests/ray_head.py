"""A local Ray head with its dashboard (job API) for tests: `python tests/ray_head.py PORT`.

Prints "ready" once the dashboard is up; on SIGTERM it exits and ray.shutdown() (at exit) stops
every Ray process it started, so the test stops it by this process's own pid.
"""

import signal
import sys
import time

import ray

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=int(sys.argv[1]))
print("ready", flush=True)
while True:
    time.sleep(1)
