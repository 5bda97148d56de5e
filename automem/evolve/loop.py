"""The Loop 1 run: collect, digest, review, patch, gate, keep or drop, repeat; then score on held-out seeds.

Each iteration plays the scaffold in force on the tuning seeds (once per scaffold: a scaffold's run is keyed by its
content id and reused), builds a digest of those episodes in the reviewer's tokens, asks the reviewer for a patch,
checks it (:mod:`~automem.evolve.patch`), plays the candidate on the same seeds and gates it
(:mod:`~automem.evolve.gate`): the candidate replaces the scaffold in force only when the lower confidence bound of
its per-seed progression gain clears the margin. Every iteration ends by writing its lineage row
(:mod:`~automem.evolve.lineage`), which is also the resume point: a crashed run started again with the same
command skips finished iterations, and a rollout that was cut resumes where it stopped. At the end the starting
scaffold and the last accepted one are played once on the held-out seeds.

Everything lands in the store ``out``: the rollouts as runs ``<name>-<content id>-tune`` and ``-holdout``, the
lineage rows under ``lineage/``, and ``evolve/<name>/`` with the declaration (``evolve.json``; a resumed run must
match it), the scaffolds (``scaffolds/<content id>.yaml``) and the result (``result.json``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from automem.config import StrictConfig
from automem.evolve.gate import GateConfig, GateResult, paired_gate
from automem.evolve.lineage import LINEAGE_SCHEMA, append_row, read_rows
from automem.evolve.patch import Candidate, PatchRejected, apply_patch
from automem.evolve.reviewers import Review, Reviewer, ReviewRequest
from automem.llm.embedded import BASE_MODEL_ID
from automem.scaffold.io import content_id, from_yaml, load, to_yaml
from automem.scaffold.schema import Scaffold
from automem.trajectory.storage import Storage

EVOLVE_DIR = "evolve"
DECLARATION = "evolve.json"
RESULT = "result.json"
SECONDARY = ("op_error_rate", "redundant_write_rate")
"""Measures reported beside the gate (paired bootstrap intervals), not gated on."""


class EvolveError(ValueError):
    """An evolve run that cannot start as given (nothing is played)."""


class EvolveConfig(StrictConfig):
    """An evolve run: where it plays, what it starts from, who reviews, the seeds and the gate."""

    name: str = Field("evolve", pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    """The run's name: its folder ``evolve/<name>``, its rollouts' prefix and its lineage rows."""
    out: str = "runs"
    """The store (a folder or ``s3://``) for rollouts, lineage and results."""
    env: str = "crafter-v0"
    """Environment id."""
    scaffold: str | None = None
    """The starting scaffold (a built-in name or a YAML file); None: ``<env family>-v0``."""
    reviewer: str = "rules"
    """``rules``, ``openai[:MODEL[@URL]]`` or ``anthropic:MODEL``."""
    tune_seeds: str = "0-15"
    """Seeds every candidate and its parent play (one episode each); the gate pairs them."""
    holdout_seeds: str | None = "1000-1031"
    """Seeds the start and the final scaffold play once at the end (never reviewed or gated on); None: skip."""
    iterations: int = Field(5, ge=0)
    """Review-and-gate rounds; a resumed run may be given more."""
    gate: GateConfig = Field(default_factory=GateConfig)
    digest_tokens: int | None = Field(None, ge=64)
    """Digest budget in the reviewer's tokens; None: what the reviewer's context holds (2,000 for ``rules``)."""
    model: str = BASE_MODEL_ID
    """Model that commits game actions."""
    memory_model: str | None = None
    """Model for memory turns, e.g. ``BASE:ADAPTER`` (Loop 2's specialist); None: ``model``."""
    endpoint: str = "embedded"
    """The agent's OpenAI-compatible endpoint (``embedded``: automem's own)."""
    max_steps: int = Field(30, ge=1)
    concurrency: int = Field(8, ge=1)
    executor: str = "ray"
    """``ray`` or ``local`` (rollouts in this process)."""
    context_window: int = Field(4096, ge=256)
    rollout: list[str] = Field(default_factory=list)
    """Further ``key=value`` rollout settings (``automem rollout --help``), e.g. ``max_llm_inflight=32``."""

    @field_validator("tune_seeds", "holdout_seeds")
    @classmethod
    def _seeds(cls, v: str | None) -> str | None:
        from automem.rollout.jobs import parse_seeds

        if v is not None:
            parse_seeds(v)
        return v

    @model_validator(mode="after")
    def _apart(self) -> EvolveConfig:
        from automem.rollout.jobs import parse_seeds

        if self.holdout_seeds:
            tune = parse_seeds(self.tune_seeds)
            if len(tune) > 100_000:
                raise ValueError("tune_seeds: at most 100,000 seeds")
            overlap = set(tune) & set(parse_seeds(self.holdout_seeds))
            if overlap:
                raise ValueError(
                    f"tune_seeds and holdout_seeds overlap (e.g. {min(overlap)}): keep them apart"
                )
        return self

    def declared(self) -> dict[str, Any]:
        """What defines the experiment (a resume must match it); the rest says how to run it."""
        keep = (
            "env",
            "reviewer",
            "tune_seeds",
            "holdout_seeds",
            "model",
            "memory_model",
            "max_steps",
            "gate",
        )
        return {k: v for k, v in self.model_dump(mode="json").items() if k in keep}


@dataclass
class EvolveResult:
    """What an evolve run found."""

    start: str
    """Content id of the starting scaffold."""
    final: str
    """Content id of the scaffold in force at the end (the start if nothing was accepted)."""
    rows: list[dict[str, Any]]
    holdout: dict[str, Any] | None
    final_yaml: str


Play = Callable[[Scaffold, str, str], None]
"""``play(scaffold, seeds, run_id)``: play (or finish) the scaffold's episodes on the seeds as run ``run_id``."""


def run_id_for(name: str, cid: str, what: str) -> str:
    return f"{name}-{cid[:10]}-{what}"


class Evolve:
    """One evolve run over a store; :meth:`run` does everything and can be called again after a crash."""

    def __init__(
        self,
        config: EvolveConfig,
        reviewer: Reviewer,
        play: Play,
        *,
        counter: Any = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.config, self.reviewer, self.play = config, reviewer, play
        self.counter = counter
        self.say = say or (lambda _m: None)
        self.st = Storage(config.out)
        self.dir = self.st.path(EVOLVE_DIR, config.name)
        self.start = load(config.scaffold or f"{config.env.split('-')[0]}-v0")

    # --- state in the store -------------------------------------------------------------------------------------

    def _declare(self) -> None:
        path = self.st.path(EVOLVE_DIR, self.config.name, DECLARATION)
        declared = {**self.config.declared(), "start": content_id(self.start)}
        if self.st.exists(path):
            before = json.loads(self.st.read_bytes(path))
            changed = sorted(k for k in set(before) | set(declared) if before.get(k) != declared.get(k))
            if changed:
                raise EvolveError(
                    f"evolve run {self.config.name!r} in {self.config.out} was declared with other "
                    f"{', '.join(changed)}; give another --name, or the same settings to resume it"
                )
            return
        self.st.ensure_dir(self.dir)
        self.st.write_bytes(path, json.dumps(declared, indent=2).encode())

    def _save_scaffold(self, scaffold: Scaffold) -> None:
        path = self.st.path(EVOLVE_DIR, self.config.name, "scaffolds", f"{content_id(scaffold)}.yaml")
        if not self.st.exists(path):
            self.st.ensure_dir(self.st.path(EVOLVE_DIR, self.config.name, "scaffolds"))
            self.st.write_bytes(path, to_yaml(scaffold).encode())

    # --- the loop -----------------------------------------------------------------------------------------------

    def run(self) -> EvolveResult:
        """Play every iteration not yet recorded, then the held-out comparison; returns the whole lineage."""
        from automem.evolve.gate import min_seeds
        from automem.rollout import parse_seeds

        need, have = min_seeds(self.config.gate.level), len(parse_seeds(self.config.tune_seeds))
        if have < need:
            self.say(
                f"warning: {have} tuning seeds: the gate cannot accept at level "
                f"{self.config.gate.level} with fewer than {need}; candidates are played and recorded, never kept"
            )
        self._declare()
        name = self.config.name
        rows = read_rows(self.st, name)
        if not rows:
            self._save_scaffold(self.start)
            append_row(self.st, self._start_row())
            rows = read_rows(self.st, name)
        scaffolds = {r["content_id"]: from_yaml(r["scaffold_yaml"]) for r in rows if r["scaffold_yaml"]}
        current = scaffolds[rows[-1]["current_content_id"]]
        for k in range(len(rows), self.config.iterations + 1):
            self.say(f"iteration {k}/{self.config.iterations}: scaffold in force {current.id}")
            row = self._iteration(k, current, rows)
            row = {f: row.get(f) for f in LINEAGE_SCHEMA.names}
            row["created_at"] = dt.datetime.now(dt.UTC).replace(microsecond=0)
            append_row(self.st, row)
            rows.append(row)
            if row["scaffold_yaml"]:
                scaffolds[row["content_id"]] = from_yaml(row["scaffold_yaml"])
            current = scaffolds[row["current_content_id"]]
            self.say(f"iteration {k}: {row['decision']}" + (f" ({row['reason']})" if row["reason"] else ""))
        holdout = self._holdout(current)
        return EvolveResult(content_id(self.start), content_id(current), rows, holdout, to_yaml(current))

    def _start_row(self) -> dict[str, Any]:
        cid = content_id(self.start)
        return {
            "evolve": self.config.name,
            "iteration": 0,
            "decision": "start",
            "reason": "the starting scaffold",
            "scaffold_id": self.start.id,
            "content_id": cid,
            "scaffold_yaml": to_yaml(self.start),
            "current_content_id": cid,
            "reviewer": self.reviewer.name,
        }

    def _tune(self, scaffold: Scaffold) -> str:
        run = run_id_for(self.config.name, content_id(scaffold), "tune")
        self.play(scaffold, self.config.tune_seeds, run)
        return run

    def _iteration(self, k: int, current: Scaffold, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from automem.evolve.digest import build_digest
        from automem.evolve.rules import gather_evidence
        from automem.trajectory import connect

        cur_cid = content_id(current)
        row: dict[str, Any] = {
            "evolve": self.config.name,
            "iteration": k,
            "parent_content_id": cur_cid,
            "parent_scaffold_id": current.id,
            "reviewer": self.reviewer.name,
            "current_content_id": cur_cid,
            "metric": "progression",
            "seeds": self.config.tune_seeds,
        }
        parent_run = self._tune(current)
        row["parent_run"] = parent_run
        con = connect(self.st)
        try:
            budget = self._digest_budget(current)
            digest = build_digest(
                con, counter=self.reviewer.counter, budget=budget, run_id=parent_run, seed=k
            )
            evidence = gather_evidence(con, current, parent_run)
        finally:
            con.close()
        row.update(digest_tokens=digest.tokens, digest_budget=budget)
        tried = frozenset(r["content_id"] for r in rows if r.get("content_id"))
        notes = tuple(
            f"{r.get('rule') or 'change'} ({(r.get('rationale') or '')[:80]}): {r['decision']}"
            for r in rows
            if r["iteration"] > 0 and r.get("patch_json")
        )
        review = self._review(ReviewRequest(current, digest.text, evidence, tried, notes))
        row.update(rule=review.rule, rationale=review.rationale[:2000], reviewer_seconds=review.seconds)
        if review.error:
            row.update(decision="reviewer_error", reason=review.error[:2000])
            if isinstance(review.patch, str):
                row["patch_json"] = review.patch[:20000]
            return row
        if review.patch is None:
            row.update(decision="no_proposal", reason=review.rationale or "the reviewer proposed nothing")
            return row
        row["patch_json"] = review.patch if isinstance(review.patch, str) else json.dumps(review.patch)
        try:
            cand = apply_patch(
                current,
                review.patch,
                env_id=self.config.env,
                context_window=self.config.context_window,
                counter=self.counter,
            )
        except PatchRejected as exc:
            row.update(decision="invalid_patch", reject_kind=exc.kind, reason=exc.reason[:2000])
            return row
        row.update(
            scaffold_id=cand.scaffold.id,
            content_id=cand.content_id,
            diff=cand.diff,
            scaffold_yaml=to_yaml(cand.scaffold),
            rationale=(review.rationale or cand.rationale)[:2000],
        )
        if cand.content_id in tried:
            row.update(decision="duplicate", reason="this scaffold was gated before")
            return row
        return self._gate(row, cand, parent_run)

    def _digest_budget(self, scaffold: Scaffold) -> int:
        fit = getattr(self.reviewer, "fit", None)
        room = fit(scaffold) if fit else self.reviewer.digest_budget
        return max(64, min(room, self.config.digest_tokens or room))

    def _review(self, request: ReviewRequest) -> Review:
        start = time.monotonic()
        try:
            review = self.reviewer.review(request)
        except Exception as exc:  # a reviewer's bug must not end the loop; it is recorded like a bad answer
            return Review(None, error=f"the reviewer failed: {type(exc).__name__}: {exc}")
        review.seconds = review.seconds or time.monotonic() - start
        return review

    def _gate(self, row: dict[str, Any], cand: Candidate, parent_run: str) -> dict[str, Any]:
        self._save_scaffold(cand.scaffold)
        cand_run = self._tune(cand.scaffold)
        row["candidate_run"] = cand_run
        result, secondary = compare_runs(self.st, parent_run, cand_run, self.config.gate)
        row.update(
            n_seeds=result.n,
            parent_mean=result.mean_a,
            candidate_mean=result.mean_b,
            mean_diff=result.mean_diff,
            lower=result.lower,
            upper=result.upper,
            p_value=result.p_value,
            margin=result.margin,
            level=result.level,
            **secondary,
        )
        verdict = (
            f"gain {result.mean_diff:+.3f}, lower bound {result.lower:+.3f} vs margin {result.margin:+.3f}, "
            f"p {result.p_value:.3f}, {result.n} seeds"
        )
        if result.accepted:
            row.update(decision="accepted", reason=verdict, current_content_id=cand.content_id)
        else:
            row.update(decision="rejected", reason=verdict)
        return row

    def _holdout(self, final: Scaffold) -> dict[str, Any] | None:
        """The held-out comparison of the start and ``final`` (``result.json``); the start alone, with its interval,
        when nothing was accepted."""
        if not self.config.holdout_seeds:
            return None
        if content_id(final) == content_id(self.start):
            self.say("no candidate was accepted: the held-out seeds score the starting scaffold alone")
            out = self.score_holdout(None)
        else:
            out = self.score_holdout(final)
        self.st.write_bytes(
            self.st.path(EVOLVE_DIR, self.config.name, RESULT), json.dumps(out, indent=2).encode()
        )
        return out

    def score_holdout(self, candidate: Scaffold | None) -> dict[str, Any]:
        """Play the start and ``candidate`` on the held-out seeds (each once; a played run is reused) and compare them
        paired by seed; with no candidate, the start's mean progression and its 95% bootstrap interval.

        Raises:
            EvolveError: the run declares no held-out seeds.
        """
        from automem.diagnostics.stats import bootstrap_ci
        from automem.trajectory import connect

        seeds = self.config.holdout_seeds
        if not seeds:
            raise EvolveError(f"evolve run {self.config.name!r} has no held-out seeds")
        runs = []
        for s in (self.start,) if candidate is None else (self.start, candidate):
            run = run_id_for(self.config.name, content_id(s), "holdout")
            self.say(f"held-out seeds {seeds}: playing {s.id}")
            self.play(s, seeds, run)
            runs.append(run)
        out: dict[str, Any] = {"start": self.start.id, "start_run": runs[0], "seeds": seeds}
        if candidate is None:
            con = connect(self.st)
            try:
                values = list(per_seed(con, runs[0]).values())
            finally:
                con.close()
            lo, hi = bootstrap_ci(np.asarray(values, float), np.ones(len(values)))
            mean = sum(values) / len(values) if values else None
            return {**out, "final": self.start.id, "n": len(values), "mean_a": mean, "lo": lo, "hi": hi}
        result, secondary = compare_runs(self.st, runs[0], runs[1], self.config.gate)
        return {**out, "final": candidate.id, "final_run": runs[1], **result.to_dict(), **secondary}


ROLLOUT_FIELDS = (
    "env",
    "model",
    "memory_model",
    "endpoint",
    "max_steps",
    "concurrency",
    "executor",
    "context_window",
)


def rollout_player(
    config: EvolveConfig,
    *,
    progress: Callable[[], Any] | None = None,
    say: Callable[[str], None] | None = None,
) -> Play:
    """Play through the rollout library call (:func:`automem.rollout.run_rollout`): one episode per seed; a run
    that exists already is resumed (its committed episodes are kept; a complete run plays nothing).

    Args:
        progress: makes a context manager with ``update(progress)`` for each rollout (e.g. a progress bar).

    Raises:
        EvolveError: the rollout settings are invalid (at once, before anything is played).
        KeyboardInterrupt: a rollout was interrupted (its committed episodes are kept).
    """
    from automem.config import ConfigError, apply_overrides, parse_model
    from automem.rollout import RolloutConfig, parse_seeds, run_rollout

    dumped = config.model_dump(mode="json")
    try:
        base = apply_overrides({k: dumped[k] for k in ROLLOUT_FIELDS}, config.rollout)
        base["out"] = config.out
        parse_model(RolloutConfig, base, source="evolve settings", what="rollout config")
    except (ConfigError, ValueError) as exc:
        raise EvolveError(str(exc)) from None
    st = Storage(config.out)

    def play(scaffold: Scaffold, seeds: str, run_id: str) -> None:
        tree = {
            **base,
            "scaffold": scaffold.model_dump(mode="json"),
            "seeds": seeds,
            "episodes": len(parse_seeds(seeds)),
            "run_id": run_id,
        }
        rc = parse_model(RolloutConfig, tree, source="evolve settings", what="rollout config")
        resume = st.exists(st.path("runs", run_id, "manifest.json"))
        if progress is None:
            result = run_rollout(rc, resume=resume, say=say)
        else:
            with progress() as reporter:
                result = run_rollout(rc, resume=resume, on_progress=reporter.update, say=say)
        if result.interrupted:
            raise KeyboardInterrupt
        if result.failed and say:
            say(
                f"run {run_id}: {len(result.failed)} episodes failed; the gate pairs the seeds both sides have"
            )

    return play


def per_seed(con: Any, run_id: str) -> dict[int, float]:
    """Progression per seed of a run's committed episodes (the mean when a seed has several)."""
    rows = con.execute(
        "SELECT seed, avg(progression) FROM episodes WHERE run_id = ? GROUP BY seed", [run_id]
    ).fetchall()
    return {int(s): float(p or 0.0) for s, p in rows}


def compare_runs(
    st: Storage, run_a: str, run_b: str, gate: GateConfig
) -> tuple[GateResult, dict[str, float | None]]:
    """The gate on the seeds both runs committed, and the secondary measures' paired differences ``b - a``."""
    from automem.diagnostics.compare import compare_tables
    from automem.diagnostics.episodes import analyse_store
    from automem.trajectory import connect

    con = connect(
        st, episodes=f"SELECT run_id, episode_id FROM episodes WHERE run_id IN ('{run_a}', '{run_b}')"
    )
    try:
        a, b = per_seed(con, run_a), per_seed(con, run_b)
        seeds = sorted(set(a) & set(b))
        result = paired_gate([a[s] for s in seeds], [b[s] for s in seeds], gate)
        table = analyse_store(con).table
    finally:
        con.close()
    run = table.column("run_id").to_pylist()
    ta = table.filter(pa.array([r == run_a for r in run]))
    tb = table.filter(pa.array([r == run_b for r in run]))
    secondary: dict[str, float | None] = {}
    if ta.num_rows and tb.num_rows:
        diffs = {d["measure"]: d for d in compare_tables(ta, tb).to_pylist()}
        for m in SECONDARY:
            d = diffs.get(m, {})
            secondary.update(
                {f"{m}_diff": d.get("diff"), f"{m}_lo": d.get("diff_lo"), f"{m}_hi": d.get("diff_hi")}
            )
    return result, secondary


__all__ = [
    "rollout_player",
    "EvolveConfig",
    "Evolve",
    "EvolveError",
    "EvolveResult",
    "compare_runs",
    "per_seed",
    "run_id_for",
]
