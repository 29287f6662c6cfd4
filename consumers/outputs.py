"""The app-facing tables the analyzers write, declared once here for each analyzer's `tables`:
retention measures patterns by their last use, relationships and insights by when last seen, and
keeps suggestions (they have no last-seen time)."""

from __future__ import annotations

from floyo_pipeline.api import Table

PATTERNS = Table(name="public.patterns", user_column="user_id", age_column="last_used")
RELATIONSHIPS = Table(name="public.relationships", user_column="user_id", age_column="last_seen")
INSIGHTS = Table(name="public.insights", user_column="user_id", age_column="last_seen")
SUGGESTIONS = Table(name="public.suggestions", user_column="user_id", age_column=None)
