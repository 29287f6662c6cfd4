"""Supabase Realtime wake-up source (being built; see issue 6)."""

from __future__ import annotations

from floyo_pipeline.config import Settings
from floyo_pipeline.engine.wakeups import SourceHealth, WakeHub


class RealtimeSource:
    def __init__(self) -> None:
        self.health = SourceHealth("realtime")

    @classmethod
    def from_settings(cls, settings: Settings) -> RealtimeSource:
        raise NotImplementedError("FLOYO_WAKEUP=realtime is not available yet")

    async def run(self, hub: WakeHub) -> None:
        raise NotImplementedError
