"""Selection strategies: which memory turns are good enough to learn from.

Each strategy is a plain function ``(source, config) -> [Verdict]``, one verdict (keep, score) per turn of
``source.turns``, registered by name in ``STRATEGIES``. ``"utility+outcome"`` keeps a turn only if every named
strategy keeps it; each one's score goes into the dataset as ``score_<name>``.

- ``wellformed`` (the baseline): at least one operation and no failed one. Score: the share of its operations that
  succeeded.
- ``utility``: by provenance (``automem.diagnostics.memory_quality.analyse_ops``: each line a read returned is
  linked to the write that produced it). A LOG turn is kept when a line it wrote was returned by a read of a later
  turn; a PLAN turn when one of its reads returned a line the agent wrote. Neither may hold a failed operation, nor
  (LOG) a redundant write. Score: the share of the turn's writes (LOG) or reads (PLAN) that were linked.
- ``clean``: at least one operation and none failed, repeated in the turn or (LOG) redundant; a LOG turn wrote, a
  PLAN turn's read returned something. Score: 1 when kept.
- ``outcome``: turns of episodes whose progression is at or above ``config.quantile`` (0.5: the median) of the
  progressions of the episodes with the same env and seed. Score: the episode's progression.
- ``counterfactual``: turns a credit run measured (``automem branch credit``: played on with and without the turn's
  operations, ``automem.branch.credit``) whose credit, in ``config.credit_measure``, is above ``config.credit_min``; turns never credited are
  dropped, so the dataset is small and each example's worth was measured. Credits are read from
  ``config.credit_store`` (default: the source store). Score: the credit.
- ``judge`` (optional, off unless named): a model grades each turn (``automem.distill.judge``). It grades only the
  turns the strategies named before it kept, so ``wellformed+utility+judge`` pays for the fewest calls; its own
  count in the funnel is of those.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from automem.diagnostics.memory_quality import LINE_READ_OPS, WRITE_OPS, analyse_ops, op_order
from automem.distill.turns import EpisodeKey, Source

if TYPE_CHECKING:
    from automem.distill.config import DatasetConfig

TurnId = tuple[int, str, int]
"""(step, phase, turn) within an episode."""


class Verdict(NamedTuple):
    """A strategy's answer for one turn."""

    keep: bool
    score: float


Strategy = Callable[[Source, "DatasetConfig"], list[Verdict]]


def _failed(source: Source) -> dict[EpisodeKey, set[TurnId]]:
    """Turns with a failed operation in the op log, by episode."""
    out: dict[EpisodeKey, set[TurnId]] = defaultdict(set)
    for ep, rows in source.ops.items():
        out[ep].update(
            (r["step"], r["phase"], r["turn"]) for r in rows if not r["ok"] and r["phase"] != "init"
        )
    return out


def wellformed(source: Source, config: DatasetConfig) -> list[Verdict]:
    """Keep turns with at least one operation and no failed one (the turn's counts and its op-log rows)."""
    failed = _failed(source)
    out = []
    for t in source.turns:
        bad = t.n_op_errors > 0 or t.key[3:] in failed.get(t.episode, ())
        score = (t.n_ops - t.n_op_errors) / t.n_ops if t.n_ops else 0.0
        out.append(Verdict(t.n_ops > 0 and not bad, score))
    return out


class _Provenance(NamedTuple):
    written: dict[TurnId, int]
    """Successful writes per turn."""
    linked_writes: dict[TurnId, int]
    """Writes per turn with a line returned by a read of another (later) turn."""
    reads: dict[TurnId, int]
    """Successful READ/TAIL/SEARCH per turn."""
    linked_reads: dict[TurnId, int]
    """Reads per turn that returned a line the agent wrote."""
    redundant: set[TurnId]
    """Turns with a redundant write (among those asked about)."""


def _turn_of(row: dict[str, Any]) -> TurnId:
    return (row["step"], row["phase"], row["turn"])


def _provenance(rows: list[dict[str, Any]]) -> _Provenance:
    log = sorted(rows, key=op_order)
    q = analyse_ops(log)
    written: dict[TurnId, int] = defaultdict(int)
    reads: dict[TurnId, int] = defaultdict(int)
    for row in log:
        if row["phase"] == "init" or not row["ok"]:
            continue
        if row["op"] in WRITE_OPS:
            written[_turn_of(row)] += 1
        elif row["op"] in LINE_READ_OPS:
            reads[_turn_of(row)] += 1
    later_read: set[int] = set()  # op indices of writes returned by a read of another turn
    linked: set[int] = set()  # op indices of reads that returned an agent's line
    for r, w in q.links:
        linked.add(r)
        if _turn_of(log[r]) != _turn_of(log[w]):
            later_read.add(w)
    linked_writes: dict[TurnId, int] = defaultdict(int)
    for w in later_read:
        linked_writes[_turn_of(log[w])] += 1
    linked_reads: dict[TurnId, int] = defaultdict(int)
    for r in linked:
        linked_reads[_turn_of(log[r])] += 1
    redundant = {_turn_of(log[i]) for i in q.redundant_ops}
    return _Provenance(written, linked_writes, reads, linked_reads, redundant)


def utility(source: Source, config: DatasetConfig) -> list[Verdict]:
    """Keep LOG turns whose writes were read later and PLAN turns whose reads were linked, by provenance; never a
    turn with a failed operation or a redundant write."""
    wanted = {t.episode for t in source.turns}
    prov = {ep: _provenance(rows) for ep, rows in source.ops.items() if ep in wanted}
    empty = _Provenance({}, {}, {}, {}, set())
    failed = _failed(source)
    out = []
    for t in source.turns:
        p, tid = prov.get(t.episode, empty), t.key[3:]
        clean = t.n_op_errors == 0 and tid not in failed.get(t.episode, ()) and tid not in p.redundant
        if t.phase == "log":
            n, hit = p.written.get(tid, 0), p.linked_writes.get(tid, 0)
        else:
            n, hit = p.reads.get(tid, 0), p.linked_reads.get(tid, 0)
        score = hit / n if n else 0.0
        out.append(Verdict(clean and hit > 0, score))
    return out


def clean(source: Source, config: DatasetConfig) -> list[Verdict]:
    """Keep turns that did something and nothing wasteful: no failed, repeated or (LOG) redundant operation; a LOG
    turn wrote at least once, a PLAN turn had at least one read that returned something. Looser than ``utility``,
    which also needs a later read to have returned the written line (rare when nearly every search comes back
    empty, as with SmolLM2: docs/LOG.md)."""
    wanted = {t.episode for t in source.turns}
    prov = {ep: _provenance(rows) for ep, rows in source.ops.items() if ep in wanted}
    empty = _Provenance({}, {}, {}, {}, set())
    failed = _failed(source)
    repeated: dict[EpisodeKey, set[TurnId]] = defaultdict(set)
    answered: dict[EpisodeKey, set[TurnId]] = defaultdict(set)  # turns with a read that returned something
    for ep, rows in source.ops.items():
        if ep not in wanted:
            continue
        seen: set[tuple] = set()
        for r in rows:
            if r["phase"] == "init":
                continue
            sig = (_turn_of(r), r["op"], tuple(r["args"] or ()))
            if sig in seen:
                repeated[ep].add(_turn_of(r))
            seen.add(sig)
            if r["ok"] and r["op"] in LINE_READ_OPS and (r.get("output_chars") or 0) > 0:
                answered[ep].add(_turn_of(r))
    out = []
    for t in source.turns:
        p, tid, ep = prov.get(t.episode, empty), t.key[3:], t.episode
        ok = t.n_ops > 0 and t.n_op_errors == 0 and tid not in failed.get(ep, ()) and tid not in repeated[ep]
        if t.phase == "log":
            ok = ok and tid not in p.redundant and p.written.get(tid, 0) > 0
        else:
            ok = ok and tid in answered[ep]
        out.append(Verdict(ok, 1.0 if ok else 0.0))
    return out


def outcome(source: Source, config: DatasetConfig) -> list[Verdict]:
    """Keep the turns of episodes at or above the ``config.quantile`` of progression among the episodes of the same
    env and seed."""
    groups: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    for rec in source.episodes.values():
        groups[(rec["env_id"], rec["seed"])].append(rec["progression"] or 0.0)
    bar = {g: float(np.quantile(v, config.quantile)) for g, v in groups.items()}
    out = []
    for t in source.turns:
        rec = source.episodes[t.episode]
        p = rec["progression"] or 0.0
        out.append(Verdict(p >= bar[(rec["env_id"], rec["seed"])] - 1e-12, p))
    return out


def counterfactual(source: Source, config: DatasetConfig) -> list[Verdict]:
    """Keep the turns whose measured memory credit (``automem.branch.credit``) is above ``config.credit_min``."""
    from automem.branch.credit import credits

    found: dict[tuple[str, str, str], Any] = {}
    for c in credits(config.credit_store or config.source, measure=config.credit_measure):
        key = (c.parent_run_id, c.parent_episode_id, c.turn)
        if key not in found or c.n >= found[key].n:  # a turn credited twice: the run with more copies
            found[key] = c
    out = []
    for t in source.turns:
        run_id, episode_id, _attempt, step, phase, turn = t.key
        hit = found.get((run_id, episode_id, f"{step}:{phase}:{turn}"))
        credit = None if hit is None else hit.credit
        out.append(
            Verdict(credit is not None and credit > config.credit_min, np.nan if credit is None else credit)
        )
    return out


def judge(source: Source, config: DatasetConfig) -> list[Verdict]:
    """Keep the turns a model grades well (``automem.distill.judge``; needs ``judge_url`` and ``judge_model``)."""
    from automem.distill.judge import judge as run

    return run(source, config)


STRATEGIES: dict[str, Strategy] = {
    "wellformed": wellformed,
    "utility": utility,
    "clean": clean,
    "outcome": outcome,
    "counterfactual": counterfactual,
    "judge": judge,
}
"""The selection strategies by name."""


# Strategies that cost a model call a turn: they see only the turns the strategies before them kept.
_GRADES_SURVIVORS = {"judge"}


def _on_kept(strategy: Strategy, source: Source, config: DatasetConfig, keep: list[bool]) -> list[Verdict]:
    """``strategy`` run over the kept turns only; a turn already dropped gets ``Verdict(False, nan)``."""
    kept = [t for t, k in zip(source.turns, keep, strict=True) if k]
    graded = iter(strategy(Source(kept, source.episodes, source.ops, source.operations), config))
    return [next(graded) if k else Verdict(False, float("nan")) for k in keep]


def parse_strategy(spec: str) -> list[str]:
    """The strategy names in ``"a+b"``, in order, each once.

    Raises:
        ValueError: an empty or unknown name (the known ones listed).
    """
    names = [n.strip() for n in spec.split("+")]
    for n in names:
        if n not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {n!r} in {spec!r}; known: {', '.join(STRATEGIES)} (joined by +)"
            )
    return list(dict.fromkeys(names))


def select(
    source: Source, config: DatasetConfig
) -> tuple[list[bool], dict[str, list[float]], dict[str, int]]:
    """Run the configured strategies over every turn.

    Returns:
        Per turn whether every strategy kept it; per strategy its scores; per strategy how many turns it kept on
        its own (for the funnel).
    """
    keep = [True] * len(source.turns)
    scores: dict[str, list[float]] = {}
    kept: dict[str, int] = {}
    for name in parse_strategy(config.strategy):
        if name in _GRADES_SURVIVORS:
            verdicts = _on_kept(STRATEGIES[name], source, config, keep)
        else:
            verdicts = STRATEGIES[name](source, config)
        scores[name] = [v.score for v in verdicts]
        kept[name] = sum(v.keep for v in verdicts)
        keep = [k and v.keep for k, v in zip(keep, verdicts, strict=True)]
    return keep, scores, kept
