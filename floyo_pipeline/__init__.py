"""floyo-pipeline: Postgres telemetry streams to patterns, insights and suggestions."""

from __future__ import annotations

__version__ = "0.1.0"
