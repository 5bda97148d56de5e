"""Trajectory analytics benchmark: SQL over the Parquet store vs a JSON-lines scan, stored bytes vs per-step
memory snapshots, and diagnostics time.

    .venv/bin/python benchmarks/query.py                       # 1,000 episodes x 1,000 steps (about 2-4 min)
    .venv/bin/python benchmarks/query.py --episodes 100 --steps 500 --keep /tmp/store

Prints one JSON line:
- ``speedup_vs_jsonl_scan``: a typical aggregation (mean progression and op error rate by scaffold) with
  ``automem.query`` (a fresh DuckDB connection each time: file listing and commit filtering included) against
  the same rows (``episodes`` and ``memory_ops``, no snapshots) written as JSON lines and aggregated with the
  standard library (``json.loads`` per line). Best of 4 queries and of 2 scans, interleaved. Target >= 20.
- ``bytes_ratio_vs_snapshot_jsonl``: the whole store (every table, Parquet) against JSON lines holding one line
  per step with the step's observation, action, turn completions, operations and a full memory snapshot, as the
  reference implementation stores. The snapshot lines are built (not written) for a sample of episodes, their
  memory rebuilt with ``automem.memory.replay``, and extrapolated by steps; the JSON says how many steps.
- ``diagnostics_s_per_1000_steps``: ``automem diagnose`` over a sample of episodes (replay of every op log).

The store is generated directly with pyarrow in the store's committed layout (vectorised columns, not the
agent), with the shape of a memory agent's run: 1-2 LOG writes and one PLAN read per step, ~5% failing ops, and
the run's episode index that `automem rollout` writes when a run ends (``runs/<run>/episodes.parquet``). The
query is also timed before that index exists (``duckdb_query_s_no_index``: one record file read per episode).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from automem.diagnostics import diagnose  # noqa: E402
from automem.memory import MemoryStore  # noqa: E402
from automem.trajectory import Storage, query  # noqa: E402
from automem.trajectory.runs import write_episode_index  # noqa: E402
from automem.trajectory.schemas import TABLES  # noqa: E402

SCAFFOLDS = ["crafter-v0", "crafter-v1", "crafter-v2", "crafter-v3"]
THINGS = pa.array(["tree", "stone", "water", "cow", "zombie", "table", "coal", "iron", "grass", "sand"])
DIRS = pa.array(["north", "south", "east", "west"])
ACTIONS = pa.array(["noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_table"])
AGG_SQL = """
SELECT e.scaffold_id, avg(e.progression) AS progression, sum(o.errors) / sum(o.ops) AS op_error_rate
FROM episodes e JOIN (
  SELECT run_id, episode_id, attempt, count(*) AS ops, count(*) FILTER (WHERE NOT ok) AS errors
  FROM memory_ops WHERE phase <> 'init' GROUP BY ALL
) o USING (run_id, episode_id, attempt)
GROUP BY 1 ORDER BY 1
"""


def _s(x) -> pa.Array:
    return pc.cast(pa.array(x), pa.string())


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def gen_episode_tables(rng: np.random.Generator, e0: int, n_eps: int, steps: int) -> dict[str, pa.Table]:
    """Rows of episodes ``e0 .. e0+n_eps-1`` (one chunk), every column vectorised."""
    n = n_eps * steps
    ep = np.repeat(np.arange(e0, e0 + n_eps), steps)
    t = np.tile(np.arange(steps), n_eps)
    ep_ids = pc.cast(pa.array(ep), pa.string())
    ep_ids = _join(pa.array(["ep-"] * n), pc.utf8_lpad(ep_ids, 6, "0"))
    run = pa.array(["bench"] * n)
    key = {"run_id": run, "episode_id": ep_ids, "attempt": pa.array(np.ones(n, np.int32))}
    thing = [THINGS.take(pa.array(rng.integers(0, len(THINGS), n))) for _ in range(2)]
    d = DIRS.take(pa.array(rng.integers(0, 4, n)))
    prog = np.minimum(1.0, t / steps * rng.uniform(0.2, 1.0, n_eps).repeat(steps))
    obs = _join(
        pa.array(["Step "] * n),
        _s(t),
        pa.array([". You see "] * n),
        thing[0],
        pa.array([" to the "] * n),
        d,
        pa.array([" and "] * n),
        thing[1],
        pa.array([" nearby.\nInventory: wood "] * n),
        _s(rng.integers(0, 9, n)),
        pa.array([", stone "] * n),
        _s(rng.integers(0, 9, n)),
        pa.array([".\nHealth "] * n),
        _s(rng.integers(1, 10, n)),
        pa.array(["/9. Food 7/9. Drink 6/9. Energy 8/9."] * n),
    )
    act = ACTIONS.take(pa.array(rng.integers(0, len(ACTIONS), n)))
    state = _s(rng.integers(0, 50, n))
    info = _join(
        pa.array(['{"progression": '] * n),
        _s(np.round(prog, 4)),
        pa.array([', "state_key": "'] * n),
        state,
        pa.array(['", "step": '] * n),
        _s(t + 1),
        pa.array(["}"] * n),
    )
    steps_t = pa.table(
        {
            **key,
            "step": pa.array(t.astype(np.int32)),
            "observation": obs,
            "action": act,
            "action_index": pa.array(rng.integers(0, 8, n).astype(np.int32)),
            "action_text": act,
            "action_valid": pa.array(rng.random(n) > 0.03),
            "reward": pa.array(np.zeros(n)),
            "terminated": pa.array(t == steps - 1),
            "truncated": pa.array(np.zeros(n, bool)),
            "progression": pa.array(prog),
            "info_json": info,
        },
        schema=TABLES["steps"],
    )
    # Ops: LOG APPEND (every step), a second LOG write on half the steps, a PLAN read (SEARCH or READ).
    note = _join(
        pa.array(["saw "] * n), thing[0], pa.array([" to the "] * n), d, pa.array([" at step "] * n), _s(t)
    )
    second = rng.random(n) < 0.5
    fail = rng.random(n) < 0.05
    rows_idx = np.concatenate([np.arange(n), np.nonzero(second)[0], np.arange(n)])
    kind = np.concatenate([np.zeros(n, int), np.ones(second.sum(), int), np.full(n, 2)])
    order = np.lexsort((kind, rows_idx))
    rows_idx, kind = rows_idx[order], kind[order]
    m = len(rows_idx)
    is_read = kind == 2
    failing = fail[rows_idx] & (kind == 1)  # the second write goes to a file that is not there
    use_search = rng.random(m) < 0.7
    op = np.where(is_read, np.where(use_search, "SEARCH", "READ"), np.where(failing, "REPLACE", "APPEND"))
    name = pa.array(np.where(kind == 1, np.where(failing, "missing.md", "places.md"), "notes.md"))
    text = note.take(pa.array(rows_idx))
    first = pc.if_else(pa.array(is_read & use_search), thing[1].take(pa.array(rows_idx)), name)
    flat = pa.concat_arrays([first.cast(pa.string()), text])  # arg 1 for all; arg 2 only for writes
    writes = ~is_read | failing
    n_args = np.where(writes, 2, 1) + np.where(failing, 1, 0)
    idx_first, idx_text = np.arange(m), np.arange(m) + m
    take = np.empty(int(n_args.sum()), np.int64)
    starts = np.concatenate([[0], np.cumsum(n_args)[:-1]])
    take[starts] = idx_first
    second_slot = starts[n_args >= 2] + 1
    take[second_slot] = idx_text[n_args >= 2]
    third_slot = starts[n_args == 3] + 2
    take[third_slot] = idx_text[n_args == 3]
    args = pa.ListArray.from_arrays(
        pa.array(np.concatenate([starts, [len(take)]]).astype(np.int32)), flat.take(pa.array(take))
    )
    ok = ~failing
    sel = pa.array(rows_idx)
    ops_t = pa.table(
        {
            "run_id": run.take(sel),
            "episode_id": ep_ids.take(sel),
            "attempt": pa.array(np.ones(m, np.int32)),
            "step": pa.array(t[rows_idx].astype(np.int32)),
            "phase": pa.array(np.where(is_read, "plan", "log")),
            "turn": pa.array(np.zeros(m, np.int32)),
            "seq": pa.array((kind == 1).astype(np.int32)),
            "op": pa.array(op),
            "args": args,
            "ok": pa.array(ok),
            "read_only": pa.array(is_read),
            "error_kind": pa.array(np.where(failing, "missing", None)),
            "bytes_delta": pa.array(np.where(writes & ok, 40, 0)),
            "output_chars": pa.array(np.where(is_read, rng.integers(0, 800, m), 20).astype(np.int32)),
        },
        schema=TABLES["memory_ops"],
    )
    completion = pc.if_else(
        pa.array(is_read),
        _join(pa.array(["SEARCH "] * m), first.cast(pa.string())),
        _join(pa.array(["APPEND notes.md "] * m), text),
    )
    turns_t = pa.table(
        {
            "run_id": run.take(sel),
            "episode_id": ep_ids.take(sel),
            "attempt": pa.array(np.ones(m, np.int32)),
            "step": ops_t["step"],
            "phase": ops_t["phase"],
            "turn": ops_t["turn"],
            "model": pa.array(["smollm2"] * m),
            "prompt_tokens": pa.array(rng.integers(300, 900, m).astype(np.int32)),
            "prompt_tokens_est": pa.array(rng.integers(300, 900, m).astype(np.int32)),
            "prefix_hash": pa.array(["h1"] * m),
            "messages_json": pa.array(['[{"role": "user", "content": "(prompt)"}]'] * m),
            "completion": completion,
            "completion_tokens": pa.array(rng.integers(5, 40, m).astype(np.int32)),
            "latency_s": pa.array(rng.uniform(0.05, 0.5, m)),
            "constraint": pa.nulls(m, pa.string()),
            "n_ops": pa.array(np.ones(m, np.int32)),
            "n_op_errors": pa.array(failing.astype(np.int32)),
            "action": pa.nulls(m, pa.string()),
            "action_valid": pa.nulls(m, pa.bool_()),
        },
        schema=TABLES["turns"],
    )
    return {"steps": steps_t, "memory_ops": ops_t, "turns": turns_t, "_prog": prog, "_ids": ep_ids}


def generate(root: str, episodes: int, steps: int, chunk: int = 50) -> None:
    """Write the store in the committed layout: per episode one file per table and an episodes row, last."""
    rng = np.random.default_rng(0)
    ep_rows = []
    for e0 in range(0, episodes, chunk):
        k = min(chunk, episodes - e0)
        tabs = gen_episode_tables(rng, e0, k, steps)
        for name in ("steps", "memory_ops", "turns"):
            tab = tabs[name]
            bounds = np.searchsorted(
                tab["episode_id"].to_numpy(zero_copy_only=False),
                tabs["_ids"].unique().to_numpy(zero_copy_only=False),
            )
            bounds = list(bounds) + [tab.num_rows]
            for i in range(k):
                part = tab.slice(bounds[i], bounds[i + 1] - bounds[i])
                ep_id = part["episode_id"][0].as_py()
                path = os.path.join(root, "tables", name, "bench", f"{ep_id}.parquet")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                pq.write_table(part, path, compression="zstd")
        for i in range(k):
            e = e0 + i
            ep_rows.append(
                {
                    "run_id": "bench",
                    "episode_id": f"ep-{e:06d}",
                    "attempt": 1,
                    "env_id": "crafter-v0",
                    "seed": e % 100,
                    "scaffold_id": SCAFFOLDS[e % 4],
                    "scaffold_content_id": "c",
                    "memory_model": "smollm2",
                    "action_model": "smollm2",
                    "status": "truncated",
                    "progression": float(tabs["_prog"][(i + 1) * steps - 1]),
                    "episode_return": 0.0,
                    "steps": steps,
                    "invalid_actions": 0,
                    "turns": 0,
                    "prompt_tokens": 600 * steps,
                    "completion_tokens": 20 * steps,
                    "llm_seconds": 0.3 * steps,
                    "env_seconds": 0.0,
                    "wall_seconds": 0.0,
                    "op_errors": 0,
                    "system_prompt": "system",
                    "started_at": None,
                    "committed_at": None,
                }
            )
    for r in ep_rows:  # the commit record of each episode, last
        path = os.path.join(root, "tables", "episodes", "bench", f"{r['episode_id']}.parquet")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(pa.Table.from_pylist([r], TABLES["episodes"]), path, compression="zstd")


def write_jsonl(root: str, out: str) -> None:
    """The rows the aggregation reads (episodes and memory_ops), as JSON lines."""
    for name, cols in (
        ("episodes", ["run_id", "episode_id", "attempt", "scaffold_id", "progression"]),
        ("memory_ops", None),
    ):
        with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
            for batch in (
                pq.ParquetDataset(os.path.join(root, "tables", name)).read(columns=cols).to_batches(65536)
            ):
                for row in batch.to_pylist():
                    f.write(json.dumps(row) + "\n")


def jsonl_scan(out: str) -> tuple[float, list]:
    """The aggregation over the JSON lines with the standard library; returns (seconds, result)."""
    t0 = time.perf_counter()
    scaffold, prog = {}, defaultdict(list)
    with open(os.path.join(out, "episodes.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            key = (r["run_id"], r["episode_id"], r["attempt"])
            scaffold[key] = r["scaffold_id"]
            prog[r["scaffold_id"]].append(r["progression"])
    ops, errs = defaultdict(int), defaultdict(int)
    with open(os.path.join(out, "memory_ops.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["phase"] == "init":
                continue
            s = scaffold.get((r["run_id"], r["episode_id"], r["attempt"]))
            if s is not None:
                ops[s] += 1
                errs[s] += not r["ok"]
    result = [(s, sum(v) / len(v), errs[s] / ops[s]) for s, v in sorted(prog.items())]
    return time.perf_counter() - t0, result


def snapshot_bytes(root: str, sample: list[str]) -> tuple[int, int]:
    """Size of the reference's per-step JSON lines (with a full memory snapshot) for the sampled episodes."""
    ids = ", ".join(f"'{e}'" for e in sample)
    steps = query(
        root, f"SELECT episode_id, step, observation, action FROM steps WHERE episode_id IN ({ids})"
    )
    ops = query(
        root,
        f"SELECT episode_id, step, phase, turn, seq, op, args, ok, read_only FROM memory_ops "
        f"WHERE episode_id IN ({ids}) ORDER BY episode_id, step, phase, turn, seq",
    ).to_pylist()
    turns = query(
        root, f"SELECT episode_id, step, completion FROM turns WHERE episode_id IN ({ids})"
    ).to_pylist()
    by_ep, comp = defaultdict(list), defaultdict(list)
    for o in ops:
        by_ep[o["episode_id"]].append(o)
    for t in turns:
        comp[(t["episode_id"], t["step"])].append(t["completion"])
    total = n = 0
    for ep in sample:
        per_step = defaultdict(list)
        for o in by_ep[ep]:
            per_step[o["step"]].append(o)
        store = MemoryStore.in_memory()
        for s in sorted((r for r in steps.to_pylist() if r["episode_id"] == ep), key=lambda r: r["step"]):
            step_ops = per_step[s["step"]]
            for o in step_ops:  # replay, one step at a time (automem.memory.replay, incrementally)
                if o["ok"] and not o["read_only"]:
                    store.run_op(o["op"], list(o["args"]))
            ops_out = [{"op": o["op"], "args": o["args"], "ok": o["ok"]} for o in step_ops]
            memory = dict(store.backend.files)  # type: ignore[attr-defined]  # the snapshot a per-step store keeps
            line = {**s, "turns": comp[(ep, s["step"])], "ops": ops_out, "memory": memory}
            total += len(json.dumps(line)) + 1
            n += 1
    return total, n


def tree_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--snapshot-sample", type=int, default=4, help="episodes whose snapshot lines are built")
    p.add_argument("--diagnose-sample", type=int, default=10, help="episodes diagnosed for the timing")
    p.add_argument("--keep", help="keep the store here instead of a temporary folder")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="automem-bench-query-")
    root = args.keep or os.path.join(work, "store")
    try:
        t0 = time.perf_counter()
        generate(root, args.episodes, args.steps)
        gen_s = time.perf_counter() - t0
        n_steps = query(root, "SELECT count(*) AS n FROM steps")["n"][0].as_py()
        write_jsonl(root, work)
        no_index = []
        for _ in range(2):
            t0 = time.perf_counter()
            query(root, AGG_SQL)
            no_index.append(time.perf_counter() - t0)
        write_episode_index(Storage(root), "bench")  # as `automem rollout` does when a run ends
        # Interleaved, best of each: other work on a shared machine slows either side at random.
        times, scans = [], []
        for _ in range(2):
            for _ in range(2):
                t0 = time.perf_counter()
                duck = query(root, AGG_SQL).to_pylist()
                times.append(time.perf_counter() - t0)
            s_, ref = jsonl_scan(work)
            scans.append(s_)
        scan_s = min(scans)
        assert [
            (r["scaffold_id"], round(r["progression"], 9), round(r["op_error_rate"], 9)) for r in duck
        ] == [(s, round(p_, 9), round(e, 9)) for s, p_, e in ref], "the two aggregations disagree"
        stored = tree_bytes(os.path.join(root, "tables"))
        sample = [f"ep-{e:06d}" for e in range(args.snapshot_sample)]
        snap, snap_steps = snapshot_bytes(root, sample)
        ref_bytes = snap / snap_steps * n_steps
        sel = f"SELECT episode_id FROM episodes ORDER BY episode_id LIMIT {args.diagnose_sample}"
        t0 = time.perf_counter()
        diag = diagnose(root, "scaffold", episodes=sel, ci=False)
        diag_s = time.perf_counter() - t0
        diag_steps = sum(diag.episodes.table["steps"].to_pylist())
        print(
            json.dumps(
                {
                    "steps": n_steps,
                    "memory_ops": query(root, "SELECT count(*) AS n FROM memory_ops")["n"][0].as_py(),
                    "speedup_vs_jsonl_scan": round(scan_s / min(times), 1),
                    "speedup_vs_jsonl_scan_no_index": round(scan_s / min(no_index), 1),
                    "duckdb_query_s_no_index": round(min(no_index), 3),
                    "duckdb_query_s": round(min(times), 3),
                    "jsonl_scan_s": round(scan_s, 2),
                    "duckdb_query_s_runs": [round(x, 2) for x in times],
                    "jsonl_scan_s_runs": [round(x, 1) for x in scans],
                    "bytes_ratio_vs_snapshot_jsonl": round(ref_bytes / stored, 1),
                    "stored_bytes": stored,
                    "snapshot_jsonl_bytes_extrapolated": int(ref_bytes),
                    "snapshot_sample_steps": snap_steps,
                    "diagnostics_s_per_1000_steps": round(diag_s / diag_steps * 1000, 3),
                    "diagnostics_sample_steps": diag_steps,
                    "generate_s": round(gen_s, 1),
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
