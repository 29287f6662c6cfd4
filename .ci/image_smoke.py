#!/usr/bin/env python3
"""Build the Dockerfile without Docker and smoke-test the image, as root on Debian.

A Debian bookworm root (debootstrap, with Debian's Python 3.11 standing in for python:3.11-slim)
replays the Dockerfile instruction by instruction: FROM starts a fresh copy of it, ENV, WORKDIR,
COPY (from this checkout or from the build stage) and RUN run as written, in a chroot, as USER.
Then the final stage, on a read-only root and as its numeric USER, must:
  - refuse to start without DATABASE_URL (one line, exit 2) and on --embedded (not in the image);
  - migrate a fresh database (the migrations come from the package) and run its CMD against it
    until its HEALTHCHECK passes, then drain on its STOPSIGNAL and exit 0, every line JSON;
  - hold a venv of at most 60 MiB.
The database is an embedded Postgres on the host (the dev venv's), reached through a loopback
TCP port. Usage: python3 .ci/image_smoke.py [--keep DIR] (DIR keeps the debootstrap root for next time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What python:3.11-slim has that a minimal Debian root lacks (Debian's python3.11 stands in for it).
PACKAGES = "python3.11,python3-venv,python3-pip,python-is-python3,ca-certificates"
VENV_BUDGET_MIB = 60
MIB = 1024 * 1024


def log(message: str) -> None:
    print(f"image-smoke: {message}", flush=True)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(cmd, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(
            f"image-smoke: failed ({done.returncode}): {shlex.join(cmd)[-300:]}\n{done.stderr or ''}"
        )
    return done


@dataclass
class Stage:
    name: str
    root: Path
    # Docker's default PATH, which the image's ENV PATH=/opt/venv/bin:$PATH extends.
    env: dict[str, str] = field(
        default_factory=lambda: {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    )
    workdir: str = "/"
    user: str = "0:0"
    config: dict[str, str] = field(default_factory=dict)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def base_root(cache: Path) -> Path:
    """A debootstrapped Debian root standing in for python:3.11-slim (made once per cache)."""
    base = cache / "base"
    if (base / "usr" / "bin" / "python3.11").exists():
        return base
    if shutil.which("debootstrap") is None:
        run(["apt-get", "update", "-qq"])
        run(
            ["apt-get", "install", "-y", "-qq", "debootstrap"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    shutil.rmtree(base, ignore_errors=True)
    started = time.monotonic()
    run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(base), MIRROR],
        stdout=subprocess.DEVNULL,
    )
    log(f"debootstrap {SUITE}: {time.monotonic() - started:.0f} s")
    return base


def expand(value: str, env: dict[str, str]) -> str:
    for key, val in env.items():
        value = value.replace(f"${key}", val).replace(f"${{{key}}}", val)
    return value


def parse_env(args: str, env: dict[str, str]) -> None:
    for item in shlex.split(args):
        key, _, value = item.partition("=")
        env[key] = expand(value, env)


def chroot(
    stage: Stage,
    command: list[str],
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
    root: Path | None = None,
) -> list[str]:
    """The argv that runs `command` in the stage's root, as USER, with its ENV and WORKDIR."""
    full_env = {"HOME": "/nonexistent", **stage.env}
    full_env.update(env or {})
    script = f"cd {shlex.quote(stage.workdir)} && exec " + shlex.join(command)
    return [
        "chroot",
        f"--userspec={user or stage.user}",
        str(root or stage.root),
        "/usr/bin/env",
        "-i",
        *(f"{k}={v}" for k, v in full_env.items()),
        "/bin/sh",
        "-c",
        script,
    ]


def replay(work: Path, base: Path) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for word, args in instructions():
        if word == "FROM":
            image, _, name = args.partition(" AS ")
            assert image.strip().startswith("python:3.11"), image
            root = work / name.strip()
            run(["cp", "-a", str(base), str(root)])
            # python:3.11-slim's interpreter answers as `python`, like Debian's with python-is-python3.
            stage = stages[name.strip()] = Stage(name.strip(), root)
            continue
        assert stage is not None, f"{word} before FROM"
        if word == "ENV":
            parse_env(args, stage.env)
        elif word == "WORKDIR":
            stage.workdir = args
            (stage.root / args.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            parts = args.split()
            source_root = ROOT
            if parts[0].startswith("--from="):
                source_root = stages[parts.pop(0).removeprefix("--from=")].root
            *sources, dest = parts
            target = Path(dest) if dest.startswith("/") else Path(stage.workdir) / dest
            for src in sources:
                origin = source_root / src.lstrip("/")
                into = stage.root / str(target).lstrip("/")
                if dest.endswith("/") or len(sources) > 1:
                    into = into / origin.name
                into.parent.mkdir(parents=True, exist_ok=True)
                if origin.is_dir():
                    shutil.copytree(
                        origin,
                        into,
                        symlinks=True,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    )
                else:
                    shutil.copy2(origin, into)
        elif word == "RUN":
            started = time.monotonic()
            # The host's resolver and trust store (a proxy's CA, where there is one): pip reaches PyPI
            # the way a `docker build` on this machine would.
            for path in ("/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt"):
                if Path(path).exists():
                    shutil.copy2(path, stage.root / path.lstrip("/"))
            run(chroot(stage, ["/bin/sh", "-c", args]))
            log(f"[{stage.name}] RUN {args[:70]}... {time.monotonic() - started:.0f} s")
        elif word == "USER":
            stage.user = args
        elif word in {"CMD", "HEALTHCHECK", "STOPSIGNAL", "EXPOSE"}:
            stage.config[word] = args
        else:
            raise SystemExit(f"image-smoke: the Dockerfile uses {word}, which this replay does not know")
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list)
    return [str(v) for v in value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def embedded_postgres(work: Path) -> Iterator[int]:
    """An embedded Postgres on the host, exposed on a loopback TCP port (chroots share the network)."""
    data = work / "pg"
    port = free_port()
    code = f"""
import asyncio, sys
from pathlib import Path
from floyo_pipeline.embedded import start_embedded
pg, server = start_embedded(Path({str(data)!r}))
sock = str(pg.socket_dir) + "/.s.PGSQL.5432"
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    finally:
        w.close()
async def client(r, w):
    ur, uw = await asyncio.open_unix_connection(sock)
    await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)
async def main():
    server_ = await asyncio.start_server(client, "127.0.0.1", {port})
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server_.close()
try:
    asyncio.run(main())
finally:
    server.cleanup()
"""
    proc = subprocess.Popen(
        [str(VENV_PYTHON), "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "embedded Postgres"
        yield port
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(60)


@contextlib.contextmanager
def read_only(stage: Stage, work: Path) -> Iterator[Path]:
    """The stage's root mounted read-only (with /dev and /proc), as `docker run --read-only` would."""
    ro = work / f"{stage.name}-ro"
    ro.mkdir()
    mounted: list[Path] = []
    try:
        run(["mount", "--bind", str(stage.root), str(ro)])
        mounted.append(ro)
        run(["mount", "-o", "remount,bind,ro", str(ro)])
        run(["mount", "--rbind", "/dev", str(ro / "dev")])
        mounted.append(ro / "dev")
        run(["mount", "-t", "proc", "proc", str(ro / "proc")])
        mounted.append(ro / "proc")
        yield ro
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-R", "-l", str(path)], check=False)


def one_line_exit(done: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code and len(lines) == 1 and needle in lines[0], (done.returncode, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr


def smoke(final: Stage, work: Path) -> None:
    cmd = exec_form(final.config["CMD"])
    health = exec_form(final.config["HEALTHCHECK"].split("CMD", 1)[1].strip())
    stop = getattr(signal, final.config.get("STOPSIGNAL", "SIGTERM"))
    venv = final.root / "opt" / "venv"
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    dists = len(list(venv.glob("lib/python*/site-packages/*.dist-info")))
    log(f"runtime venv: {size / MIB:.1f} MiB, {dists} distributions")
    assert size <= VENV_BUDGET_MIB * MIB, f"the runtime venv is {size / MIB:.1f} MiB"
    with read_only(final, work) as ro, embedded_postgres(work) as port:

        def inside(command: list[str], **env: str) -> list[str]:
            return chroot(final, command, env=env, root=ro)

        version = run(inside(["floyo-pipeline", "--version"]), capture_output=True)
        log(f"as {final.user} on a read-only root: {version.stdout.strip()}")
        bare = subprocess.run(inside(cmd), capture_output=True, text=True, timeout=60)
        one_line_exit(bare, 2, "no database configured")
        embedded = subprocess.run(inside([*cmd, "--embedded"]), capture_output=True, text=True, timeout=60)
        one_line_exit(embedded, 2, "embedded extra")
        log("without DATABASE_URL, and with --embedded: one line, exit 2")

        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        migrated = run(inside(["floyo-pipeline", "migrate"], DATABASE_URL=admin), capture_output=True)
        log(f"release command: {migrated.stdout.strip().splitlines()[-1]}")
        run(
            [
                str(VENV_PYTHON),
                "-c",
                f"""
import asyncio, asyncpg
async def main():
    conn = await asyncpg.connect({admin!r})
    await conn.execute("create role floyo_smoke login in role floyo_pipeline_worker")
    await conn.close()
asyncio.run(main())
""",
            ]
        )
        http_port = str(free_port())
        service_env = {
            "DATABASE_URL": f"postgresql://floyo_smoke@127.0.0.1:{port}/postgres",
            "FLOYO_HTTP_PORT": http_port,
        }
        proc = subprocess.Popen(
            inside(cmd, **service_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, proc.communicate()
                probe = subprocess.run(
                    inside(health, FLOYO_HTTP_PORT=http_port), capture_output=True, text=True
                )
                if probe.returncode == 0:
                    log(f"HEALTHCHECK: {probe.stdout.strip()}")
                    break
                assert time.monotonic() < deadline, f"never healthy: {probe.stdout}"
                time.sleep(1)
            # The chroot'd process is a child of `chroot`, which execs: the pid is the service's.
            os.kill(proc.pid, stop)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, (proc.returncode, err[-2000:])
        events = [json.loads(line)["event"] for line in out.splitlines() if line.strip()]
        assert err.strip() == "" or all(json.loads(line) for line in err.splitlines()), err
        assert events[0] == "service.started" and events[-1] == "service.stopped", events
        stopped_by = final.config.get("STOPSIGNAL", "SIGTERM")
        log(
            f"CMD as {final.user}: {len(events)} JSON lines ({events[0]} .. {events[-1]}), "
            f"exit 0 on {stopped_by}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="cache the debootstrap root in this folder")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("image-smoke: needs root (debootstrap, chroot, mount)", file=sys.stderr)
        return 2
    started = time.monotonic()
    cache = args.keep or Path(tempfile.mkdtemp(prefix="floyo-image-cache-"))
    cache.mkdir(parents=True, exist_ok=True)
    base = base_root(cache)
    with tempfile.TemporaryDirectory(prefix="floyo-image-") as tmp:
        work = Path(tmp)
        stages = replay(work, base)
        smoke(list(stages.values())[-1], work)
    if args.keep is None:
        shutil.rmtree(cache, ignore_errors=True)
    log(f"passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
