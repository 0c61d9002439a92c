"""Progress bars for long CLI commands: one bar per step of a `StepFn` callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class StepBar:
    """One progress bar per step; steps that report done/total fill their bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.name = ""
        self.task: TaskID | None = None
        self.total = 1

    def __call__(self, name: str, done: int = 0, total: int = 0) -> None:
        if name != self.name:
            self.finish()
            self.name, self.total = name, total or 1
            self.task = self.progress.add_task(name, total=self.total)
        if self.task is not None and total:
            self.total = total
            self.progress.update(self.task, completed=done, total=total)

    def finish(self) -> None:
        """Mark the current step complete."""
        if self.task is not None:
            self.progress.update(self.task, completed=self.total)


@contextmanager
def step_bars(console: Console) -> Iterator[StepBar]:
    """A StepBar on `console` for the block; the last step is marked complete at its end."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        bar = StepBar(progress)
        yield bar
        bar.finish()
