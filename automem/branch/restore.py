"""Restore: put a stored episode's game and memory back exactly as they were at step t.

``restore(root, run_id, episode_id, t)`` returns the state the agent was in when step ``t`` began:

- **the game**: the episode's environment (``make_env(env_id)``; the manifest's ``env_kwargs`` when a run
  recorded any) reset with the episode's seed, then stepped with the recorded actions of steps ``0 .. t-1``. Its
  observation is then the one the agent saw at step ``t`` (``steps.observation`` of step ``t``: a step's row holds
  the observation its action answered). Every observation on the way, the reset's (step 0) and each action's
  (steps 1 .. t), is checked against the stored one byte for byte: the store and the environment code must agree
  at every step, or the restore fails naming the first step that differs.
- **the memory**: the files rebuilt from the op log (``memory_ops``) with every successful write of the scaffold's
  initial files (phase ``init``) and of steps ``0 .. t-1``: the memory as it was when step ``t``'s LOG turn began,
  i.e. after step ``t-1``'s action (its LOG and PLAN turns ran before it; PLAN only reads). At ``t = 0`` it is
  the scaffold's initial files. Step ``t``'s own LOG turn is not applied: a branch at ``t`` replays from LOG on.

So ``t`` means the same for both: the moment between step ``t-1``'s action and step ``t``'s first memory turn. The
valid steps are ``0 .. steps-1`` (the steps whose observation is stored; the state after an episode's last action
has no stored observation to check against, and the game is usually over there).

Only committed episodes can be restored (only their rows are visible), and only from a store of this code's schema
(``SCHEMA_VERSION``, from the run's manifest and the episode's files). Every problem is a ``RestoreError``: one line
that names the fix. Nothing is written unless everything was checked: with ``memory_dir``, the files are written to
a temporary folder beside it, renamed into place only after the replay matched every step.

    from automem.branch import restore
    r = restore("runs", "crafter-v0-20250101T000000", "000000-crafter-v0-s0", 12, memory_dir="/tmp/mem")
    print(r.observation)  # what the agent saw at step 12; r.env plays on from there (close it when done)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from automem.envs.base import InvalidActionError, TextEnv
from automem.envs.registry import UnknownEnvError, make_env
from automem.memory.oplog import replay
from automem.memory.paths import check_name
from automem.trajectory.reader import StoreFileError, check_rows, read_manifest, visible_files
from automem.trajectory.runs import package_versions, recorded_attempts, staged_attempts
from automem.trajectory.schemas import SCHEMA_VERSION, TABLES
from automem.trajectory.storage import Storage
from automem.trajectory.store import StoreError, list_runs, open_store
from automem.trajectory.writer import check_id

ENV_PACKAGES = ("crafter", "nle", "minihack")
"""The packages whose code decides what a game shows: a divergence names their versions, when recorded and here."""

PHASE_RANK = {"init": 0, "log": 1, "plan": 2}
"""Execution order of a step's memory phases (``automem.trajectory.PHASE_ORDER_SQL``)."""

_EXCERPT = 24  # characters of each observation shown around the first difference


class RestoreError(ValueError):
    """A stored episode cannot be restored at the step asked for; the message is one line naming the fix."""


@dataclass
class Restored:
    """A stored episode's state at ``step`` (see the module docstring for what that means exactly).

    Attributes:
        run_id, episode_id, attempt: the episode's key (``attempt``: the one whose record committed).
        step: the step restored.
        env: the live game, positioned at ``step``: its next ``step()`` plays step ``step``'s action. The caller
            owns it (``close()`` it, or ``Restored.close``).
        observation: what the agent saw at ``step`` (equal to the stored ``steps.observation``).
        info: the game's ``info`` with that observation.
        memory: the memory files then, ``{name: content}``.
        record: the episode's committed ``episodes`` row (env_id, seed, scaffold, models, steps, status, ...).
        memory_dir: where the memory folder was written, or None.
        actions: the recorded actions of steps ``0 .. step-1``, by name, as replayed.
    """

    run_id: str
    episode_id: str
    attempt: int
    step: int
    env: TextEnv
    observation: str
    info: dict[str, Any]
    memory: dict[str, str]
    record: dict[str, Any]
    memory_dir: str | None = None
    actions: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Close the game."""
        self.env.close()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _listing_hint(root: str, run_id: str) -> str:
    sql = f"SELECT episode_id, steps, status FROM episodes WHERE run_id = '{run_id}' ORDER BY 1"
    return f'list the committed episodes with: automem query {root} "{sql}"'


def _version(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _check_schema(found: object, where: str, manifest: dict[str, Any] | None) -> None:
    """Raise unless ``found`` (a schema version read from ``where``; None: not recorded) is this code's."""
    if found is None or str(found) == SCHEMA_VERSION:
        return
    wrote = ((manifest or {}).get("packages") or {}).get("automem")
    by = f" (automem {wrote})" if wrote else ""
    mine, theirs = _version(SCHEMA_VERSION), _version(found)
    if mine is not None and theirs is not None and theirs > mine:
        raise RestoreError(
            f"{where} was written by store schema {found}, newer than this code's {SCHEMA_VERSION}: upgrade "
            "automem to restore it"
        )
    raise RestoreError(
        f"{where} was written by an older store schema ({found}{by}); this code reads schema {SCHEMA_VERSION}: "
        "restore it with the automem version that wrote it, or record the episode again with this one"
    )


def _read_rows(
    st: Storage,
    table: str,
    run_id: str,
    episode_id: str,
    attempt: int,
    manifest: dict[str, Any] | None,
    columns: list[str] | None = None,
) -> pa.Table:
    """The committed rows of one episode in ``table`` (only the committed attempt's: ``visible_files``; some
    ``columns``, the keys always), each checked against the file's name, the file's schema version checked."""
    path = st.path("tables", table, run_id, f"{episode_id}.parquet")
    if not st.exists(path):
        raise RestoreError(
            f"{path}: missing, but episode {episode_id} is committed: the store is damaged (copied in part?); "
            "restore from a complete copy of the store"
        )
    shown = visible_files(table, [path], {(run_id, episode_id): attempt})
    if path not in shown:  # cannot happen for a committed episode; the rule is applied all the same
        raise RestoreError(f"{path}: not visible to readers; restore from a complete copy of the store")
    try:
        file = pq.ParquetFile(pa.BufferReader(st.read_bytes(path)))
        meta = file.schema_arrow.metadata or {}
        found = meta.get(b"automem.schema_version")
        _check_schema(None if found is None else found.decode(), path, manifest)
        names = TABLES[table].names if columns is None else columns
        cols = list(dict.fromkeys(["run_id", "episode_id", "attempt", *names]))
        rows = file.read(columns=cols)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise StoreFileError(path, f"cannot be read: {_one_line(exc)}") from exc
    check_rows(table, path, rows)
    return rows.filter(pc.equal(rows["attempt"], shown[path]))


def _record(st: Storage, run_id: str, episode_id: str, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The episode's committed ``episodes`` row, or a ``RestoreError`` saying why there is none (or why it cannot
    be replayed: a branch episode starts mid-game, so its own rows do not begin at a reset)."""
    branch = ((manifest or {}).get("config") or {}).get("branch")
    if branch:
        raise RestoreError(
            f"run {run_id} is a branch run (of {branch.get('parent_run')} in {branch.get('parent_out')}): its "
            "episodes start mid-game and cannot be replayed alone; restore or branch the parent episode (the "
            "branches view names it) with the branch's settings instead"
        )
    path = st.path("tables", "episodes", run_id, f"{episode_id}.parquet")
    if st.exists(path):
        try:
            file = pq.ParquetFile(pa.BufferReader(st.read_bytes(path)))
            found = (file.schema_arrow.metadata or {}).get(b"automem.schema_version")
            _check_schema(None if found is None else found.decode(), path, manifest)
            rows = file.read()
        except (pa.ArrowException, OSError) as exc:
            raise StoreFileError(path, f"cannot be read: {_one_line(exc)}") from exc
        check_rows("episodes", path, rows)
        if rows.num_rows == 1:
            return rows.to_pylist()[0]
        raise StoreFileError(path, f"holds {rows.num_rows} records; a commit record holds one")
    hint = _listing_hint(st.uri, run_id)
    runs = list_runs(st) if manifest is None else [run_id]
    if run_id not in runs:
        shown = ", ".join(runs[:8]) + (f" and {len(runs) - 8} more" if len(runs) > 8 else "")
        raise RestoreError(f"{st.uri} has no run {run_id!r}; its runs: {shown or 'none'}")
    failed = sorted(a for e, a in recorded_attempts(st, run_id) if e == episode_id)
    staged = staged_attempts(st, run_id).get(episode_id)
    if staged is not None:
        why = f"attempt {staged} is still playing, or its driver stopped (resume the run to finish it)"
    elif failed:
        why = f"its {len(failed)} attempt(s) failed (see the attempts table; a resume of the run plays it again)"
    else:
        why = "the run has no episode of this id"
    raise RestoreError(f"episode {episode_id!r} of run {run_id} is not committed: {why}; {hint}")


def memory_at(
    ops: pa.Table | list[dict[str, Any]], step: int, drop_turns: Iterable[str] = ()
) -> dict[str, str]:
    """The memory files when step ``step`` began (before its LOG turn): the op log's successful writes of phase
    ``init`` and of steps ``0 .. step-1``, in execution order (step, phase, turn, seq).

    Args:
        ops: one episode's ``memory_ops`` rows (an Arrow table or dicts; only its committed attempt's).
        step: the step, 0 or more.
        drop_turns: memory turns ``STEP:PHASE:TURN`` whose operations are left out (a counterfactual memory:
            what the files would be had those turns written nothing; later writes are replayed as recorded).
    """
    dropped = set(drop_turns)
    rows = ops.to_pylist() if isinstance(ops, pa.Table) else list(ops)
    rows.sort(key=lambda r: (r["step"], PHASE_RANK.get(r["phase"], 3), r["turn"], r["seq"]))
    return replay(
        r
        for r in rows
        if (r["phase"] == "init" or r["step"] < step)
        and f"{r['step']}:{r['phase']}:{r['turn']}" not in dropped
    )


def _turns(ops: pa.Table) -> set[tuple[int, str, int]]:
    """The (step, phase, turn) keys of the memory turns that have operations in ``ops``."""
    cols = ops.select(["step", "phase", "turn"]).to_pylist()
    return {(r["step"], r["phase"], r["turn"]) for r in cols if r["phase"] != "init"}


def episode_record(root: str | Storage, run_id: str, episode_id: str) -> dict[str, Any]:
    """The committed ``episodes`` row of a stored episode (env, seed, scaffold, models, steps, attempt).

    Raises:
        RestoreError: the run or episode is unknown, not committed, or of another schema.
    """
    try:
        check_id("run id", run_id)
        check_id("episode id", episode_id)
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    st = open_store(root)
    manifest = read_manifest(st, run_id)
    if manifest is not None:
        _check_schema(manifest.get("schema_version"), f"run {run_id} (its manifest)", manifest)
    return _record(st, run_id, episode_id, manifest)


def _difference(stored: str, replayed: str) -> str:
    """Where two observations first differ, with a short excerpt of each there (one line)."""
    k = next((i for i, (a, b) in enumerate(zip(stored, replayed, strict=False)) if a != b), None)
    if k is None:
        k = min(len(stored), len(replayed))
        return f"at character {k} (the stored one has {len(stored)} characters, the replayed one {len(replayed)})"
    lo = max(0, k - _EXCERPT // 2)
    return (
        f"at character {k} (stored {stored[lo : k + _EXCERPT]!r}, replayed {replayed[lo : k + _EXCERPT]!r})"
    )


def _versions_note(manifest: dict[str, Any] | None) -> str:
    """The env packages when recorded (the manifest's) and here, for a divergence's message."""
    here = package_versions()
    then = (manifest or {}).get("packages") or {}
    names = [n for n in ENV_PACKAGES if n in here or n in then]
    if not then:
        now = ", ".join(f"{n} {here[n]}" for n in names if n in here)
        return f"the run's manifest records no package versions (here: {now or 'none'})"
    differ = [n for n in names if then.get(n) != here.get(n)]
    if differ:
        return "env package versions when recorded vs here: " + ", ".join(
            f"{n} {then.get(n, 'absent')} vs {here.get(n, 'absent')}" for n in differ
        )
    same = ", ".join(f"{n} {here[n]}" for n in names if n in here)
    return f"the env packages are the same ({same}), so this checkout's game code differs, or the store was edited"


def _diverged(step: int, problem: str, manifest: dict[str, Any] | None) -> RestoreError:
    return RestoreError(
        f"step {step}: {problem}: the store was written by other environment code ({_versions_note(manifest)}); "
        "restore with the code and packages that recorded it"
    )


def _target(memory_dir: str | os.PathLike[str]) -> Path:
    """``memory_dir`` checked as a place to write the memory folder: new, or an empty folder."""
    path = Path(memory_dir)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise RestoreError(f"{path} exists and is not a folder: give a new folder for the memory (--to)")
    if path.is_dir() and any(path.iterdir()):
        raise RestoreError(f"{path} is not empty: give a new or empty folder for the memory (--to)")
    return path


def _write_memory(files: dict[str, str], target: Path) -> None:
    """Write ``files`` to a temporary folder beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-restore-{target.name}-", dir=target.parent))
    try:
        for name, content in files.items():
            check_name(name)  # the op log's names were checked when written; a store could be edited since
            path = tmp.joinpath(*name.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode("utf-8", "surrogateescape"))
        if target.is_dir():
            target.rmdir()  # empty (checked); a folder created meanwhile with files in it makes this fail
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _step_rows(steps: pa.Table, upto: int, path_hint: str) -> list[dict[str, Any]]:
    """Steps ``0 .. upto`` of ``steps`` in order, or a ``RestoreError`` if the store lacks one."""
    rows = [r for r in steps.to_pylist() if r["step"] is not None and r["step"] <= upto]
    rows.sort(key=lambda r: r["step"])
    if [r["step"] for r in rows] != list(range(upto + 1)):
        have = sorted({r["step"] for r in rows})
        missing = sorted(set(range(upto + 1)) - set(have))
        what = f"lacks step {missing[0]}" if missing else "holds a step twice"
        raise RestoreError(
            f"{path_hint}: {what}: the store is damaged; restore from a complete copy of the store"
        )
    return rows


def restore(
    root: str | Storage,
    run_id: str,
    episode_id: str,
    step: int,
    *,
    attempt: int | None = None,
    memory_dir: str | os.PathLike[str] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    drop_turns: Iterable[str] = (),
) -> Restored:
    """The stored episode's game and memory at ``step`` (module docstring), every observation checked.

    Args:
        root: the store: a folder or ``s3://bucket/prefix`` (or its ``Storage``).
        run_id, episode_id: the episode.
        step: the step to restore, ``0 .. steps-1``.
        attempt: the attempt expected to be the committed one (None: whichever committed).
        memory_dir: write the memory files here (a new or empty folder), only once every check passed.
        env_kwargs: overrides of the environment's registered settings (default: the manifest's ``env_kwargs``
            if the run recorded any, else none, which is how rollouts make their games).
        drop_turns: memory turns ``STEP:PHASE:TURN`` of steps before ``step`` whose operations are left out of
            the memory (``memory_at``).

    Raises:
        RestoreError: a step out of range, an episode not committed (or another attempt committed), a store of
            another schema, a damaged store, a replay that diverges from the store, or a ``memory_dir`` that is
            not new or empty.
        StoreError: no store at ``root``; ``StoreFileError``: a file of the episode cannot be read.
    """
    try:
        check_id("run id", run_id)
        check_id("episode id", episode_id)
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    if isinstance(step, bool) or not isinstance(step, int):
        raise RestoreError(f"the step must be an integer, not {step!r}")
    target = _target(memory_dir) if memory_dir is not None else None
    st = open_store(root)
    manifest = read_manifest(st, run_id)
    if manifest is not None:
        _check_schema(manifest.get("schema_version"), f"run {run_id} (its manifest)", manifest)
    record = _record(st, run_id, episode_id, manifest)
    committed = int(record["attempt"])
    if attempt is not None and attempt != committed:
        raise RestoreError(
            f"episode {episode_id} committed attempt {committed}, not {attempt}; only a committed attempt is "
            f"stored whole: pass --attempt {committed} or leave it out"
        )
    n_steps = int(record["steps"] or 0)
    if n_steps == 0:
        raise RestoreError(f"episode {episode_id} has no steps to restore")
    if not 0 <= step < n_steps:
        raise RestoreError(
            f"step {step} is outside episode {episode_id}, which has {n_steps} steps: give a step from 0 to "
            f"{n_steps - 1}"
        )
    steps_path = st.path("tables", "steps", run_id, f"{episode_id}.parquet")
    step_cols = ["step", "observation", "action"]
    steps = _step_rows(
        _read_rows(st, "steps", run_id, episode_id, committed, manifest, step_cols), step, steps_path
    )
    ops = _read_rows(st, "memory_ops", run_id, episode_id, committed, manifest)
    drop_turns = tuple(drop_turns)
    unknown = sorted(set(drop_turns) - {f"{s}:{p}:{t}" for s, p, t in _turns(ops) if s < step})
    if unknown:
        raise RestoreError(
            f"episode {episode_id} has no memory turn {', '.join(unknown)} before step {step} "
            "(turns are STEP:PHASE:TURN; see its memory_ops)"
        )
    memory = memory_at(ops, step, drop_turns)

    env_id, seed = record["env_id"], record["seed"]
    if seed is None:
        raise RestoreError(f"episode {episode_id} has no recorded seed: its game cannot be replayed")
    kwargs = dict(env_kwargs if env_kwargs is not None else (manifest or {}).get("env_kwargs") or {})
    try:
        env = make_env(env_id, **kwargs)
    except UnknownEnvError as exc:
        raise RestoreError(f"episode {episode_id}: {exc}; restore with the code that recorded it") from None
    except ImportError as exc:
        raise RestoreError(
            f"episode {episode_id} is of {env_id}, whose game cannot be loaded here: {exc}"
        ) from None
    try:
        observation, info = env.reset(seed=seed)
        if observation != steps[0]["observation"]:
            problem = "the stored observation and the replayed one (after reset with seed "
            raise _diverged(
                0, f"{problem}{seed}) differ {_difference(steps[0]['observation'], observation)}", manifest
            )
        names = [a.name for a in env.actions]
        for i in range(step):
            action = steps[i]["action"]
            chosen: int | str = names.index(action) if action in names else action
            try:
                observation, _, terminated, truncated, info = env.step(chosen)
            except InvalidActionError:
                raise _diverged(
                    i, f"the recorded action {action!r} is not an action of the replayed game", manifest
                ) from None
            stored = steps[i + 1]["observation"]
            if observation != stored:
                problem = (
                    f"the stored observation and the replayed one differ {_difference(stored, observation)}"
                )
                raise _diverged(i + 1, f"{problem} (after step {i}'s action {action!r})", manifest)
            if terminated or truncated:
                raise _diverged(
                    i + 1,
                    f"the replayed game ended after step {i}'s action, the stored one went on",
                    manifest,
                )
        if target is not None:
            _write_memory(memory, target)
    except BaseException:
        env.close()
        raise
    return Restored(
        run_id=run_id,
        episode_id=episode_id,
        attempt=committed,
        step=step,
        env=env,
        observation=observation,
        info=info,
        memory=memory,
        record=record,
        memory_dir=None if target is None else str(target),
        actions=[steps[i]["action"] for i in range(step)],
    )


__all__ = ["ENV_PACKAGES", "RestoreError", "Restored", "StoreError", "episode_record", "memory_at", "restore"]
