"""A rich progress bar counting samples, silent when output is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

__all__ = ["progress_bar"]


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:  # noqa: D401 - rich API
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} samples/s", style="progress.data.speed")


class _Counter:
    def __init__(self, progress: Progress | None, task) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool | None = None) -> Iterator[_Counter]:
    """Yield a counter with ``advance(n_samples)``.

    ``enabled=None`` shows the bar only when stderr is a terminal; ``False`` never.
    """
    console = Console(file=sys.stderr)
    if enabled is None:
        enabled = console.is_terminal
    if not enabled:
        yield _Counter(None, None)
        return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        _RateColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield _Counter(progress, task)
