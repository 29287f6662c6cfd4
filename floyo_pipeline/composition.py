"""Composition root: the only module of the engine that knows the analyzers and picks the parts."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import consumers
from floyo_pipeline.api import Consumer
from floyo_pipeline.config import Settings, Wakeup
from floyo_pipeline.engine.wakeups import NotifySource, WakeupSource
from floyo_pipeline.http import http_component
from floyo_pipeline.jobs import scheduler_component
from floyo_pipeline.service import Component
from floyo_pipeline.storage import declared_tables

DEFAULT_CONSUMERS = "consumers:all_consumers"


class CompositionError(Exception):
    """A named part cannot be loaded."""


def build_consumers(spec: str = DEFAULT_CONSUMERS) -> list[Consumer]:
    """Load consumers from `module:function` (the default is Floyo's analyzers) and check their
    declarations: a handler for every subscription (or their own `handle`), tables declared alike."""
    if spec == DEFAULT_CONSUMERS:
        built = consumers.all_consumers()
    else:
        module_name, _, attr = spec.partition(":")
        try:
            factory: Callable[[], list[Consumer]] = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise CompositionError(f"FLOYO_CONSUMERS: cannot load {spec!r}: {err}") from None
        built = factory()
    check_declarations(built)
    return built


def check_declarations(built: Sequence[Consumer]) -> None:
    """CompositionError naming the first consumer whose declarations the engine cannot serve."""
    for consumer in built:
        if type(consumer).handle is Consumer.handle:
            for sub in consumer.subscriptions:
                if sub.handler is None:
                    raise CompositionError(f"consumer {consumer.name}: no handler for stream {sub.stream}")
    try:
        declared_tables(built)
    except ValueError as err:
        raise CompositionError(str(err)) from None


def build_sources(settings: Settings, url: str) -> list[WakeupSource]:
    """The wake-up source chosen by FLOYO_WAKEUP (the poll timer is always added by the service)."""
    if settings.wakeup is Wakeup.NOTIFY:
        return [NotifySource(url)]
    if settings.wakeup is Wakeup.REALTIME:
        from floyo_pipeline.engine.realtime import RealtimeSource

        return [RealtimeSource.from_settings(settings, database_url=url)]
    return []


def build_components(settings: Settings, built: Sequence[Consumer]) -> list[tuple[str, Component]]:
    """Long-running parts beside the engine: the HTTP port and the scheduled jobs (whose retention
    cleans the tables the consumers `built` declare)."""
    return [("http", http_component(settings)), ("jobs", scheduler_component(settings, built))]
