"""Lambda SnapStart: what the snapshot may hold, and what restored containers must not share.

With SnapStart on (the template's SnapStart parameter), Lambda runs the init once per
published version, snapshots the process, and starts containers from copies of that
snapshot. Lambda sets AWS_LAMBDA_INITIALIZATION_TYPE=snap-start for that init, and the
runtime's `snapshot_restore_py` runs the hooks registered here:

- before the snapshot (`prime`): import what a first vend or scheduled run would
  otherwise import then (requests, the pre-warm) and parse the AWS service models, so
  every restored container starts with them;
- after each restore (`after_restore`): reseed `random`, which the lease back-off
  jitter draws from (copies of one snapshot would otherwise draw the same numbers and
  back off in step), and start from an empty memory.

Checked and left as they are: `uuid.uuid4` (lease owners) reads os.urandom, not the
seeded generator; no AWS client, connection or credential exists before the first
request (clients are created lazily, by the restored container, with its own
credentials); no secret or token is read at init, so nothing cached can be older than
its timestamps say, and the memory is emptied after a restore anyway.
"""

from __future__ import annotations

import os
import random

from . import container


def register() -> None:
    """Register the hooks, when this init is a SnapStart one (elsewhere the hooks module may not exist)."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "snap-start":
        return
    from snapshot_restore_py import register_after_restore, register_before_snapshot

    register_before_snapshot(prime)
    register_after_restore(after_restore)


def prime() -> None:
    import requests  # noqa: F401 - loaded into the snapshot

    from . import prewarm  # noqa: F401 - loaded into the snapshot

    container.current().load_service_models()


def after_restore() -> None:
    random.seed()  # from os.urandom: each restored container its own sequence
    container.current().forget()
