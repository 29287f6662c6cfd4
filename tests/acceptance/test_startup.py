"""Start-up through the real CLI: each way it can fail is one line on stderr and its exit code.

No database configured, a malformed DATABASE_URL, a server that accepts and never answers, a
refused connection, a wrong password, a role without grants or with too much privilege, a busy HTTP
port; and a SIGTERM while the connect hangs ends the process at once, also when it is PID 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from floyo_pipeline import exits
from tests.support.ops import free_port
from tests.support.pg import TestDatabase, with_database
from tests.support.service import ROOT, fresh_env, run_cli

SECRET = "Startup-Secret-0b7c"


def clean_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """A fresh shell's environment with a data folder that must stay unused."""
    return fresh_env({"FLOYO_DATA_DIR": str(tmp_path / "data"), "FLOYO_HTTP_PORT": "0"}, env)


async def acli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`run_cli` off the event loop (the tests' Postgres connections live on it)."""
    return await asyncio.to_thread(run_cli, *args, env=env)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed as JSON (raises on one that is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def one_line(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Assert the command failed with `code` and exactly one line on stderr holding every needle."""
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("floyo-pipeline"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr
    json_lines(done.stdout)  # whatever the service logged before failing is JSON
    return lines[0]


class SilentServer:
    """A TCP server on loopback that accepts connections and never says a word (a hung database)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = threading.Event()
        self.closed = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"postgresql://floyo:{SECRET}@127.0.0.1:{self.port}/postgres"

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.closed.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("command", [["run"], ["status", "--json"], ["migrate"], ["validate-schema"]])
def test_no_database_configured_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    done = run_cli(*command, env=clean_env(tmp_path))
    one_line(done, exits.USAGE, "no database configured", "DATABASE_URL", "FLOYO_EMBEDDED")
    assert done.stdout == ""
    assert not (tmp_path / "data").exists(), "an embedded Postgres was started without being asked for"


def test_database_url_and_embedded_together_is_a_config_error(tmp_path: Path) -> None:
    env = clean_env(tmp_path, DATABASE_URL=f"postgresql://u:{SECRET}@localhost/x", FLOYO_EMBEDDED="true")
    one_line(run_cli("run", env=env), exits.USAGE, "DATABASE_URL", "FLOYO_EMBEDDED")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://svc:{SECRET}@db.example.com:abc/postgres",
        f"postgresql://svc:{SECRET}@db.example.com:70000/postgres",
        f"postgresql://svc:{SECRET}@[::1:5432/postgres",
        f"postgresql://svc:{SECRET}@db.example.com/postgres?sslmode=sometimes",
    ],
)
@pytest.mark.parametrize("command", ["run", "status"])
def test_malformed_database_url_is_one_line_and_exit_2(tmp_path: Path, url: str, command: str) -> None:
    done = run_cli(command, env=clean_env(tmp_path, DATABASE_URL=url))
    line = one_line(done, exits.USAGE, "invalid configuration: DATABASE_URL")
    assert "db.example.com" not in line  # the value is never echoed


@pytest.mark.parametrize("command", [["run"], ["status", "--json"]])
def test_a_database_that_never_answers_fails_within_the_connect_bound(
    tmp_path: Path, silent: SilentServer, command: list[str]
) -> None:
    env = clean_env(tmp_path, DATABASE_URL=silent.url, FLOYO_CONNECT_TIMEOUT_SECONDS="2")
    done = run_cli(*command, env=env, timeout=60)  # asyncpg's own default would wait 60 s
    assert silent.accepted.is_set(), "the command never reached the server"
    one_line(done, exits.DATABASE_UNREACHABLE, "did not answer within 2 s", "FLOYO_CONNECT_TIMEOUT_SECONDS")


def test_a_refused_connection_is_one_line_and_exit_3(tmp_path: Path) -> None:
    url = f"postgresql://floyo:{SECRET}@127.0.0.1:{free_port()}/postgres"
    done = run_cli("run", env=clean_env(tmp_path, DATABASE_URL=url))
    one_line(done, exits.DATABASE_UNREACHABLE, "DATABASE_URL")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _pid_in_own_namespace(pid: int) -> int:
    """The process's pid as seen inside its innermost PID namespace (the last NSpid field)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid line for {pid}")


@pytest.mark.parametrize("as_pid_1", [False, True], ids=["child", "pid-1"])
def test_sigterm_while_the_connect_hangs_ends_the_process_at_once(
    tmp_path: Path, silent: SilentServer, as_pid_1: bool
) -> None:
    # A bound far beyond the test's patience: only the signal can end this run in time.
    env = clean_env(tmp_path, DATABASE_URL=silent.url, FLOYO_CONNECT_TIMEOUT_SECONDS="600")
    command = [sys.executable, "-m", "floyo_pipeline", "run"]
    if as_pid_1:
        # PID 1 of a new PID namespace, as in `docker run` without --init: the kernel drops any
        # signal it has no handler for, so SIGTERM works only if the handler is already there.
        command = ["unshare", "--pid", "--fork", "--kill-child", *command]
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert silent.accepted.wait(60), "the service never tried to connect"
        target = proc.pid
        if as_pid_1:
            deadline = time.monotonic() + 10
            while not _children(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            (target,) = _children(proc.pid)
            assert _pid_in_own_namespace(target) == 1
        os.kill(target, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (proc.returncode, out, err)
    assert err == ""
    names = [e["event"] for e in json_lines(out)]
    assert names == ["service.stopping", "service.stopped"], names


class Roles:
    """Roles a test creates (cluster-wide, so uniquely named); dropped after the test."""

    def __init__(self, superuser: asyncpg.Connection) -> None:
        self.superuser = superuser
        self.made: list[str] = []

    async def create(self, kind: str, options: str) -> str:
        """`create role <a new name> <options>`; the name."""
        name = role_name(kind)
        await self.superuser.execute(f"create role {name} {options}")
        self.made.append(name)
        return name


@pytest.fixture
async def roles(superuser: asyncpg.Connection) -> AsyncIterator[Roles]:
    made = Roles(superuser)
    yield made
    for role in reversed(made.made):
        await superuser.execute(f"drop owned by {role} cascade")
        await superuser.execute(f"drop role if exists {role}")


def role_name(kind: str) -> str:
    return f"floyo_t_{kind}_{uuid.uuid4().hex[:8]}"


def url_as(database: TestDatabase, user: str) -> str:
    return with_database(database.admin_url, database.name, user)


@pytest.mark.parametrize("kind", ["superuser", "bypassrls", "member_of_superuser", "member_of_bypassrls"])
async def test_a_login_role_with_more_privilege_than_the_worker_is_refused(
    tmp_path: Path, database: TestDatabase, roles: Roles, kind: str
) -> None:
    if kind in {"superuser", "bypassrls"}:
        login = await roles.create("login", f"login {kind} in role floyo_pipeline_worker")
        expected = "it has superuser" if kind == "superuser" else "it has BYPASSRLS"
    else:
        power = kind.removeprefix("member_of_")
        # Indirect and without inheritance: it could still `set role` to the powerful one.
        powerful = await roles.create(power, f"nologin {power}")
        middle = await roles.create("middle", f"nologin noinherit in role {powerful}")
        login = await roles.create("login", f"login noinherit in role floyo_pipeline_worker, {middle}")
        expected = f"its role {powerful} has {'superuser' if power == 'superuser' else 'BYPASSRLS'}"
    env = clean_env(tmp_path, DATABASE_URL=url_as(database, login))
    done = await acli(env, "run")
    one_line(done, exits.USAGE, "refusing to run with more privilege than floyo_pipeline_worker", expected)
    assert "service.started" not in done.stdout


async def test_the_superuser_override_still_lets_it_start(
    tmp_path: Path, database: TestDatabase, roles: Roles
) -> None:
    login = await roles.create("login", "login superuser")
    env = clean_env(tmp_path, DATABASE_URL=url_as(database, login), FLOYO_ALLOW_SUPERUSER="true")
    assert await asyncio.to_thread(start_then_stop, env) == 0


def start_then_stop(env: dict[str, str]) -> int:
    """Run the service until it logs service.started, then SIGTERM it; its exit code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "floyo_pipeline", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if json.loads(line)["event"] == "service.started":
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode


async def test_an_unknown_role_is_one_line_and_exit_4(tmp_path: Path, database: TestDatabase) -> None:
    env = clean_env(tmp_path, DATABASE_URL=url_as(database, role_name("nobody")))
    one_line(await acli(env, "run"), exits.DATABASE_REFUSED, "refused the login", "does not exist")


async def test_a_wrong_password_is_one_line_and_exit_4(
    tmp_path: Path, database: TestDatabase, superuser: asyncpg.Connection, roles: Roles
) -> None:
    hba = Path(await superuser.fetchval("show hba_file"))
    if not os.access(hba, os.W_OK):
        pytest.skip("the test database's pg_hba.conf is not on this machine (TEST_DATABASE_URL)")
    login = await roles.create("pw", "login password 'the-right-one' in role floyo_pipeline_worker")
    original = await asyncio.to_thread(hba.read_text)
    # Passwords are checked for this role only (the test cluster trusts local connections).
    rules = f"local all {login} scram-sha-256\nhost all {login} all scram-sha-256\n"
    await asyncio.to_thread(hba.write_text, rules + original)
    await superuser.execute("select pg_reload_conf()")
    try:
        wrong_env = clean_env(tmp_path, DATABASE_URL=url_as(database, f"{login}:{SECRET}"))
        wrong = await acli(wrong_env, "run")
        one_line(wrong, exits.DATABASE_REFUSED, "refused the login", "password authentication failed")
        right = await acli(
            clean_env(tmp_path, DATABASE_URL=url_as(database, f"{login}:the-right-one")), "status"
        )
        assert right.returncode == 0, right.stderr
    finally:
        await asyncio.to_thread(hba.write_text, original)
        await superuser.execute("select pg_reload_conf()")


async def test_a_role_without_the_worker_grants_is_one_line_and_exit_4(
    tmp_path: Path, database: TestDatabase, roles: Roles
) -> None:
    login = await roles.create("bare", "login")
    env = clean_env(tmp_path, DATABASE_URL=url_as(database, login))
    one_line(await acli(env, "run"), exits.DATABASE_REFUSED, "permission denied", "floyo_pipeline_worker")
    one_line(await acli(env, "status"), exits.DATABASE_REFUSED, "permission denied")


async def test_a_busy_http_port_is_one_line_and_exit_5(tmp_path: Path, database: TestDatabase) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        env = clean_env(
            tmp_path, DATABASE_URL=database.service_url, FLOYO_HTTP_HOST="127.0.0.1", FLOYO_HTTP_PORT=port
        )
        done = await acli(env, "run")
    one_line(done, exits.HTTP_PORT_UNAVAILABLE, f"127.0.0.1:{port}", "FLOYO_HTTP_PORT", "in use")
    assert "service.started" not in done.stdout
