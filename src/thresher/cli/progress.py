"""Step-level progress for the long training commands (train, compare, curve, sweep).

Two rich bars on stderr: the runs done so far (with the overall ETA) and the
current run's optimizer steps with its loss, tokens/s and ETA. The train
layer knows nothing of rich: per run it calls `reporter.run(label)` for a
step callback and `reporter.finished()` at the end; `reporter.note(text)`
prints a line above the bars.
"""
from __future__ import annotations

from typing import Callable

from thresher.cli.common import err_console
from thresher.cli.terminal import escape_data


class TrainingProgress:
    """A context manager; disabled, every call is a no-op."""

    def __init__(self, enabled: bool, total_runs: int | None = None, what: str = "runs"):
        self.enabled, self.total_runs, self.what = enabled, total_runs, what
        self.bar = None
        self.runs_task = self.step_task = None
        self.done = 0
        self.label, self.last = "", None  # the current run and its latest step stats

    def __enter__(self) -> "TrainingProgress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                TextColumn("{task.fields[stats]}"), TextColumn("ETA"), TimeRemainingColumn(),
                                console=err_console, transient=True)
            self.bar.__enter__()
            if self.total_runs:
                self.runs_task = self.bar.add_task(self.what, total=self.total_runs, stats="")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def note(self, text: str) -> None:
        if self.enabled:
            err_console.print(f"[dim]{escape_data(text)}[/]")

    def run(self, label: str) -> Callable[[int, int, dict], None]:
        """A step callback for one training run named `label`."""
        if self.bar is None:
            return _ignore
        if self.step_task is not None:
            self.bar.remove_task(self.step_task)
        self.label, self.last = label, None
        self.step_task = self.bar.add_task(escape_data(label), total=None, stats="")

        def on_step(step: int, total: int, stats: dict) -> None:
            self.last = dict(stats, step=step, total=total)
            self.bar.update(self.step_task, total=total, completed=step, stats=_stats_text(stats))
        return on_step

    def finished(self) -> None:
        """The current run (trained or not, e.g. the untuned base) is done."""
        if self.bar is not None:
            if self.step_task is not None:
                self.bar.remove_task(self.step_task)
                self.step_task = None
            self._run_finished()
            # a line per run stays above the bars (and is all a log file gets)
            done = f"[{self.done}/{self.total_runs}] " if self.total_runs else ""
            what = (f"{self.last['step']} steps, {self.last['tokens']:,} tokens, {_stats_text(self.last)}, "
                    f"{self.last['seconds']:.0f} s") if self.last else "evaluated"
            err_console.print(f"[dim]{done}{escape_data(self.label)}: {what}[/]")

    def _run_finished(self) -> None:
        self.done += 1
        if self.runs_task is not None:
            self.bar.update(self.runs_task, completed=self.done)


def _stats_text(stats: dict) -> str:
    seconds = max(stats.get("seconds", 0.0), 1e-9)
    return f"loss {stats.get('loss', float('nan')):.3f}  {stats.get('tokens', 0) / seconds:,.0f} tok/s"


def _ignore(step: int, total: int, stats: dict) -> None:
    return None
