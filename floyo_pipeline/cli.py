"""`floyo-pipeline`: run the service and operate it. Every option can also come from an env var."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from floyo_pipeline import __version__, exits
from floyo_pipeline.composition import CompositionError, build_components, build_consumers, build_sources
from floyo_pipeline.config import ConfigError, Settings, load_settings
from floyo_pipeline.connections import DatabaseUnavailable, describe_database_error, open_connection
from floyo_pipeline.http import cmd_healthcheck
from floyo_pipeline.logs import configure_logging, get_logger
from floyo_pipeline.migration_lock import migration_lock
from floyo_pipeline.migrations import MigrationError, migrate
from floyo_pipeline.operations import (
    OperationError,
    dead_letters,
    discard_dead_letters,
    replay,
    retry_dead_letter,
    status,
)
from floyo_pipeline.retention import print_retention
from floyo_pipeline.schema_check import print_drift
from floyo_pipeline.service import StartupError, run_service
from floyo_pipeline.target import database_target

EXIT_USAGE = exits.USAGE
# The service and the demo log on stdout; every other command keeps stdout for its output.
LOGS_ON_STDOUT = frozenset({"run", "demo"})
log = get_logger(__name__)


@dataclass(frozen=True)
class SettingFlag:
    """A CLI flag for one settings field; its help names the env var and the default."""

    flag: str
    field: str
    metavar: str
    kind: type
    help: str


_SETTING_FLAGS = {
    f.field: f
    for f in (
        SettingFlag(
            "--data-dir",
            "data_dir",
            "DIR",
            str,
            "the embedded Postgres's folder, with --embedded (FLOYO_DATA_DIR, default .floyo)",
        ),
        SettingFlag(
            "--log-format",
            "log_format",
            "FORMAT",
            str,
            "json or console (FLOYO_LOG_FORMAT, default json)",
        ),
        SettingFlag(
            "--log-level",
            "log_level",
            "LEVEL",
            str,
            "debug, info, warning or error (FLOYO_LOG_LEVEL, default info)",
        ),
        SettingFlag(
            "--consumers",
            "consumers",
            "MODULE:FUNCTION",
            str,
            "factory of the consumers to run (FLOYO_CONSUMERS, default consumers:all_consumers)",
        ),
        SettingFlag(
            "--http-host", "http_host", "ADDRESS", str, "HTTP bind address (FLOYO_HTTP_HOST, default 0.0.0.0)"
        ),
        SettingFlag(
            "--http-port",
            "http_port",
            "PORT",
            int,
            "HTTP port of /healthz, /readyz, /status, /metrics (FLOYO_HTTP_PORT, default 9091)",
        ),
        SettingFlag(
            "--wakeup",
            "wakeup",
            "SOURCE",
            str,
            "wake-up hints: notify, realtime or poll (FLOYO_WAKEUP, default notify)",
        ),
        SettingFlag(
            "--batch-size", "batch_size", "ROWS", int, "max rows per batch (FLOYO_BATCH_SIZE, default 5000)"
        ),
        SettingFlag(
            "--poll-interval",
            "poll_interval_seconds",
            "SECONDS",
            float,
            "between safety-net polls (FLOYO_POLL_INTERVAL_SECONDS, default 2)",
        ),
        SettingFlag(
            "--lease-ttl",
            "lease_ttl_seconds",
            "SECONDS",
            float,
            "partition lease lifetime (FLOYO_LEASE_TTL_SECONDS, default 15)",
        ),
        SettingFlag(
            "--shutdown-grace",
            "shutdown_grace_seconds",
            "SECONDS",
            float,
            "time to drain on SIGTERM/SIGINT (FLOYO_SHUTDOWN_GRACE_SECONDS, default 25)",
        ),
        SettingFlag(
            "--max-concurrency",
            "max_concurrency",
            "N",
            int,
            "batch transactions in flight at once (FLOYO_MAX_CONCURRENCY, default 6)",
        ),
        SettingFlag(
            "--readers-per-stream",
            "readers_per_stream",
            "N",
            int,
            "readers per stream, each over a share of the partitions (FLOYO_READERS_PER_STREAM, default 4)",
        ),
        SettingFlag(
            "--connect-timeout",
            "connect_timeout_seconds",
            "SECONDS",
            float,
            "wait this long for the database to answer a connect (FLOYO_CONNECT_TIMEOUT_SECONDS, default 10)",
        ),
        SettingFlag(
            "--replica-id",
            "replica_id",
            "NAME",
            str,
            "this replica's name as lease owner (FLOYO_REPLICA_ID, default $FLY_MACHINE_ID or host-pid)",
        ),
    )
}
# Which settings each command takes as flags (every setting is still read from its env var);
# "embedded" is the --embedded switch (FLOYO_EMBEDDED).
DATABASE = ("embedded", "data_dir", "connect_timeout_seconds", "log_format", "log_level")
SERVICE = ("embedded", *_SETTING_FLAGS)

DESCRIPTION = """\
floyo-pipeline turns Floyo telemetry rows in Postgres into patterns, relationships, insights and
integration suggestions, exactly once, in per-user order, with partition leases for scale-out.
"""
EPILOG = """\
Database: DATABASE_URL (a postgres:// URL). For local use, --embedded (FLOYO_EMBEDDED=true) starts
an embedded Postgres in FLOYO_DATA_DIR instead and migrates it (the `embedded` extra); the demo
always does. Every setting is an environment variable (README.md lists them all);
`floyo-pipeline COMMAND --help` shows the flags a command takes.

Exit codes: 0 done, 1 the command reports a failure, 2 bad configuration (one line naming the
setting), 3 database unreachable, 4 database refused the login or the work, 5 HTTP port unavailable,
130 a second signal during the drain.

First time? `floyo-pipeline demo` shows what the service does, on its own embedded database.
"""


def _add_setting_flags(parser: argparse.ArgumentParser, fields: Sequence[str]) -> None:
    group = parser.add_argument_group("settings (each also from its env var)")
    for field in fields:
        if field == "embedded":
            group.add_argument(
                "--embedded",
                dest="setting_embedded",
                action="store_const",
                const=True,
                default=None,
                help="use an embedded Postgres in FLOYO_DATA_DIR instead of DATABASE_URL (FLOYO_EMBEDDED)",
            )
            continue
        f = _SETTING_FLAGS[field]
        group.add_argument(
            f.flag,
            dest=f"setting_{field}",
            type=f.kind,
            default=None,
            metavar=f.metavar,
            help=f.help,
        )


def consumer_names(factory: str) -> list[str]:
    """Names of the consumers `factory` (FLOYO_CONSUMERS) builds."""
    return [c.name for c in build_consumers(factory)]


class _ReplayHelp(argparse.HelpFormatter):
    """Names the valid consumers in `replay --help` only, so no other command loads them to parse."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is not None and "{consumers}" in text:
            factory = os.environ.get("FLOYO_CONSUMERS") or str(Settings.model_fields["consumers"].default)
            try:
                names = ", ".join(consumer_names(factory))
            except Exception:
                names = f"those {factory} builds"
            text = text.replace("{consumers}", names)
        return text


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="floyo-pipeline",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"floyo-pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, settings: Sequence[str], **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, **kw)
        _add_setting_flags(p, settings)
        return p

    service_usage = {"usage": "%(prog)s [options]"}
    command(
        "run",
        "run the service: consumers, wake-ups, HTTP port, scheduled jobs (until SIGTERM)",
        SERVICE,
        **service_usage,
    )
    m = command(
        "migrate", "apply pending migrations from supabase/migrations (or roll back with --down-to)", DATABASE
    )
    m.add_argument("--down-to", metavar="VERSION", help="run rollbacks until VERSION is the newest applied")
    command(
        "validate-schema",
        "compare the database with the expected schema; exit 1 on drift",
        (*DATABASE, "consumers"),
    )
    s = command(
        "status", "per consumer, stream and partition: position, lag, lease; dead-letter counts", DATABASE
    )
    s.add_argument("--json", action="store_true", help="print JSON (the same document as GET /status)")
    r = command(
        "replay",
        "move a consumer's checkpoints back so it reprocesses rows (stop the service first, or --force)",
        (*DATABASE, "consumers"),
        formatter_class=_ReplayHelp,
    )
    r.add_argument("--consumer", required=True, metavar="NAME", help="the consumer to replay: {consumers}")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-start", action="store_true", help="reprocess every row")
    where.add_argument(
        "--since",
        type=datetime.fromisoformat,
        metavar="TIMESTAMP",
        help="reprocess rows inserted at or after this ISO timestamp (e.g. 2026-11-01T00:00:00+00:00)",
    )
    r.add_argument("--force", action="store_true", help="even while a running replica holds the leases")
    d = command(
        "dead-letters",
        "list, retry or discard rows that a consumer could not process",
        (*DATABASE, "consumers"),
        usage="%(prog)s [list [--all] [--json] | retry ID [ID ...] | discard ID [ID ...]] [options]",
    )
    d.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "retry", "discard"],
        help="list the open ones (the default); retry: run the consumer on each row now, marked retried "
        "only if it succeeds; discard: give up on them",
    )
    d.add_argument("ids", nargs="*", type=int, metavar="ID", help="dead letter ids, as `list` shows them")
    d.add_argument("--all", action="store_true", help="list: include retried and discarded ones")
    d.add_argument("--json", action="store_true", help="list: print JSON")
    command(
        "healthcheck",
        "exit 0 when the running service's /readyz says ready, 1 otherwise",
        ("http_host", "http_port"),
    )
    demo_parser = command(
        "demo",
        "watch the service work: an embedded Postgres, a week of synthetic telemetry, and the "
        "suggestions and insights it produces as they appear",
        SERVICE,
        **service_usage,
    )
    demo_parser.add_argument(
        "--users", type=_positive(int), default=5, metavar="N", help="synthetic people to feed (default 5)"
    )
    demo_parser.add_argument(
        "--duration",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="stop by itself after this long (default: run until Ctrl-C)",
    )
    t = command(
        "retention",
        "delete telemetry and outputs older than each user's data_retention_days",
        (*DATABASE, "consumers"),
    )
    t.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")}
    return load_settings(**overrides)


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, default=str))


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    consumers = build_consumers(settings.consumers)
    async with database_target(settings) as target:
        return await run_service(
            settings,
            target.service_url,
            consumers,
            build_sources(settings, target.service_url),
            build_components(settings, consumers),
        )


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with database_target(settings, auto_migrate=False) as target:
        conn = await open_connection(target.admin_url, settings.connect_timeout_seconds)
        try:
            async with migration_lock(
                conn,
                target.admin_url,
                settings.migrate_lock_timeout_seconds,
                settings.connect_timeout_seconds,
            ):
                if args.down_to:
                    from floyo_pipeline.migrations import migrate_down

                    undone = await migrate_down(conn, args.down_to)
                    for m in undone:
                        print(f"rolled back {m.version}_{m.name}")
                    print(f"{len(undone)} migration(s) rolled back")
                    return 0
                applied = await migrate(conn)
        finally:
            await conn.close()
    for m in applied:
        print(f"applied {m.version}_{m.name}")
    print(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")
    return 0


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    async with database_target(settings) as target:
        conn = await open_connection(target.service_url, settings.connect_timeout_seconds)
        try:
            doc = await status(conn)
        finally:
            await conn.close()
    if args.json:
        _print_json(doc)
        return 0
    print(f"{'consumer':<16} {'stream':<18} {'lag rows':>10} {'lag s':>9} {'processed':>10} {'leased':>7}")
    for c in doc["consumers"]:
        print(
            f"{c['consumer']:<16} {c['stream']:<18} {c['lag_rows']:>10} {c['lag_seconds']:>9.1f} "
            f"{c['processed_total']:>10} {c['partitions_leased']:>7}"
        )
    for d in doc["dead_letters"]:
        print(f"dead letters: {d['consumer']}/{d['stream']} {d['status']}: {d['count']}")
    return 0


async def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    names = consumer_names(settings.consumers)
    if args.consumer not in names:
        raise OperationError(f"unknown consumer {args.consumer!r}: the consumers are {', '.join(names)}")
    async with database_target(settings) as target:
        conn = await open_connection(target.service_url, settings.connect_timeout_seconds)
        try:
            moved = await replay(conn, args.consumer, args.since, args.force)
        finally:
            await conn.close()
    print(f"moved {moved} checkpoint(s) of {args.consumer}")
    return 0


async def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    if args.action != "list" and not args.ids:
        raise OperationError(f"dead-letters {args.action} needs one or more IDs (see `dead-letters list`)")
    if args.action == "list" and args.ids:
        raise OperationError("dead-letters list takes no IDs (retry ID.. or discard ID.. act on them)")
    async with database_target(settings) as target:
        conn = await open_connection(target.service_url, settings.connect_timeout_seconds)
        try:
            if args.action == "list":
                rows = await dead_letters(conn, None if args.all else "open")
                if args.json:
                    _print_json(rows)
                else:
                    for r in rows:
                        print(
                            f"{r['id']:>6} {r['status']:<9} {r['consumer']}/{r['stream']} row {r['row_id']} "
                            f"{r['error_class']}: {r['error_message'][:120]}"
                        )
                    print(f"{len(rows)} {'' if args.all else 'open '}dead letter(s)")
                return 0
            if args.action == "discard":
                refused = await discard_dead_letters(conn, args.ids)
                for dead_id in args.ids:
                    print(f"dead letter {dead_id}: {refused.get(dead_id, 'discarded')}")
                return 1 if refused else 0
            consumers = build_consumers(settings.consumers)
            failed = 0
            for dead_id in args.ids:
                try:
                    await retry_dead_letter(conn, consumers, dead_id)
                    print(f"retried {dead_id}: ok")
                except OperationError as err:
                    failed += 1
                    print(f"retried {dead_id}: {err}")
                except Exception as err:
                    failed += 1
                    print(f"retried {dead_id}: still failing: {type(err).__name__}: {err}")
            return 1 if failed else 0
        finally:
            await conn.close()


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from floyo_pipeline.demo import demo

    consumers = build_consumers(settings.consumers)
    return await demo(
        settings, consumers, build_sources, build_components(settings, consumers), args.users, args.duration
    )


async def cmd_validate_schema(settings: Settings, args: argparse.Namespace) -> int:
    return await print_drift(settings, build_consumers(settings.consumers))


async def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    return await print_retention(settings, build_consumers(settings.consumers), args.dry_run)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "run": cmd_run,
    "migrate": cmd_migrate,
    "validate-schema": cmd_validate_schema,
    "status": cmd_status,
    "replay": cmd_replay,
    "dead-letters": cmd_dead_letters,
    "healthcheck": cmd_healthcheck,
    "demo": cmd_demo,
    "retention": cmd_retention,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings_from(args)
    except ConfigError as err:
        print(f"floyo-pipeline: {err}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(
        settings.log_format.value,
        settings.log_level,
        sys.stdout if args.command in LOGS_ON_STDOUT else sys.stderr,
    )
    try:
        return asyncio.run(COMMANDS[args.command](settings, args))
    except (ConfigError, CompositionError) as err:
        print(f"floyo-pipeline: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (StartupError, DatabaseUnavailable) as err:
        print(f"floyo-pipeline {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except (OperationError, MigrationError) as err:
        print(f"floyo-pipeline {args.command}: {err}", file=sys.stderr)
        return exits.FAILED
    except KeyboardInterrupt:
        return exits.FORCED
    except asyncpg.PostgresError as err:
        if args.command == "run":
            log.exception("service.crashed")
            return exits.FAILED
        # e.g. permission denied for a table: the role lacks a grant, say which in one line.
        print(
            f"floyo-pipeline {args.command}: the database refused: {describe_database_error(err)}",
            file=sys.stderr,
        )
        return exits.DATABASE_REFUSED
    except Exception:
        if args.command != "run":
            raise
        # The service's every line is JSON, its last one too.
        log.exception("service.crashed")
        return exits.FAILED


if __name__ == "__main__":
    sys.exit(main())
