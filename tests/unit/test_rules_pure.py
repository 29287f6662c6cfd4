"""The analyzers' rules as pure functions: no database, no engine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from consumers.app_workflows import AppState, analyze_apps
from consumers.file_patterns import FileState, analyze_files, extension_of
from consumers.privacy import Privacy, gate
from floyo_pipeline.api import TelemetryEvent

T0 = datetime(2026, 3, 1, tzinfo=UTC)
U = uuid.UUID("00000000-0000-4000-8000-000000000001")
_ids = iter(range(1, 1_000_000))


def ev(
    at: float, app: str = "vscode", path: str | None = None, event_type: str = "file_opened"
) -> TelemetryEvent:
    return TelemetryEvent(
        id=next(_ids),
        pipeline_partition=1,
        user_id=U,
        occurred_at=T0 + timedelta(seconds=at),
        app_id=app,
        event_type=event_type,
        file_path=path,
        created_at=T0,
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b.py", "py"),
        ("/a/B.PY", "py"),
        ("/my.folder/README", None),
        ("C:\\v1.2\\notes", None),
        ("C:\\v1.2\\notes.Txt", "txt"),
        ("/x/archive.tar.gz", "gz"),
        ("/x/.bashrc", "bashrc"),
        ("/x/trailing.", None),
        ("/données/résumé.md", "md"),
        ("/x/файл.ПИ", "пи"),
        ("plain", None),
    ],
)
def test_extension_of(path: str, expected: str | None) -> None:
    assert extension_of(path) == expected


def test_accessed_together_boundary_and_state_from_previous_batch() -> None:
    before = {U: FileState("/prev.py", T0 - timedelta(seconds=29), {"py": ["/prev.py"]})}
    fx = analyze_files([ev(0, path="/a.py"), ev(30, path="/b.py"), ev(31, path="/a.py")], before, {})
    assert {k: v.weight for k, v in fx.together.items()} == {
        (U, "/prev.py", "/a.py"): 1,
        (U, "/b.py", "/a.py"): 1,
    }
    assert fx.states[U].recent_paths == {"py": ["/a.py", "/b.py", "/prev.py"]}
    assert before[U].recent_paths == {"py": ["/prev.py"]}  # inputs are not mutated


def test_suggestion_threshold_counts_stored_uses() -> None:
    fx = analyze_files([ev(0, path="/a.py")], {}, {(U, "py"): 1})
    assert fx.suggestions == []
    fx = analyze_files([ev(0, path="/a.py"), ev(5, path="/b.csv")], {}, {(U, "py"): 2})
    [made] = fx.suggestions
    assert (made.suggestion_key, made.confidence, made.created_at) == ("file_extension:py", 0.3, T0)
    fx = analyze_files([ev(0, path="/a.py")], {}, {(U, "py"): 40})
    assert fx.suggestions[0].confidence == 0.9


def test_app_transitions_and_state_from_previous_batch() -> None:
    before = {U: AppState("vscode", T0 - timedelta(seconds=10))}
    rows = [ev(0, "slack"), ev(299, "vscode"), ev(300, "slack"), ev(900, "vscode"), ev(901, "vscode")]
    fx = analyze_apps(rows, before, set())
    assert {k: v.weight for k, v in fx.transitions.items()} == {
        (U, "vscode", "slack"): 2,
        (U, "slack", "vscode"): 1,
    }
    assert fx.suggestions == []  # two switches are no habit
    state = fx.states[U]
    assert (state.last_app, state.last_at) == ("vscode", T0 + timedelta(seconds=901))
    assert state.habits.at == T0 + timedelta(seconds=300)
    # The first switch is 300 s old, with a week's half-life.
    assert state.habits.pairs == {"vscode->slack": pytest.approx(0.5 ** (300 / (7 * 86400)) + 1.0)}
    assert before[U].habits.pairs == {}  # inputs are not mutated


def test_privacy_gate_reasons() -> None:
    ok = Privacy(True, frozenset({"vscode"}), frozenset({"file_deleted"}))
    rows = [ev(0), ev(1, "slack"), ev(2, event_type="file_deleted")]
    kept, skipped = gate(rows, {U: ok})
    assert kept == rows[:1]
    assert skipped == {"skipped_app": 1, "skipped_signal": 1}
    assert gate(rows, {}) == ([], {"skipped_consent": 3})
