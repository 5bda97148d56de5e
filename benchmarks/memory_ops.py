"""Memory-operation costs: SEARCH latency on a big file, APPEND cost vs file size, parsing cost.

    .venv/bin/python benchmarks/memory_ops.py

Prints one JSON line. Targets (issue 4): search_p99_ms_10k_lines <= 2, append_us_ratio_100k_vs_100_lines <= 2.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from automem.memory import MemoryStore, Quotas, parse
from automem.memory.ops import REGISTRY

BIG = Quotas(max_file_bytes=10**9, max_total_bytes=10**10, max_output_chars=10**9, max_ops_per_turn=10**6)


def make_file(store: MemoryStore, name: str, lines: int) -> None:
    text = "".join(
        f"step {i}: saw a {'tree' if i % 97 == 0 else 'stone'} at ({i % 64},{i % 31}) near water\n"
        for i in range(lines)
    )
    store.run_op("WRITE", [name, text])


def time_op(store: MemoryStore, op: str, args: list[str], reps: int) -> list[float]:
    spec = REGISTRY[op]
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        store.run_op(spec.name, args)
        out.append(time.perf_counter() - t0)
    return out


def p99(xs: list[float]) -> float:
    return sorted(xs)[int(0.99 * (len(xs) - 1))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore.open_dir(Path(tmp), BIG)
        make_file(store, "big.md", 10_000)
        make_file(store, "k100.md", 100_000)
        make_file(store, "h100.md", 100)
        time_op(store, "SEARCH", ["TREE", "big.md"], 20)  # warm the page cache
        search = time_op(store, "SEARCH", ["TREE", "big.md"], 500)
        search_miss = time_op(store, "SEARCH", ["lava", "big.md"], 200)
        # Interleave the two APPEND measurements so drift hits both equally.
        a_big, a_small = [], []
        for i in range(2000):
            a_big += time_op(store, "APPEND", ["k100.md", f"note {i}: found coal"], 1)
            a_small += time_op(store, "APPEND", ["h100.md", f"note {i}: found coal"], 1)
        turn = (
            "\n".join(
                [
                    "APPEND notes.md found a tree at the river",
                    'SEARCH "iron ore" *',
                    "READ notes.md 1 20",
                    "UPSERT state.md hp 9",
                ]
                * 25
            )
            + "\nDONE"
        )
        reps = 200
        t0 = time.perf_counter()
        for _ in range(reps):
            parsed = parse(turn)
        parse_us = (time.perf_counter() - t0) / (reps * len(parsed)) * 1e6
    print(
        json.dumps(
            {
                "search_p99_ms_10k_lines": round(p99(search) * 1e3, 3),
                "search_median_ms_10k_lines": round(statistics.median(search) * 1e3, 3),
                "search_miss_p99_ms_10k_lines": round(p99(search_miss) * 1e3, 3),
                "append_us_100k_lines": round(statistics.median(a_big) * 1e6, 2),
                "append_us_100_lines": round(statistics.median(a_small) * 1e6, 2),
                "append_us_ratio_100k_vs_100_lines": round(
                    statistics.median(a_big) / statistics.median(a_small), 3
                ),
                "parse_us_per_op": round(parse_us, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
