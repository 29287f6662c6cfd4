"""file_patterns rules on real Postgres through the running engine: exact output rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from consumers.catalog import INTEGRATIONS
from tests.support.analyzers import T0, Ev, consenting_users, dead_letters, insert_rows, process, table_rows
from tests.support.pg import TestDatabase


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_extension_is_lower_cased_text_after_last_dot_of_the_file_name(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    [u] = await consenting_users(admin, 1)
    paths = [
        "/src/App.PY",  # upper case
        "/home/me/my.project/README",  # dots in a folder, none in the file name
        "/work/données/résumé.Md",  # unicode
        "/backups/archive.tar.gz",
        "C:\\Users\\me\\v1.2\\notes",  # windows folder with a dot, no extension
        "/src/tool.py",
        "/src/trailing.",  # empty extension: none
    ]
    await insert_rows(
        admin, [Ev(u, 100 * i, app="vscode" if i % 2 else "terminal", path=p) for i, p in enumerate(paths)]
    )
    await process(database, admin)
    rows = await table_rows(admin, "patterns")
    assert {(r["file_extension"], r["count"], r["last_used"], tuple(r["tools"])) for r in rows} == {
        ("py", 2, at(500), ("terminal", "vscode")),
        ("md", 1, at(200), ("terminal",)),
        ("gz", 1, at(300), ("vscode",)),
    }
    assert len(rows) == 3
    assert {r["user_id"] for r in rows} == {u}
    assert await dead_letters(admin) == []


async def test_accessed_together_under_30_seconds_on_different_paths(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    [u, v] = await consenting_users(admin, 2)
    await insert_rows(
        admin,
        [
            Ev(u, 0, path="/a.py"),
            Ev(u, 29, path="/b.py"),  # 29 s after /a.py: together
            Ev(u, 59, path="/c.py"),  # 30 s after /b.py: not together
            Ev(u, 70, path="/c.py"),  # same path: not together
            Ev(u, 80, path="/a.py", event_type="file_modified"),  # 10 s: c -> a
            Ev(u, 90, path="/b.py"),  # a -> b again
            Ev(v, 91, path="/b.py"),  # another user: no link with u's rows
            Ev(u, 95, app="slack", event_type="app_focused"),  # not a file event: ignored
            Ev(u, 100, path="/README"),  # no extension still links
        ],
    )
    await process(database, admin)
    rows = await table_rows(admin, "relationships")
    got = sorted(
        (r["source"], r["target"], r["weight"], r["last_seen"])
        for r in rows
        if r["relation_type"] == "accessed_together"
    )
    assert got == [
        ("/a.py", "/b.py", 2, at(90)),
        ("/b.py", "/README", 1, at(100)),
        ("/c.py", "/a.py", 1, at(80)),
    ]
    assert {r["user_id"] for r in rows if r["relation_type"] == "accessed_together"} == {u}


async def test_suggestion_from_three_uses_of_a_catalog_extension(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    two, three, many, plain = await consenting_users(admin, 4)
    rows = [Ev(two, 60 * i, path=f"/two/{i}.py") for i in range(2)]
    rows += [Ev(three, 60 * i, path=p) for i, p in enumerate(["/s/a.py", "/s/b.py", "/s/a.py"])]
    rows += [Ev(many, 60 * i, path=f"/m/{i % 5}.PY") for i in range(12)]
    rows += [Ev(plain, 60 * i, path=f"/p/{i}.txt") for i in range(5)]  # not in the catalog
    await insert_rows(admin, rows)
    await process(database, admin, batch_size=4)
    got = {r["user_id"]: r for r in await table_rows(admin, "suggestions")}
    assert set(got) == {three, many}
    py = INTEGRATIONS["py"]
    assert got[three] == {
        "user_id": three,
        "suggestion_key": "file_extension:py",
        "trigger": "file_extension:py",
        "tools_involved": ["python"],
        "suggested_integration": "Dropbox sync of output files",
        "sample_code": py.sample,
        "reasoning": py.reasoning.format(count=3, extension="py"),
        "actual_files": ["/s/a.py", "/s/b.py"],
        "confidence": 0.3,
        "is_dismissed": False,
        "is_applied": False,
        "created_at": at(120),
        "viewed_at": None,
        "withdrawn_at": None,
    }
    assert got[many]["confidence"] == 0.9
    assert got[many]["actual_files"] == ["/m/1.PY", "/m/0.PY", "/m/4.PY"]
    assert got[many]["created_at"] == at(120)
    assert got[many]["reasoning"] == py.reasoning.format(count=12, extension="py")


async def test_dismissed_suggestion_stays_dismissed_while_count_grows(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    [u] = await consenting_users(admin, 1)
    await insert_rows(admin, [Ev(u, 60 * i, path=f"/q/{i}.sql") for i in range(3)])
    await process(database, admin)
    await admin.execute("update public.suggestions set is_dismissed = true where user_id = $1", u)
    before = await table_rows(admin, "suggestions")
    assert [(r["confidence"], r["is_dismissed"]) for r in before] == [(0.3, True)]
    await insert_rows(admin, [Ev(u, 600 + 60 * i, path=f"/q/new{i}.sql") for i in range(5)])
    await process(database, admin)
    assert await table_rows(admin, "suggestions") == before
    [pattern] = await table_rows(admin, "patterns")
    assert pattern["count"] == 8
