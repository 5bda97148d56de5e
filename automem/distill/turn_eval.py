"""Turn-level evaluation of a memory specialist against its base model (issue 15, item 1).

For each recorded memory turn of the chosen (held-out) episodes, both models answer the same prompt the agent saw,
with the turn's own grammar constraint (``constrained``) and without it (``free``); each answer is scored against
the episode's memory as it was before that turn (:mod:`automem.distill.evaluate`). The comparison is paired by
turn: for every metric, the adapter's mean minus the base's, with a bootstrap 95% interval.

Requests go through one ``OpenAIChatClient`` with at most ``concurrency`` in flight (the endpoint batches them), so
a few hundred turns take minutes. Greedy decoding (temperature 0): the same turn gets the same answer again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from automem.diagnostics.memory_quality import PHASE_ORDER, op_order
from automem.distill.evaluate import TurnScore, files_before, paired_bootstrap, score_answer
from automem.distill.turns import MemoryTurn, read_source
from automem.llm.protocol import ChatModel, OutputConstraint, SamplingParams
from automem.rollout.jobs import parse_seeds
from automem.scaffold.io import from_yaml
from automem.scaffold.schema import Scaffold
from automem.trajectory import Storage, read_manifest

MODES = ("constrained", "free")
"""``constrained``: the turn's recorded grammar (structured outputs); ``free``: no constraint."""
METRICS = ("wellformed_share", "n_ops", "n_failed", "redundant_writes", "repeated_ops", "writes_read_later")
"""Per-answer scores compared between the models (means over turns)."""


class EvalError(ValueError):
    """The evaluation cannot run on this input; one line naming the fix."""


@dataclass(frozen=True)
class EvalTurn:
    """A recorded memory turn, ready to be answered again."""

    turn: MemoryTurn
    constraint: str | None
    """The grammar the agent's turn was decoded under (``turns.constraint``), None if it had none."""
    files: dict[str, str]
    """The episode's memory files just before the turn."""
    scaffold: Scaffold
    later: list[dict[str, Any]]
    """The episode's ``memory_ops`` rows after the turn (what its later reads returned, replayed on an answer)."""


def _run_scaffold(storage: Storage, run_id: str) -> Scaffold:
    text = (read_manifest(storage, run_id) or {}).get("scaffold_yaml")
    if not text:
        raise EvalError(f"run {run_id} records no scaffold in its manifest: it cannot be scored")
    return from_yaml(text, f"the manifest of run {run_id}")


def select_turns(
    source: str,
    *,
    run_id: str | None = None,
    seeds: str | None = None,
    phases: tuple[str, ...] = ("log",),
    limit: int | None = None,
) -> list[EvalTurn]:
    """The committed memory turns of ``source`` (one run, or all) whose episode seed is in ``seeds``, in key order.

    Args:
        seeds: e.g. ``"1000-1031"``; None takes every seed (use held-out seeds: never the training ones).
        limit: at most this many turns, taken evenly across the selection (None: all).

    Raises:
        EvalError: no turn matches, or a run records no scaffold.
    """
    storage = Storage(source)
    src = read_source(storage, run_id, phases)
    wanted = parse_seeds(seeds).parts if seeds else None  # ranges, never expanded

    def chosen(seed: int | None) -> bool:
        return wanted is None or (seed is not None and any(seed in part for part in wanted))

    turns = [t for t in src.turns if chosen(src.episodes[t.episode]["seed"])]
    if not turns:
        raise EvalError(
            f"{source}: no committed {'/'.join(phases)} turn"
            + (f" of seeds {seeds}" if seeds else "")
            + (f" in run {run_id}" if run_id else "")
        )
    if limit is not None and len(turns) > limit:
        stride = len(turns) / limit
        turns = [turns[int(i * stride)] for i in range(limit)]
    scaffolds = {run: _run_scaffold(storage, run) for run in sorted({t.key[0] for t in turns})}
    out = []
    for t in turns:
        _, _, _, step, phase, turn = t.key
        ops = src.ops.get(t.episode, [])
        files = files_before(ops, step, phase, turn)
        after = (step, PHASE_ORDER[phase], turn)
        later = [r for r in ops if op_order(r)[:3] > after]
        out.append(EvalTurn(t, t.constraint, files, scaffolds[t.key[0]], later))
    return out


async def _answers(
    client: ChatModel,
    turns: Sequence[EvalTurn],
    models: Sequence[str],
    modes: Sequence[str],
    *,
    max_tokens: int,
    concurrency: int,
    progress: Callable[[int, int], None],
) -> dict[tuple[int, str, str], tuple[str, int, int]]:
    sampling = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_tokens)
    gate = asyncio.Semaphore(concurrency)
    jobs = [(i, m, mode) for i in range(len(turns)) for m in models for mode in modes]
    done = 0

    async def one(i: int, model: str, mode: str) -> tuple[tuple[int, str, str], tuple[str, int, int]]:
        nonlocal done
        t = turns[i]
        constraint = OutputConstraint(t.constraint) if mode == "constrained" and t.constraint else None
        async with gate:
            result = await client.chat(t.turn.messages, model=model, sampling=sampling, constraint=constraint)
        done += 1
        progress(done, len(jobs))
        return (i, model, mode), (result.text, result.prompt_tokens, result.completion_tokens)

    try:
        return dict(await asyncio.gather(*(one(*job) for job in jobs)))
    finally:
        close = getattr(client, "aclose", None)
        if close is not None:  # the HTTP session belongs to this event loop
            await close()


@dataclass(frozen=True)
class Comparison:
    """One metric in one mode: the base's and the adapter's means over the same turns, and their difference."""

    mode: str
    metric: str
    base: float
    adapter: float
    diff: float
    lo: float | None
    hi: float | None
    turns: int


@dataclass
class EvalResult:
    comparisons: list[Comparison]
    scores: list[dict[str, Any]]
    """One row per turn, model and mode: the turn's key, the answer and its :class:`TurnScore` fields."""
    cost: dict[str, Any] = field(default_factory=dict)
    """``requests``, ``prompt_tokens``, ``completion_tokens``, ``seconds`` (wall, requests and scoring)."""

    def to_json(self) -> str:
        return json.dumps(
            {"comparisons": [asdict(c) for c in self.comparisons], "scores": self.scores, "cost": self.cost},
            sort_keys=True,
        )


def _value(score: TurnScore, metric: str) -> float:
    return float(score.n_failed if metric == "n_failed" else getattr(score, metric) or 0)


def evaluate_turns(
    client: ChatModel,
    turns: Sequence[EvalTurn],
    *,
    base: str,
    adapter: str,
    modes: Sequence[str] = MODES,
    max_tokens: int = 120,
    concurrency: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Ask ``base`` and ``adapter`` for every turn in every mode, score each answer, and compare them paired.

    Raises:
        EvalError: an unknown mode.
    """
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise EvalError(f"unknown mode {bad[0]!r}: choose from {', '.join(MODES)}")
    start = time.perf_counter()
    answers = asyncio.run(
        _answers(
            client,
            turns,
            (base, adapter),
            modes,
            max_tokens=max_tokens,
            concurrency=concurrency,
            progress=progress or (lambda _d, _n: None),
        )
    )
    scores: dict[tuple[int, str, str], TurnScore] = {}
    rows = []
    for (i, model, mode), (text, _, _) in sorted(answers.items()):
        t = turns[i]
        score = score_answer(t.files, text, t.scaffold, phase=t.turn.phase, later=t.later, step=t.turn.key[3])
        scores[(i, model, mode)] = score
        rows.append(
            {
                "key": list(t.turn.key),
                "model": model,
                "mode": mode,
                "answer": text,
                **asdict(score),
                "n_failed": score.n_failed,
            }
        )
    comparisons = []
    for mode in modes:
        for metric in METRICS:
            a = [_value(scores[(i, base, mode)], metric) for i in range(len(turns))]
            b = [_value(scores[(i, adapter, mode)], metric) for i in range(len(turns))]
            diff, lo, hi = paired_bootstrap(a, b)
            comparisons.append(
                Comparison(mode, metric, sum(a) / len(a), sum(b) / len(b), diff, lo, hi, len(turns))
            )
    cost = {
        "requests": len(answers),
        "prompt_tokens": sum(a[1] for a in answers.values()),
        "completion_tokens": sum(a[2] for a in answers.values()),
        "seconds": round(time.perf_counter() - start, 3),
    }
    return EvalResult(comparisons, rows, cost)
