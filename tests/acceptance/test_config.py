"""Bad configuration: the real CLI exits 2 with one line naming the variable, no traceback, no secret."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.service import ROOT, fresh_env, run_cli

SECRET_PASSWORD = "hunter2-do-not-print"
SECRET_KEY = "service-role-key-do-not-print"


def run_status(env: dict[str, str], *args: str, command: str = "status") -> subprocess.CompletedProcess[str]:
    # A data folder that must stay untouched: a bad config never gets as far as starting Postgres.
    unused = {"FLOYO_DATA_DIR": "/nonexistent/floyo-config-test"}
    return run_cli(command, *args, env=fresh_env(unused, env))


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"FLOYO_HTTP_PORT": "abc"}, "FLOYO_HTTP_PORT"),
        ({"FLOYO_HTTP_PORT": "70000"}, "FLOYO_HTTP_PORT"),
        ({"FLOYO_BATCH_SIZE": "0"}, "FLOYO_BATCH_SIZE"),
        ({"FLOYO_WAKEUP": "carrier-pigeon"}, "FLOYO_WAKEUP"),
        ({"FLOYO_LOG_FORMAT": "xml"}, "FLOYO_LOG_FORMAT"),
        ({"FLOYO_LOG_LEVEL": "verbose"}, "FLOYO_LOG_LEVEL"),
        ({"FLOYO_POLL_INTERVAL_SECONDS": "-1"}, "FLOYO_POLL_INTERVAL_SECONDS"),
        ({"FLOYO_LEASE_TTL_SECONDS": "soon"}, "FLOYO_LEASE_TTL_SECONDS"),
        ({"FLOYO_SHUTDOWN_GRACE_SECONDS": "0"}, "FLOYO_SHUTDOWN_GRACE_SECONDS"),
        ({"FLOYO_CONSUMERS": "no colon here"}, "FLOYO_CONSUMERS"),
        ({"FLOYO_REPLICA_ID": "web#2"}, "FLOYO_REPLICA_ID"),
        ({"DATABASE_URL": f"mysql://root:{SECRET_PASSWORD}@db.example/floyo"}, "DATABASE_URL"),
        (
            {"FLOYO_WAKEUP": "realtime", "SUPABASE_SERVICE_ROLE_KEY": SECRET_KEY},
            "SUPABASE_URL",
        ),
        (
            {"FLOYO_WAKEUP": "realtime", "SUPABASE_URL": "https://abc.supabase.co"},
            "SUPABASE_SERVICE_ROLE_KEY",
        ),
        (
            {
                "SUPABASE_URL": "not a url",
                "SUPABASE_SERVICE_ROLE_KEY": SECRET_KEY,
                "DATABASE_URL": f"postgresql://postgres:{SECRET_PASSWORD}@localhost/x",
            },
            "SUPABASE_URL",
        ),
    ],
)
def test_bad_value_exits_2_with_one_line_naming_the_variable(env: dict[str, str], variable: str) -> None:
    done = run_status(env)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("floyo-pipeline: invalid configuration: ")
    assert variable in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    for secret in (SECRET_PASSWORD, SECRET_KEY):
        assert secret not in done.stdout + done.stderr
    # The message says what is wrong, never the value (short ones like "0" may appear as a bound).
    for value in env.values():
        if len(value) > 3 and value not in ("realtime", "https://abc.supabase.co"):
            assert value not in lines[0], f"the value {value!r} was echoed"


def test_bad_cli_flag_names_its_variable() -> None:
    done = run_status({}, "--batch-size", "0", command="run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "floyo-pipeline: invalid configuration: FLOYO_BATCH_SIZE: Input should be greater than or equal to 1"
    ]


def test_readme_documents_every_setting_and_exit_code() -> None:
    from floyo_pipeline import exits
    from floyo_pipeline.config import Settings, _env_name

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")}
    assert rows == {_env_name(field) for field in Settings.model_fields}
    codes = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(line.split("|")[1]) for line in codes.splitlines() if line[:3].strip("| ").isdigit()}
    assert documented == {v for k, v in vars(exits).items() if k.isupper()}
