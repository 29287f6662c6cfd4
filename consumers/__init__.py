"""Floyo's analyzers, built on floyo_pipeline.api only."""

from __future__ import annotations

from floyo_pipeline.api import Consumer


def all_consumers() -> list[Consumer]:
    """The analyzers the service runs by default."""
    from consumers.app_workflows import AppWorkflows
    from consumers.file_patterns import FilePatterns
    from consumers.performance import Performance

    return [FilePatterns(), AppWorkflows(), Performance()]
