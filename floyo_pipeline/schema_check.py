"""`floyo-pipeline validate-schema`: compare the database with the schema the code expects.

The expected tables, columns, Postgres types and nullability come from the row models in
`floyo_pipeline.rows` (one source, no second hand-written copy); the policies from `POLICIES` below;
the streams' publication membership and NOTIFY triggers from `STREAM_MODELS`; the private tables
are the engine's bookkeeping (`ENGINE_TABLES`) and those the consumers declare (`Consumer.tables`).
Privileges are checked against Supabase's defaults (which grant ALL to the API roles): anon holds
nothing, authenticated no more than `AUTHENTICATED_PRIVILEGES`, neither touches a sequence,
service_role reads the streams.
Two checks of Supabase's database advisor run too: functions without a fixed search_path and foreign
keys without an index.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg

from floyo_pipeline.api import Consumer
from floyo_pipeline.config import Settings
from floyo_pipeline.connections import open_connection
from floyo_pipeline.queries import Q
from floyo_pipeline.rows import STREAM_MODELS, TABLE_MODELS, TableRow
from floyo_pipeline.storage import declared_tables
from floyo_pipeline.target import database_target

PUBLICATION = "supabase_realtime"
PRIVATE_SCHEMA = "floyo_pipeline"
# The engine's bookkeeping (streams, checkpoints, leases, dead letters, scheduled jobs and their locks)
# and its copy of the users' privacy settings in the private schema, which the API roles never reach;
# the consumers' private tables join it.
ENGINE_TABLES = (
    "streams",
    "checkpoints",
    "replicas",
    "dead_letters",
    "job_runs",
    "locks",
    "user_settings",
    "user_apps",
    "user_signals_off",
)
NOTIFY_FUNCTION = "floyo_pipeline.notify_stream_insert"
USER_ROLES = ("anon", "authenticated")
# Roles that reach the tables through Supabase's API, and the stream columns only the database writes.
API_ROLES = ("anon", "authenticated", "service_role")
PIPELINE_COLUMNS = ("id", "created_at", "pipeline_txid")
WORKER_ROLE = "floyo_pipeline_worker"
SERVICE_ROLE = "service_role"
# The outputs the app watches through Realtime (besides the streams, which wake the pipeline).
LIVE_TABLES = ("insights", "suggestions")
# Schemas whose functions and foreign keys the advisor checks (ours; Supabase's own are exempt).
ADVISOR_SCHEMAS = ("public", PRIVATE_SCHEMA)
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
_READ_WRITE = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
# The most `authenticated` may hold on each table (RLS then limits the rows); SELECT is required on
# the live tables, or Realtime sends the app "Error 401: Unauthorized" instead of its rows.
AUTHENTICATED_PRIVILEGES: dict[str, frozenset[str]] = {
    "telemetry_events": frozenset({"SELECT", "INSERT"}),
    "metrics_log": frozenset(),
    "privacy_prefs": _READ_WRITE,
    "app_allowlist": _READ_WRITE,
    "signal_toggles": _READ_WRITE,
    "patterns": frozenset({"SELECT"}),
    "relationships": frozenset({"SELECT"}),
    "insights": frozenset({"SELECT"}),
    "suggestions": frozenset({"SELECT"}),  # plus UPDATE of three columns, a column grant
}

# Policy kinds: name template, command, role. POLICIES lists the kinds each public table has.
POLICY_KINDS: dict[str, tuple[str, str, str]] = {
    "select_own": ("{table}_select_own", "SELECT", "authenticated"),
    "insert_own": ("{table}_insert_own", "INSERT", "authenticated"),
    "all_own": ("{table}_own", "ALL", "authenticated"),
    "update_own_flags": ("{table}_update_own_flags", "UPDATE", "authenticated"),
    "worker_all": ("pipeline_worker_all", "ALL", WORKER_ROLE),
    "worker_read": ("pipeline_worker_read", "SELECT", WORKER_ROLE),
}
POLICIES: dict[str, tuple[str, ...]] = {
    "telemetry_events": ("select_own", "insert_own", "worker_all"),
    "metrics_log": ("worker_all",),
    "privacy_prefs": ("all_own", "worker_read"),
    "app_allowlist": ("all_own", "worker_read"),
    "signal_toggles": ("all_own", "worker_read"),
    "patterns": ("select_own", "worker_all"),
    "relationships": ("select_own", "worker_all"),
    "insights": ("select_own", "worker_all"),
    "suggestions": ("select_own", "update_own_flags", "worker_all"),
}

_PG_TYPES: dict[Any, str] = {
    bool: "boolean",
    int: "bigint",
    float: "double precision",
    str: "text",
    datetime: "timestamp with time zone",
    date: "date",
    UUID: "uuid",
    dict: "jsonb",
    Any: "jsonb",
}


@dataclass(frozen=True)
class Column:
    pg_type: str
    nullable: bool

    def __str__(self) -> str:
        return f"{self.pg_type} {'null' if self.nullable else 'not null'}"


@dataclass(frozen=True)
class Policy:
    name: str
    cmd: str
    role: str


def pg_type(annotation: Any) -> tuple[str, bool]:
    """The Postgres type of a model field's annotation, and whether it is nullable."""
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"cannot map {annotation!r} to one Postgres type")
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin is Literal:
        return pg_type(type(typing.get_args(annotation)[0]))[0], nullable
    if origin is list:
        return pg_type(typing.get_args(annotation)[0])[0] + "[]", nullable
    if origin is dict:
        return "jsonb", nullable
    if annotation in _PG_TYPES:
        return _PG_TYPES[annotation], nullable
    raise TypeError(f"cannot map {annotation!r} to a Postgres type")


def expected_columns(model: type[TableRow]) -> dict[str, Column]:
    columns: dict[str, Column] = {}
    for name, field in model.model_fields.items():
        if name in model.__computed_fields__:
            continue
        inferred, nullable = pg_type(field.annotation)
        columns[name] = Column(model.__pg_types__.get(name, inferred), nullable)
    for name, declared in model.__db_only_columns__.items():
        columns[name] = Column(model.__pg_types__.get(name, declared), False)
    return columns


def expected_policies(table: str) -> list[Policy]:
    out = []
    for kind in POLICIES.get(table, ()):
        template, cmd, role = POLICY_KINDS[kind]
        out.append(Policy(template.format(table=table), cmd, role))
    return out


async def find_drift(
    conn: asyncpg.Connection, consumers: Sequence[Consumer]
) -> tuple[list[str], dict[str, int]]:
    """Every difference from the expected schema (with the private tables `consumers` declare), one
    line each, and counts of what was checked."""
    drift: list[str] = []
    checked = {
        "tables": 0,
        "columns": 0,
        "policies": 0,
        "privileges": 0,
        "streams": 0,
        "live tables": 0,
        "private tables": 0,
        "advisor checks": 0,
    }

    tables = {r["table_name"]: r["rls"] for r in await conn.fetch(Q["schema_check_public_tables"])}
    actual_columns: dict[str, dict[str, Column]] = {}
    for r in await conn.fetch(Q["schema_check_columns"]):
        actual_columns.setdefault(r["table_name"], {})[r["column_name"]] = Column(r["pg_type"], r["nullable"])

    for table, model in TABLE_MODELS.items():
        checked["tables"] += 1
        if table not in tables:
            drift.append(f"public.{table}: table missing")
            continue
        have = actual_columns.get(table, {})
        for name, want in expected_columns(model).items():
            checked["columns"] += 1
            got = have.get(name)
            if got is None:
                drift.append(f"public.{table}.{name}: column missing (expected {want})")
            elif got.pg_type != want.pg_type:
                drift.append(f"public.{table}.{name}: type is {got.pg_type}, expected {want.pg_type}")
            elif got.nullable != want.nullable:
                drift.append(f"public.{table}.{name}: is {got}, expected {want}")
        for name in sorted(set(have) - set(expected_columns(model))):
            drift.append(f"public.{table}.{name}: unexpected column ({have[name]}), not in {model.__name__}")

    for table, rls in tables.items():
        if not rls:
            drift.append(f"public.{table}: row level security is disabled")

    actual_policies: dict[str, dict[str, Policy]] = {}
    for r in await conn.fetch(Q["schema_check_policies"]):
        roles = ",".join(sorted(r["roles"]))
        actual_policies.setdefault(r["table_name"], {})[r["policy_name"]] = Policy(
            r["policy_name"], r["cmd"], roles
        )
    for table in TABLE_MODELS:
        if table not in tables:
            continue
        have_policies = actual_policies.get(table, {})
        wanted = expected_policies(table)
        for policy in wanted:
            checked["policies"] += 1
            got_policy = have_policies.get(policy.name)
            if got_policy is None:
                drift.append(f"public.{table}: policy {policy.name} missing ({policy.cmd} to {policy.role})")
            elif (got_policy.cmd, got_policy.role) != (policy.cmd, policy.role):
                drift.append(
                    f"public.{table}: policy {policy.name} is {got_policy.cmd} to {got_policy.role}, "
                    f"expected {policy.cmd} to {policy.role}"
                )
        for name in sorted(set(have_policies) - {p.name for p in wanted}):
            extra = have_policies[name]
            drift.append(f"public.{table}: unexpected policy {name} ({extra.cmd} to {extra.role})")

    for table in await conn.fetch(Q["schema_check_anon_table_privileges"]):
        if table["table_name"] in TABLE_MODELS:
            drift.append(f"public.{table['table_name']}: anon has table privileges")

    drift += await _privilege_drift(conn, set(tables), checked)
    drift += await _stream_drift(conn, set(tables), checked)
    declared = [t.bare_name for t in declared_tables(consumers) if t.schema == PRIVATE_SCHEMA]
    private = ENGINE_TABLES + tuple(declared)
    drift += await _private_schema_drift(conn, private, checked)
    drift += await _advisor_drift(conn, checked)
    return drift, checked


async def _privilege_drift(conn: asyncpg.Connection, tables: set[str], checked: dict[str, int]) -> list[str]:
    drift: list[str] = []
    held: dict[str, set[str]] = {}
    for r in await conn.fetch(Q["schema_check_table_privileges"], "authenticated", list(TABLE_PRIVILEGES)):
        held.setdefault(r["table_name"], set()).add(r["privilege"])
    for table, allowed in AUTHENTICATED_PRIVILEGES.items():
        if table not in tables:
            continue
        checked["privileges"] += 1
        extra = sorted(held.get(table, set()) - allowed)
        if extra:
            most = ", ".join(sorted(allowed)) or "nothing"
            drift.append(f"public.{table}: authenticated has {', '.join(extra)} (expected at most {most})")
        if table in LIVE_TABLES and "SELECT" not in held.get(table, set()):
            drift.append(f"public.{table}: authenticated cannot SELECT (the app's live updates need it)")
    readable = {
        r["table_name"]
        for r in await conn.fetch(Q["schema_check_table_privileges"], SERVICE_ROLE, ["SELECT"])
    }
    for stream in STREAM_MODELS:
        if stream in tables:
            checked["privileges"] += 1
            if stream not in readable:
                drift.append(f"public.{stream}: {SERVICE_ROLE} cannot SELECT (Realtime hints need it)")
    for r in await conn.fetch(Q["schema_check_api_sequence_privileges"], list(USER_ROLES)):
        if r["table_name"] in TABLE_MODELS:
            drift.append(f"public.{r['sequence_name']}: {r['role_name']} has sequence privileges")
    checked["privileges"] += 1
    return drift


async def _advisor_drift(conn: asyncpg.Connection, checked: dict[str, int]) -> list[str]:
    """Supabase's database advisor, the checks that concern what the migrations create."""
    drift: list[str] = []
    for r in await conn.fetch(Q["schema_check_mutable_search_path"], list(ADVISOR_SCHEMAS)):
        drift.append(
            f"function {r['schema_name']}.{r['function_name']}({r['arguments']}): no fixed search_path "
            "(advisor: function_search_path_mutable)"
        )
    for r in await conn.fetch(Q["schema_check_unindexed_foreign_keys"], list(ADVISOR_SCHEMAS)):
        drift.append(
            f"{r['schema_name']}.{r['table_name']}: foreign key {r['constraint_name']} has no index "
            "(advisor: unindexed_foreign_keys)"
        )
    checked["advisor checks"] += 2
    return drift


async def _stream_drift(conn: asyncpg.Connection, tables: set[str], checked: dict[str, int]) -> list[str]:
    drift: list[str] = []
    published: set[str] = set()
    if await conn.fetchval(Q["schema_check_publication_exists"], PUBLICATION):
        rows = await conn.fetch(Q["schema_check_publication_tables"], PUBLICATION)
        published = {r["table_name"] for r in rows}
    else:
        drift.append(f"publication {PUBLICATION} missing")
    triggers = {(r["table_name"], r["trigger_name"]): r for r in await conn.fetch(Q["schema_check_triggers"])}
    for stream in STREAM_MODELS:
        if stream not in tables:
            continue
        checked["streams"] += 1
        if stream not in published:
            drift.append(f"public.{stream}: not in publication {PUBLICATION}")
        name = f"{stream}_notify"
        trigger = triggers.get((stream, name))
        if trigger is None:
            drift.append(f"public.{stream}: trigger {name} missing")
            continue
        if not trigger["enabled"]:
            drift.append(f"public.{stream}: trigger {name} is disabled")
        if not (trigger["per_statement"] and trigger["after"] and trigger["on_insert"]):
            drift.append(f"public.{stream}: trigger {name} is not AFTER INSERT FOR EACH STATEMENT")
        function = trigger["function_name"]
        if function != NOTIFY_FUNCTION:
            drift.append(f"public.{stream}: trigger {name} calls {function}, expected {NOTIFY_FUNCTION}")
    writable = await conn.fetch(
        Q["schema_check_client_writable_columns"],
        list(STREAM_MODELS),
        list(PIPELINE_COLUMNS),
        list(API_ROLES),
    )
    for r in writable:
        drift.append(
            f"public.{r['table_name']}.{r['column_name']}: {r['role_name']} may {r['privilege']} it "
            "(only the database writes the pipeline's columns)"
        )
    for table in LIVE_TABLES:
        if table in tables:
            checked["live tables"] += 1
            if table not in published:
                drift.append(f"public.{table}: not in publication {PUBLICATION} (the app's live updates)")
    return drift


async def _private_schema_drift(
    conn: asyncpg.Connection, private: Sequence[str], checked: dict[str, int]
) -> list[str]:
    drift: list[str] = []
    have = {r["table_name"] for r in await conn.fetch(Q["schema_check_private_tables"], PRIVATE_SCHEMA)}
    for table in private:
        checked["private tables"] += 1
        if table not in have:
            drift.append(f"{PRIVATE_SCHEMA}.{table}: table missing")
    exposed = await conn.fetch(Q["schema_check_private_schema_exposed"], PRIVATE_SCHEMA, list(USER_ROLES))
    for r in exposed:
        drift.append(f"schema {PRIVATE_SCHEMA}: usable by {r['role_name']}")
    return drift


async def print_drift(settings: Settings, consumers: Sequence[Consumer]) -> int:
    """`floyo-pipeline validate-schema`: print each difference (exit 1), or what was checked."""
    async with database_target(settings) as target:
        conn = await open_connection(target.admin_url, settings.connect_timeout_seconds)
        try:
            drift, checked = await find_drift(conn, consumers)
        finally:
            await conn.close()
    for line in drift:
        print(f"drift: {line}")
    if drift:
        print(f"{len(drift)} difference(s) from the expected schema")
        return 1
    print("schema OK: " + ", ".join(f"{n} {what}" for what, n in checked.items()) + " checked")
    return 0
