"""Small helpers shared by the recipes: one-line errors, progress lines, the rollout's progress bar and summary."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any


def say(msg: str) -> None:
    """A progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def fail(command: str, msg: str, *, code: int = 2) -> int:
    """Print ``automem <command>: <msg>`` on stderr and return ``code`` (2: bad input, nothing was done)."""
    print(f"automem {command}: {msg}", file=sys.stderr, flush=True)
    return code


class Reporter:
    """A rich progress bar in a terminal; a log line every ~10 s otherwise. Feed it ``Progress`` snapshots."""

    def __init__(self, quiet: bool = False) -> None:
        self.tty = sys.stderr.isatty() and not quiet
        self.last_line = 0.0
        self.bar: Any = None
        self.task: Any = None
        self.started = False

    def __enter__(self) -> Reporter:
        return self

    def update(self, p: Any) -> None:
        self.started = True
        info = (
            f"failed {p.failed} · running {p.running} · {p.steps_per_s:.1f} steps/s · "
            f"{p.tokens_per_s:.0f} tok/s · progression {p.mean_progression:.3f}"
        )
        if self.tty:
            if self.bar is None:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self.bar = Progress(
                    TextColumn("[bold]episodes"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(),
                    transient=False,
                )
                self.bar.__enter__()
                self.task = self.bar.add_task("rollout", total=p.total, info="starting")
            self.bar.update(self.task, completed=p.done + p.failed, info=info)
            return
        if time.monotonic() - self.last_line > 10 or p.done + p.failed == p.total:
            self.last_line = time.monotonic()
            say(f"episodes {p.done + p.failed}/{p.total} · {info}")

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def print_rollout_summary(result: Any) -> None:
    """The table a rollout ends with (stdout), failures and the next commands (stderr)."""
    from rich.console import Console
    from rich.table import Table

    wall = max(result.wall_seconds, 1e-9)
    table = Table(title=f"rollout {result.run_id}", show_header=False)
    skipped = f" (+{result.skipped} before resume)" if result.skipped else ""
    for k, v in [
        ("episodes committed", f"{result.committed}{skipped}"),
        ("episodes failed", str(len(result.failed))),
        ("attempts / runner restarts", f"{result.attempts} / {result.runner_restarts}"),
        ("steps", str(result.steps)),
        ("mean progression", f"{result.mean_progression:.3f}"),
        ("steps/s", f"{result.steps / wall:.2f}"),
        ("tokens/s", f"{result.tokens / wall:.0f}"),
        ("wall time", f"{wall:.1f} s"),
        ("data", f"{result.out}/tables/<table>/{result.run_id}/"),
    ]:
        table.add_row(k, v)
    Console(stderr=False).print(table)
    for eid, err in list(result.failed.items())[:5]:
        say(f"failed {eid}: {err}")
    print(f'query it: automem query {result.out} "SELECT env_id, avg(progression) FROM episodes GROUP BY 1"')
    if result.endpoint_spec == "embedded":
        say_embedded_still_running(result.endpoint)


def say_embedded_still_running(url: str) -> None:
    """The embedded endpoint outlives the rollout (the next one starts at once); say so, and how to stop it."""
    from automem.serving.endpoint import running

    if running() is None:
        return
    say(
        f"\nthe embedded model endpoint is still running at {url} (about 4 GB; it keeps the cores busy while it "
        "serves). Stop it with: automem serve --stop"
    )


# -- the commands that read a store (query, diagnose, report) ------------------------------------------------


def add_retry_argument(p: argparse.ArgumentParser) -> None:
    """``--retry-s``, shared by the commands that read a store (query, diagnose, report)."""
    p.add_argument(
        "--retry-s",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to keep retrying a store that cannot be reached, before giving up (default 10)",
    )


def open_root(root: str, retry_s: float) -> Any:
    """The store at ``root`` for a reading command (``automem.trajectory.open_store``); ``StoreError`` if there is
    none.

    The storage layer logs a warning per retry, which suits writers that wait minutes for a bucket; a reading
    command waits seconds and then fails with one line, so those warnings are muted here.
    """
    import logging

    from automem.trajectory import open_store

    logging.getLogger("automem.trajectory.storage").setLevel(logging.ERROR)
    return open_store(root, retry_for_s=retry_s)


def error_text(exc: BaseException) -> str:
    """The message of one of ``automem.trajectory.read_errors``, which the reading commands (query, diagnose,
    report) print as one line with exit status 2 (a ``KeyError``'s without the quotes its ``str`` adds)."""
    return str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)


def emit(text: str) -> None:
    """Write to stdout; a reader that stopped early (``| head``) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's documented recipe: point stdout at devnull so the flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
