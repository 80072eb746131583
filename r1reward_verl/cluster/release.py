"""Hand a finished job's GPUs back to a Ray cluster before the next job looks (``RayPerSweepMember``).

On an external cluster (``ray start``, ``RAY_ADDRESS``) ending a job only *starts* the release of its placement
groups (the GCS removes them asynchronously), and verl's ``ResourcePoolManager._check_resource_available`` of the
next ``-m`` member can still count them as taken. :func:`release_job_gpus` removes the job's own groups and waits
until their GPUs are free.
"""

from __future__ import annotations

import sys


def free_gpus() -> float:
    """The cluster's free GPUs counted as verl's ``ResourcePoolManager._check_resource_available`` counts them
    (per node ``GPU``, else ``NPU``, summed)."""
    import ray

    per_node = ray._private.state.available_resources_per_node()
    return sum(r.get("GPU", 0) if "GPU" in r else r.get("NPU", 0) for r in per_node.values())


def _job_placement_groups(job_id: str) -> list[tuple[str, float]]:
    """``(id hex, GPUs held)`` of the placement groups the Ray job ``job_id`` created (the driver or its actors,
    e.g. verl's TaskRunner) that are neither removed nor detached. The GCS table has the creator job;
    ``ray.util.placement_group_table`` does not show it, hence Ray's state accessor (verl also reads
    ``ray._private.state``)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    out = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if pg.creator_job_id.hex() != job_id or pg.is_detached or pg.state == gcs_pb2.PlacementGroupTableData.REMOVED:
            continue
        placed = pg.state == gcs_pb2.PlacementGroupTableData.CREATED  # a pending group holds nothing yet
        gpus = sum(b.unit_resources.get("GPU", 0) or b.unit_resources.get("NPU", 0) for b in pg.bundles)
        out.append((pg.placement_group_id.hex(), gpus if placed else 0))
    return out


def wait_for_free_gpus(want: float, timeout_s: float, what: str, poll_s: float = 0.2) -> bool:
    """Wait until :func:`free_gpus` is at least ``want`` or ``timeout_s`` passed; one line on stderr when it has to
    wait (naming ``what`` it waits for) and one when it is done or gives up. True when the GPUs are free."""
    import time

    free = free_gpus()
    if free >= want:
        return True
    start = time.monotonic()
    print(f"r1reward: waiting up to {timeout_s:g} s for {want:g} free GPUs ({free:g} now): {what}",
          file=sys.stderr, flush=True)  # fmt: skip
    while time.monotonic() - start < timeout_s:
        time.sleep(poll_s)
        free = free_gpus()
        if free >= want:
            print(f"r1reward: {free:g} GPUs free after {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
            return True
    print(f"r1reward: warning: still only {free:g} of {want:g} GPUs free after {timeout_s:g} s ({what}); the next"
          " job may find too few", file=sys.stderr, flush=True)  # fmt: skip
    return False


def release_job_gpus(timeout_s: float) -> bool:
    """Remove the placement groups of the current Ray job (what verl's resource pools hold; removing one ends
    the workers in it) and wait until the cluster's free GPUs are back: the free count before plus what they
    held, at most the cluster's total. Call it connected, before ``ray.shutdown()``."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    held = _job_placement_groups(ray.get_runtime_context().get_job_id())
    if not held:
        return True
    total = ray.cluster_resources()
    want = min(free_gpus() + sum(g for _, g in held), total.get("GPU", 0) or total.get("NPU", 0))
    for pg_id, _ in held:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
    return wait_for_free_gpus(want, timeout_s, f"the {len(held)} placement group(s) of this job being removed")
