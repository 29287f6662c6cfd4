"""Watch one user's new insights and suggestions live, as Floyo's desktop app does.

    SUPABASE_URL=https://<ref>.supabase.co SUPABASE_ANON_KEY=<anon key> FLOYO_USER_JWT=<user access token> \\
        python examples/live_insights.py

Prints one JSON line per new row. It connects with the project's anon key and subscribes with the
user's own access token (from Supabase Auth): Realtime checks each change against row level security
as that user, so only the user's own rows arrive, never another user's. It also filters on the
user's id, which spares the server an RLS check for every other user's rows (RLS would drop them
anyway). Realtime has no replay: after a (re)connect, read what was written meanwhile over the REST
API (docs/live-insights.md). Only the `realtime` package is needed (a dependency of floyo-pipeline).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from realtime import AsyncRealtimeClient, RealtimePostgresChangesListenEvent, RealtimeSubscribeStates

TABLES = ("insights", "suggestions")
SUBSCRIBED = "Subscribed to PostgreSQL"

OnRow = Callable[[str, dict[str, Any]], None]


def user_id_of(access_token: str) -> str:
    """The `sub` claim of a Supabase access token (read only; the server checks the signature)."""
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


async def watch(
    supabase_url: str,
    anon_key: str,
    access_token: str,
    on_row: OnRow,
    *,
    ready: asyncio.Event | None = None,
    own_rows_filter: bool = True,
) -> None:
    """Call `on_row(table, row)` for each new insight and suggestion of the token's user; sets
    `ready` once the server listens to Postgres for every table. Runs until cancelled."""
    client = AsyncRealtimeClient(f"{supabase_url.rstrip('/')}/realtime/v1", token=anon_key)
    await client.set_auth(access_token)  # the user's token, not the anon key, decides what arrives
    channel = client.channel("floyo-live-insights")
    row_filter = f"user_id=eq.{user_id_of(access_token)}" if own_rows_filter else None
    for table in TABLES:
        # INSERT only (an insight's updates can be added the same way). Never DELETE: Realtime cannot
        # apply row level security to deletes and would send every subscriber the deleted row's id.
        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert,
            lambda payload: _deliver(payload, on_row),
            table=table,
            schema="public",
            filter=row_filter,
        )
    listening = asyncio.Event()
    channel.on_system(lambda payload: _on_system(payload, listening))
    failed: list[str] = []

    def on_state(status: RealtimeSubscribeStates, error: Exception | None) -> None:
        if status != RealtimeSubscribeStates.SUBSCRIBED:
            failed.append(f"{status.value}: {error}")

    try:
        await channel.subscribe(on_state)
        if failed:
            raise ConnectionError(f"subscription failed: {failed[0]}")
        await listening.wait()
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await client.close()


def _deliver(payload: Any, on_row: OnRow) -> None:
    data = payload.get("data") or {}
    record = data.get("record")
    if isinstance(record, dict) and not data.get("errors"):
        on_row(str(data.get("table")), record)


def _on_system(payload: Any, listening: asyncio.Event) -> None:
    if getattr(payload, "extension", "") == "postgres_changes" and SUBSCRIBED in getattr(
        payload, "message", ""
    ):
        listening.set()


def main() -> int:
    try:
        url, anon_key, token = (
            os.environ[k] for k in ("SUPABASE_URL", "SUPABASE_ANON_KEY", "FLOYO_USER_JWT")
        )
    except KeyError as missing:
        print(f"live_insights: set {missing.args[0]}", file=sys.stderr)
        return 2

    def show(table: str, row: dict[str, Any]) -> None:
        print(json.dumps({"table": table, "row": row}), flush=True)

    try:
        asyncio.run(watch(url, anon_key, token, show))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
