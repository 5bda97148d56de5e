"""The report's branch view: each branch run's points, with the parent episode's timeline and where its branches
diverged, and the run's arms compared with its reference arm (``automem.branch.compare``).

Per branch run (``automem branch play`` / ``credit``) and branch point: the parent episode (steps ``0..steps``, read
from its own store, ``parent_out``, which may be another folder or ``s3://``), the branch step, and one line per
committed branch episode from ``branch_step`` to ``branch_step + steps`` with its arm, copy, final progression and
the first step at which its action differs from the parent's recorded action at the same step (``diverged_at``;
None when it never differs over the steps both played, or when the parent store cannot be read: ``parent_readable``
says which). Per run, ``comparison`` holds each arm against the reference arm as ``compare_rows`` computes it, over
all of the run's committed pairs.

The view is bounded: at most ``_MAX_RUNS`` runs, ``_MAX_POINTS`` points per run, ``_MAX_LINES`` branch lines per
point (the first copies of every arm first) and ``_MAX_TOTAL_LINES`` lines in all; what is left out is said in the
notes.
"""

from __future__ import annotations

from typing import Any

from automem.branch.compare import branch_outcomes, compare_rows, reference_arm
from automem.branch.jobs import stored_plan
from automem.trajectory import Storage, connect, open_store
from automem.trajectory.reader import read_manifest

_MAX_RUNS = 20  # most branch runs shown
_MAX_POINTS = 50  # most branch points shown per run
_MAX_LINES = 24  # most branch episodes drawn per point
_MAX_TOTAL_LINES = 4000  # most branch episodes drawn in all (about 1 MB of page)
_TEXT_CHARS = 80  # most characters of an action or a change shown
_PARENT_RETRY_S = 0.0  # a parent store that cannot be read is said so, not waited for

_BRANCH_SQL = """
SELECT b.run_id, b.episode_id, b.point, b.arm, b."copy", b.parent_out, b.parent_run_id, b.parent_episode_id,
       b.parent_attempt, b.branch_step, b.changes, e.steps, e.progression
FROM branches b JOIN episodes e USING (run_id, episode_id)
ORDER BY b.run_id, b.point, b.arm, b."copy"
"""


def _short(text: Any) -> str | None:
    if text is None:
        return None
    s = str(text)
    return s if len(s) <= _TEXT_CHARS else s[: _TEXT_CHARS - 1] + "…"


def _actions(con: Any, run_id: str, episodes: list[str]) -> dict[str, dict[int, str]]:
    """episode id -> step -> action, of some committed episodes of one run."""
    cur = con.execute(
        "SELECT episode_id, step, action FROM steps WHERE run_id = ? AND list_contains(?, episode_id)",
        [run_id, episodes],
    )
    out: dict[str, dict[int, str]] = {}
    for ep, step, action in cur.fetchall():
        out.setdefault(ep, {})[int(step)] = action
    return out


class _Parents:
    """The parent episodes of the branch points, read once per parent store and run (None: not readable)."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self._cons: dict[str, Any] = {}
        self._episodes: dict[tuple[str, str, str], dict[str, Any] | None] = {}

    def _con(self, out: str) -> Any:
        if out not in self._cons:
            try:
                self._cons[out] = connect(open_store(out, retry_for_s=_PARENT_RETRY_S))
            except Exception as exc:  # any failure to read is reported, never fatal to the report
                self._cons[out] = None
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.notes.append(
                    f"The parent store {out} of some branch runs is not readable here ({first}): their parent "
                    "timelines are drawn from the branch step only and no divergence is shown."
                )
        return self._cons[out]

    def load(self, out: str, run_id: str, episodes: list[str]) -> None:
        """Read the parent episodes ``episodes`` of run ``run_id`` in store ``out``."""
        want = [e for e in episodes if (out, run_id, e) not in self._episodes]
        if not want:
            return
        con = self._con(out)
        found: dict[str, dict[str, Any]] = {}
        if con is not None:
            try:
                cur = con.execute(
                    "SELECT episode_id, attempt, steps, progression FROM episodes "
                    "WHERE run_id = ? AND list_contains(?, episode_id)",
                    [run_id, want],
                )
                for ep, attempt, steps, prog in cur.fetchall():
                    found[ep] = {"attempt": attempt, "steps": steps, "progression": prog}
                for ep, actions in _actions(con, run_id, list(found)).items():
                    found[ep]["actions"] = actions
            except Exception as exc:  # a damaged parent store: the same as an unreadable one
                self.notes.append(f"The parent run {run_id} in {out} could not be read ({exc}).")
                found = {}
            missing = [e for e in want if e not in found]
            if missing:
                self.notes.append(
                    f"The parent episode(s) {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''} of run "
                    f"{run_id} are not committed in {out}: their branches are drawn without divergence."
                )
        for ep in want:
            self._episodes[(out, run_id, ep)] = found.get(ep)

    def get(self, out: str, run_id: str, episode: str, attempt: int | None) -> dict[str, Any] | None:
        """The parent episode, or None if it is not readable or committed another attempt than the branch's."""
        rec = self._episodes.get((out, run_id, episode))
        if rec is not None and attempt is not None and rec["attempt"] != attempt:
            self.notes.append(
                f"The parent episode {episode} of run {run_id} in {out} committed attempt {rec['attempt']}, not "
                f"the {attempt} that was branched: its branches are drawn without divergence."
            )
            self._episodes[(out, run_id, episode)] = rec = None
        return rec

    def close(self) -> None:
        for con in self._cons.values():
            if con is not None:
                con.close()


def _divergence(actions: dict[int, str], parent: dict[int, str]) -> int | None:
    """The first step at which both played and the actions differ."""
    return next((t for t in sorted(actions) if t in parent and actions[t] != parent[t]), None)


def _keep(lines: list[dict[str, Any]], arms: list[str], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` lines, the first copies of every arm first, in arm and copy order."""
    order = {a: i for i, a in enumerate(arms)}
    kept = sorted(lines, key=lambda r: (r["copy"], order.get(r["arm"], len(order)), r["arm"]))[:limit]
    return sorted(kept, key=lambda r: (order.get(r["arm"], len(order)), r["arm"], r["copy"]))


def _comparison(rows: list[dict[str, Any]], arms: list[str] | None) -> list[dict[str, Any]]:
    out = []
    for c in compare_rows(rows, arms):
        out.append(
            {
                "arm": c.arm,
                "reference": c.reference,
                "pairs": c.pairs,
                "unpaired": c.unpaired,
                "measures": {m: {k: round(v, 4) for k, v in vals.items()} for m, vals in c.measures.items()},
            }
        )
    return out


def branch_view(con: Any, st: Storage, notes: list[str]) -> list[dict[str, Any]]:
    """The branch runs of the store as the report draws them (see the module docstring); [] without any.

    Args:
        con: the store's connection (``automem.trajectory.connect``): its ``branches``, ``episodes`` and ``steps``.
        st: the store, for the runs' manifests (the plan's arm order; the first arm is the reference).
        notes: the report's notes, to which what was left out or could not be read is added.
    """
    cur = con.execute(_BRANCH_SQL)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if not rows:
        return []
    runs = sorted({r["run_id"] for r in rows})
    if len(runs) > _MAX_RUNS:
        notes.append(
            f"The branch view shows {_MAX_RUNS} of {len(runs)} branch runs ({', '.join(runs[_MAX_RUNS:][:5])}"
            f"{', ...' if len(runs) > _MAX_RUNS + 5 else ''} left out); `automem branch compare ROOT` covers all."
        )
    outcomes = branch_outcomes(con)
    parents = _Parents(notes)
    budget = _MAX_TOTAL_LINES
    cut_points = cut_lines = 0
    view: list[dict[str, Any]] = []
    try:
        for run_id in runs[:_MAX_RUNS]:
            mine = [r for r in rows if r["run_id"] == run_id]
            plan = stored_plan(read_manifest(st, run_id))
            arms = [a.name for a in plan.arms] if plan is not None else None
            arm_names = arms or sorted({r["arm"] for r in mine})
            points = sorted({r["point"] for r in mine})
            if len(points) > _MAX_POINTS:
                cut_points += len(points) - _MAX_POINTS
                points = points[:_MAX_POINTS]
            shown: list[tuple[int, list[dict[str, Any]]]] = []
            for p in points:
                lines = [r for r in mine if r["point"] == p]
                keep = _keep(lines, arm_names, min(_MAX_LINES, budget))
                if not keep:
                    cut_points += 1
                    continue
                cut_lines += len(lines) - len(keep)
                budget -= len(keep)
                shown.append((p, keep))
            actions = _actions(con, run_id, [r["episode_id"] for _, keep in shown for r in keep])
            for out, parent_run in sorted(
                {(r["parent_out"], r["parent_run_id"]) for _, k in shown for r in k}
            ):
                eps = [
                    k[0]["parent_episode_id"]
                    for _, k in shown
                    if (k[0]["parent_out"], k[0]["parent_run_id"]) == (out, parent_run)
                ]
                parents.load(out, parent_run, sorted(set(eps)))
            view.append(
                {
                    "run_id": run_id,
                    "arms": arm_names,
                    "reference": reference_arm(arm_names, planned=bool(arms)),
                    "n_points": len({r["point"] for r in mine}),
                    "n_episodes": len(mine),
                    "comparison": _comparison([o for o in outcomes if o["run_id"] == run_id], arms),
                    "points": [_point(p, keep, actions, parents) for p, keep in shown],
                }
            )
    finally:
        parents.close()
    if cut_points or cut_lines:
        notes.append(
            f"The branch view leaves out {cut_points} branch point(s) (at most {_MAX_POINTS} per run) and "
            f"{cut_lines} branch episode(s) of the points shown (at most {_MAX_LINES} per point, "
            f"{_MAX_TOTAL_LINES} in all); the comparisons count every committed episode, and "
            '`automem query ROOT "SELECT * FROM branches"` lists them all.'
        )
    return view


def _point(
    p: int, keep: list[dict[str, Any]], actions: dict[str, dict[int, str]], parents: _Parents
) -> dict[str, Any]:
    first = keep[0]
    step = int(first["branch_step"])
    parent = parents.get(
        first["parent_out"], first["parent_run_id"], first["parent_episode_id"], first["parent_attempt"]
    )
    parent_actions: dict[int, str] = (parent or {}).get("actions", {})
    lines = []
    changes: dict[str, str] = {}
    for r in keep:
        changes.setdefault(r["arm"], _short(r["changes"] if r["changes"] != "{}" else "") or "")
        mine = actions.get(r["episode_id"], {})
        at = _divergence(mine, parent_actions) if parent is not None else None
        lines.append(
            {
                "episode_id": r["episode_id"],
                "arm": r["arm"],
                "copy": int(r["copy"]),
                "start": step,
                "end": step + int(r["steps"] or 0),
                "progression": None if r["progression"] is None else round(float(r["progression"]), 4),
                "diverged_at": at,
                "action": None if at is None else _short(mine.get(at)),
                "parent_action": None if at is None else _short(parent_actions.get(at)),
            }
        )
    return {
        "point": p,
        "parent_out": first["parent_out"],
        "parent_run_id": first["parent_run_id"],
        "parent_episode_id": first["parent_episode_id"],
        "parent_attempt": first["parent_attempt"],
        "branch_step": step,
        "parent_readable": parent is not None,
        "parent_steps": None if parent is None else int(parent["steps"] or 0),
        "parent_progression": None
        if parent is None or parent["progression"] is None
        else round(float(parent["progression"]), 4),
        "changes": changes,
        "branches": lines,
    }


__all__ = ["branch_view"]
