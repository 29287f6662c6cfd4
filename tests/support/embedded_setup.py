"""A first start of the embedded server stopped in the middle of its Supabase-roles set-up.

`setup_until` runs the set-up's statements (floyo_pipeline/sql/embedded.sql) in its order, each as the
role that runs it, up to and including one step. Run as a script
(`python -m tests.support.embedded_setup DATA_DIR STEP`) it starts the server on DATA_DIR, does that,
then kills itself with SIGKILL: what a `run` killed at that instant leaves (the server still running,
this process still on its list of users).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import asyncpg

from floyo_pipeline.embedded import _SETUP_ROLE, OWNER, SUPERUSER, EmbeddedPostgres, start_embedded
from floyo_pipeline.queries import Q

# (role, statement): the set-up's steps on a fresh server, in order.
STEPS = (
    (OWNER, "embedded_create_setup_role"),  # `postgres` is still the bootstrap superuser
    (_SETUP_ROLE, "embedded_rename_bootstrap_superuser"),
    (SUPERUSER, "embedded_create_owner"),
)
STEP_NAMES = tuple(name for _, name in STEPS)


async def setup_until(pg: EmbeddedPostgres, last: str) -> None:
    assert last in STEP_NAMES, last
    for role, name in STEPS:
        conn = await asyncpg.connect(pg.url(role))
        try:
            await conn.execute(Q[name])
        finally:
            await conn.close()
        if name == last:
            return


def main() -> None:
    data_dir, last = Path(sys.argv[1]), sys.argv[2]
    pg, _server = start_embedded(data_dir)
    asyncio.run(setup_until(pg, last))
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
