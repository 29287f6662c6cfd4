"""How the demo shows itself: a live terminal view (rich) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol, TextIO

from floyo_pipeline.demo.watch import Counts, Finding

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

RICH_MISSING = (
    "demo: the live view needs rich (pip install 'floyo-pipeline[demo]', which dev.py does); "
    "showing plain lines"
)


class View(Protocol):
    def note(self, text: str) -> None: ...
    def finding(self, found: Finding, elapsed: float) -> None: ...
    def update(self, counts: Counts, elapsed: float) -> None: ...
    def close(self, lines: list[str]) -> None: ...


def counts_line(c: Counts) -> str:
    return (
        f"{c.fed:,} events fed, lag {c.lag_rows:,} rows ({c.lag_seconds:.1f} s) -> {c.patterns:,} patterns, "
        f"{c.relationships:,} relationships, {c.suggestions:,} suggestions, {c.insights:,} insights"
    )


def headline(found: Finding) -> str:
    return f"{found.kind} for {found.who}: {found.what} ({found.level})"


class PlainView:
    """One line per finding (and its reason), a progress line when counts change, at most every few
    seconds: readable in a log file or a pipe."""

    def __init__(self, out: TextIO, progress_every: float = 5.0) -> None:
        self.out = out
        self.progress_every = progress_every
        self._last_progress = 0.0
        self._last_line = ""

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        self._print(text)

    def finding(self, found: Finding, elapsed: float) -> None:
        self._print(f"{elapsed:6.1f}s  {headline(found)}")
        self._print(f"         why: {found.why}")

    def update(self, counts: Counts, elapsed: float) -> None:
        line = counts_line(counts)
        if elapsed - self._last_progress >= self.progress_every and line != self._last_line:
            self._last_progress, self._last_line = elapsed, line
            self._print(f"{elapsed:6.1f}s  {line}")

    def close(self, lines: list[str]) -> None:
        for line in lines:
            self._print(line)


class RichView:
    """Findings scroll by above a live panel of running counts and lag."""

    def __init__(self, out: TextIO, title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.title = title
        self.console: Console = Console(file=out)
        self.live: Live = Live(self._panel(Counts(), 0.0), console=self.console, refresh_per_second=4)
        self.live.start()

    def _panel(self, c: Counts, elapsed: float) -> RenderableType:
        from rich.panel import Panel
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("events", f"{c.fed:,} fed · lag {c.lag_rows:,} rows ({c.lag_seconds:.1f} s)")
        grid.add_row(
            "found",
            f"{c.patterns:,} patterns · {c.relationships:,} relationships · "
            f"{c.suggestions:,} suggestions · {c.insights:,} insights",
        )
        return Panel(
            grid, title=f"{self.title} · {elapsed:.0f} s · Ctrl-C stops", title_align="left", expand=False
        )

    def note(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text, style="yellow"))

    def finding(self, found: Finding, elapsed: float) -> None:
        from rich.padding import Padding
        from rich.text import Text

        colour = {"suggestion": "green", "critical": "red", "warning": "yellow"}.get(
            found.kind if found.kind == "suggestion" else found.level, "cyan"
        )
        self.console.print(
            Text.assemble(
                (f"{elapsed:5.1f}s ", "dim"),
                (found.kind, f"bold {colour}"),
                " for ",
                (found.who, "bold"),
                ": ",
                (found.what, colour),
                f" ({found.level})",
            )
        )
        self.console.print(Padding(Text.assemble(("why: ", "dim"), found.why), (0, 0, 0, 7)))

    def update(self, counts: Counts, elapsed: float) -> None:
        self.live.update(self._panel(counts, elapsed))

    def close(self, lines: list[str]) -> None:
        from rich.text import Text

        self.live.stop()
        for line in lines:
            self.console.print(Text(line), soft_wrap=True)


def make_view(out: TextIO, title: str) -> View:
    """The live view when `out` is a terminal and rich is installed; plain lines otherwise."""
    if not out.isatty():
        return PlainView(out)
    try:
        return RichView(out, title)
    except ImportError:
        print(RICH_MISSING, file=sys.stderr, flush=True)
        return PlainView(out)
