"""README's first command: the demo shows the product (who got which suggestion or insight and why,
running counts and lag, a summary), in a pipe and in a terminal, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from floyo_pipeline.demo.view import RICH_MISSING, PlainView, make_view
from tests.support.service import ROOT, fresh_env, run_cli

SUMMARY = re.compile(
    r"demo: (?P<events>\d+) events from (?P<users>\d+) users became (?P<patterns>\d+) patterns, "
    r"(?P<relationships>\d+) relationships, (?P<suggestions>\d+) suggestions and (?P<insights>\d+) insights "
    r"\((?P<user_insights>\d+) about the users, (?P<global_insights>\d+) global\)"
)
FINDING = re.compile(
    r"^\s*\d+\.\ds\s+(suggestion|insight) for (?P<who>.+?): (?P<what>.+) \((?P<level>[^)]+)\)$"
)
PROGRESS = re.compile(r"^\s*\d+\.\ds\s+\d+ events fed, lag \d+ rows \([\d.]+ s\) -> \d+ patterns")
EOF = b"\x00EOF"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def demo_env(data: Path) -> dict[str, str]:
    return fresh_env(FLOYO_DATA_DIR=str(data), FLOYO_HTTP_PORT="0")


def run_demo(data: Path, seconds: int) -> subprocess.CompletedProcess[str]:
    return run_cli("demo", "--duration", str(seconds), env=demo_env(data), timeout=300)


def summary_of(lines: list[str]) -> dict[str, int]:
    found = SUMMARY.match(lines[-1])
    assert found, lines[-1]
    return {k: int(v) for k, v in found.groupdict().items()}


def test_demo_in_a_pipe_shows_findings_counts_and_a_summary_and_keeps_its_week(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run_demo(data, 25)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("demo: 5 people (ana (data engineer), ben (web developer)")
    assert "embedded Postgres" in lines[0]
    summary = summary_of(lines)
    # Every line says something: a finding and its reason, a progress line, the header or the end.
    findings = [FINDING.match(line) for line in lines]
    for i, line in enumerate(lines[1:-2], start=1):
        if findings[i]:
            assert lines[i + 1].strip().startswith("why: ") and len(lines[i + 1]) > 20, lines[i + 1]
        else:
            assert PROGRESS.match(line) or line.strip().startswith("why: "), f"unexpected line {line!r}"
    assert lines[-2] == f"service log: {data / 'demo.log'}"
    suggestions = [m for m in findings if m and m[1] == "suggestion"]
    insights = [m for m in findings if m and m[1] == "insight"]
    assert len(suggestions) == summary["suggestions"] > 0
    assert len(insights) == summary["insights"] > 0
    assert ("ana (data engineer)", "Dropbox sync of output files") in [
        (m["who"], m["what"]) for m in suggestions
    ]
    assert summary["global_insights"] == sum(m["who"] == "the team (global)" for m in insights) > 0
    assert any(PROGRESS.match(line) for line in lines)
    assert summary["users"] == 5 and summary["events"] > 0 and summary["patterns"] > 0
    # The service's own log lines are in the log file, not in the view.
    logged = [json.loads(line) for line in (data / "demo.log").read_text().splitlines()]
    committed = {e["consumer"] for e in logged if e["event"] == "batch.committed"}
    assert committed >= {"file_patterns", "app_workflows", "performance"}

    # The demo's week is recent: the nightly retention would delete none of it.
    kept = run_cli("retention", "--dry-run", "--embedded", env=demo_env(data))
    assert kept.returncode == 0, kept.stderr
    would = re.findall(r"would delete\s+(\d+) row\(s\) from (\w+)", kept.stdout)
    assert len(would) >= 7 and {n for n, _ in would} == {"0"}, kept.stdout

    # A second run on the same database counts only its own insights, not the first run's global ones.
    again = run_demo(data, 8)
    assert again.returncode == 0, again.stderr[-2000:]
    again_lines = again.stdout.splitlines()
    second = summary_of(again_lines)
    shown = [m for m in map(FINDING.match, again_lines) if m and m[1] == "insight"]
    assert second["insights"] == len(shown)
    assert second["global_insights"] == sum(m["who"] == "the team (global)" for m in shown)


def _shows(screen: bytes, text: str) -> bool:
    return text in ANSI.sub("", screen.decode(errors="replace"))


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read(master: int, until: float) -> bytes:
    ready, _, _ = select.select([master], [], [], max(0.0, min(0.5, until - time.monotonic())))
    if not ready:
        return b""
    try:
        return os.read(master, 65536) or EOF
    except OSError:  # the other end closed (Linux reports EIO)
        return EOF


def test_demo_in_a_terminal_shows_a_live_view_and_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    """README's command, `python3 dev.py demo`, in a pseudo-terminal; Ctrl-C as typed, well before
    --duration would stop it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "dev.py"), "demo", "--duration", "900"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**demo_env(tmp_path / "data"), "TERM": "xterm-256color"},
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=_take_terminal,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 240
    try:
        while not _shows(screen, "insight for ") and time.monotonic() < deadline and proc.poll() is None:
            screen += _read(master, deadline)
        assert _shows(screen, "insight for "), screen[-3000:].decode(errors="replace")
        os.write(master, b"\x03")  # the terminal turns it into SIGINT for the foreground process group
        deadline = time.monotonic() + 120
        while not screen.endswith(EOF) and time.monotonic() < deadline:
            screen += _read(master, deadline)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = screen.decode(errors="replace")
    plain = ANSI.sub("", text).replace("\r", "")
    assert code == 0, plain[-3000:]
    assert "Traceback" not in plain and "KeyboardInterrupt" not in plain, plain[-3000:]
    assert "\x1b[?25l" in text  # the live view hid the cursor while it redrew its panel
    assert "floyo-pipeline demo ·" in plain and "Ctrl-C stops" in plain
    assert re.search(r"events\s+\d+ fed · lag \d+ rows", plain)
    assert re.search(r"suggestion for \w+ \([a-z ]+\): ", plain)
    assert "why: " in plain
    last = [line for line in plain.splitlines() if line.startswith("demo: ")][-1]
    assert re.match(r"demo: \d+ events from 5 users became \d+ patterns", last), last


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_rich_a_terminal_gets_plain_lines_and_one_line_saying_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)  # as if rich were not installed
    assert isinstance(make_view(_Terminal(), "demo"), PlainView)
    assert capsys.readouterr().err.splitlines() == [RICH_MISSING]
    assert "pip install 'floyo-pipeline[demo]'" in RICH_MISSING
