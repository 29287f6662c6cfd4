"""`floyo-pipeline COMMAND --help` is readable: each command shows only the flags it uses, with
metavars a person understands, and says what its arguments are."""

from __future__ import annotations

import contextlib
import io

import pytest

from floyo_pipeline.cli import main

SERVICE_ONLY = (
    "--wakeup",
    "--batch-size",
    "--poll-interval",
    "--lease-ttl",
    "--shutdown-grace",
    "--replica-id",
)
COMMANDS = (
    "run",
    "migrate",
    "validate-schema",
    "status",
    "replay",
    "dead-letters",
    "healthcheck",
    "demo",
    "retention",
)


def help_of(*command: str) -> str:
    out = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as env,
        contextlib.redirect_stdout(out),
        pytest.raises(SystemExit) as done,
    ):
        env.setenv("COLUMNS", "100")
        env.delenv("FLOYO_CONSUMERS", raising=False)
        main([*command, "--help"])
    assert done.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("command", COMMANDS)
def test_no_internal_names_in_any_help(command: str) -> None:
    text = help_of(command)
    assert "SETTING_" not in text and "setting_" not in text


@pytest.mark.parametrize("command", ["healthcheck", "retention", "status", "migrate", "validate-schema"])
def test_operator_commands_list_no_service_settings(command: str) -> None:
    text = help_of(command)
    for flag in SERVICE_ONLY:
        assert flag not in text, f"{command} --help offers {flag}"


def test_healthcheck_takes_the_http_address_only() -> None:
    text = help_of("healthcheck")
    assert "--http-port PORT" in text and "--http-host ADDRESS" in text
    assert "--data-dir" not in text


def test_run_lists_every_setting_with_readable_metavars() -> None:
    text = help_of("run")
    for flag in (
        *SERVICE_ONLY,
        "--http-port PORT",
        "--poll-interval SECONDS",
        "--data-dir DIR",
        "--consumers",
    ):
        assert flag in text


def test_replay_names_the_valid_consumers() -> None:
    text = " ".join(help_of("replay").split())
    assert "--consumer NAME the consumer to replay: file_patterns, app_workflows, performance" in text


def test_dead_letters_explains_its_arguments() -> None:
    text = " ".join(help_of("dead-letters").split())
    assert "list the open ones (the default)" in text
    assert "ID dead letter ids, as `list` shows them" in text


@pytest.mark.parametrize("args", [["--users", "0"], ["--duration", "-5"], ["--users", "many"]])
def test_demo_refuses_a_count_or_duration_that_is_not_positive(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["demo", *args])
    assert done.value.code == 2
    assert f"argument {args[0]}" in capsys.readouterr().err
