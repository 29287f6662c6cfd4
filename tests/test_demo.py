"""README's first command: the demo on its own embedded Postgres shows batches and produces output rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.service import ROOT


def test_demo_runs_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "FLOYO_LOG_FORMAT"}}
    env.update({"FLOYO_DATA_DIR": str(tmp_path / "data"), "FLOYO_HTTP_PORT": "0", "FLOYO_LOG_FORMAT": "json"})
    done = subprocess.run(
        [sys.executable, "-m", "floyo_pipeline", "demo", "--duration", "12"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    names = [e["event"] for e in events]
    assert "embedded.ready" in names and "service.started" in names and names[-1] == "demo.summary"
    committed = [e for e in events if e["event"] == "batch.committed"]
    assert {e["consumer"] for e in committed} >= {"file_patterns", "app_workflows", "performance"}
    summary = events[-1]
    assert summary["events"] > 0 and summary["patterns"] > 0 and summary["suggestions"] > 0
    assert summary["insights"] > 0
    assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
    assert "demo:" in done.stdout.splitlines()[-1]
