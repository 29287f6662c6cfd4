"""Structured logging: one JSON object per line, stable dotted event names.

The service (and the demo) log on stdout; operator commands log on stderr, so that their stdout is
only their output (`status --json` is one JSON document). Third-party loggers (asyncpg's pool,
hypercorn, asyncio, websockets) and Python warnings are rendered the same way: every line is JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import structlog

_SECRET_KEYS = frozenset({"password", "database_url", "supabase_service_role_key", "apikey", "token"})
REDACTED = "**********"
# Shorter values would blank out ordinary words in every line; such a secret is no secret anyway.
_MIN_SECRET_LENGTH = 4
_secrets: set[str] = set()


def secret_values(environ: MutableMapping[str, str] | None = None) -> set[str]:
    """The secrets the process was given: DATABASE_URL's password, the Supabase service role key."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    url = env.get("DATABASE_URL")
    if url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            found.update({password, unquote(password)})
    key = env.get("SUPABASE_SERVICE_ROLE_KEY")
    if key:
        found.add(key)
    return {s for s in found if len(s) >= _MIN_SECRET_LENGTH}


def register_secrets(values: Iterable[str]) -> None:
    """Add values that must never be printed (scrubbed from every rendered line and from `scrub`)."""
    for value in values:
        if len(value) >= _MIN_SECRET_LENGTH:
            # Also the JSON-escaped form, which is what appears inside a rendered line.
            _secrets.update({value, json.dumps(value)[1:-1]})


def scrub(text: str) -> str:
    """`text` with every registered secret replaced (for error texts shown by /readyz and the CLI)."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub_rendered(_: Any, __: str, line: Any) -> Any:
    return scrub(line) if isinstance(line, str) else line


def _drop_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _SECRET_KEYS & event_dict.keys():
        event_dict[key] = REDACTED
    return event_dict


class _Handler(logging.StreamHandler[TextIO]):
    """The root logger's handler that configure_logging installs (and replaces on the next call)."""


def configure_logging(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger for the process; safe to call again (tests)."""
    out = sys.stdout if stream is None else stream
    register_secrets(secret_values())
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    rendering = [
        # Locals can hold payloads and connection strings: never render them.
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        renderer,
        # Last: whatever a field, message or traceback carried, the rendered line has no secret.
        _scrub_rendered,
    ]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            _drop_secrets,
            *rendering,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp,
                _drop_secrets,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries' info lines ("Running on ...") are noise beside ours; their warnings and errors count.
    root.setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level.upper()]))
    logging.captureWarnings(True)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
