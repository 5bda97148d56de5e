"""Loop 2 training benchmark: train tokens/s of plain TRL and of the same run under Ray Train.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/training.py                 # 6 steps each, ~3-5 min on 2 cores
    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/training.py --steps 3 --prompt-words 40 --precision fp32

Both runs train the ``cpu-small`` preset on the embedded SmolLM2-135M-Instruct, on the same generated dataset
(memory turns whose prompt is a system text plus an observation of ``--prompt-words`` words, ~600 tokens by default
as in real Crafter turns), with one worker of ``--threads`` torch threads: in this process
(``automem.training.LocalLauncher``) and on one Ray Train ``TorchTrainer`` worker
(``actors.training.RayTrainLauncher``, a local cluster started here). Prints one JSON line:

- ``trl_tokens_per_s`` and ``ray_train_tokens_per_s``: train tokens (prompt and completion, as TRL counts
  ``num_tokens``) over the trainer's own ``train_runtime``, so model loading and Ray's start-up are left out;
- ``ray_train_vs_trl_throughput``: their ratio (target at least 0.9). On a shared 2-core machine it mostly measures
  the CPU share each run got (it swung from 0.5 to 4 in busy minutes): read it with ``load_avg_1m`` and
  ``ray_train_vs_trl_cpu_efficiency`` (tokens per CPU-second of the training process, Ray over plain);
- ``dataset_build_s_per_10k_turns``: building a ``utility+outcome`` dataset (selection with provenance and
  post-process) from a synthetic store, on one core, per 10,000 memory turns (target at most 10 s;
  ``benchmarks/distill_dataset.py`` alone prints its details);
- ``ray_train_overhead_s``: the Ray run's wall time minus the plain run's (start-up, worker, checkpoint copy);
- losses, precision and threads, so a figure can be read against the run it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from automem.distill.dataset import MANIFEST_FILE, ROWS_FILE, rows_table  # noqa: E402
from automem.training import LocalLauncher, load_distill_config, train_adapter  # noqa: E402

WORDS = (
    "tree water stone grass sand coal iron table cow zombie skeleton path lava diamond plant arrow".split()
)


def write_rows(folder: Path, rows: int, prompt_words: int) -> None:
    """A dataset of ``rows`` memory turns in the ``automem distill dataset`` layout."""
    folder.mkdir(parents=True)
    out = []
    for i in range(rows):
        view = " ".join(
            f"{WORDS[(i + j) % len(WORDS)]}@{(i * 7 + j) % 9},{j % 9}" for j in range(prompt_words)
        )
        messages = [
            {
                "role": "system",
                "content": "You keep memory files for a game agent. Write operations, then DONE.",
            },
            {"role": "user", "content": f"Step {i}. Map: {view}. Inventory: wood {i % 5}. Phase: LOG."},
        ]
        out.append(
            {
                "messages": json.dumps(messages),
                "completion": f"APPEND notes.md {WORDS[i % len(WORDS)]} near step {i}\nDONE",
                "run_id": "bench",
                "episode_id": f"e{i // 50}",
                "attempt": 1,
                "step": i,
                "phase": "log",
                "turn": 0,
                "env_id": "crafter-v0",
                "seed": 0,
            }
        )
    pq.write_table(rows_table(out, []), folder / ROWS_FILE)
    (folder / MANIFEST_FILE).write_text(json.dumps({"dataset_id": "bench", "rows": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-words", type=int, default=120, help="observation words (~5 tokens each)")
    parser.add_argument("--precision", default="auto", help="auto (from the CPU's flags), fp32 or bf16")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="automem-bench-train-") as tmp:
        dataset = Path(tmp) / "datasets" / "bench"
        write_rows(dataset, args.steps * args.batch, args.prompt_words)
        config = load_distill_config(
            dataset=str(dataset),
            preset="cpu-small",
            overrides=[
                f"max_steps={args.steps}",
                f"batch_size={args.batch}",
                "num_workers=1",
                f"threads_per_worker={args.threads}",
                "max_length=2048",
                "force=true",
                f"precision={args.precision}",
            ],
        )
        t0 = time.perf_counter()
        plain = train_adapter(config, Path(tmp) / "plain", LocalLauncher())
        plain_wall = time.perf_counter() - t0
        plain_load = os.getloadavg()[0]

        from actors.training import RayTrainLauncher

        t0 = time.perf_counter()
        on_ray = train_adapter(config, Path(tmp) / "ray", RayTrainLauncher("local"))
        ray_wall = time.perf_counter() - t0
        ray_load = os.getloadavg()[0]

    # Selection with provenance and post-process, on one core (benchmarks/distill_dataset.py).
    from benchmarks.distill_dataset import dataset_build_figures

    build = dataset_build_figures(10_000)
    p, r = plain.metrics, on_ray.metrics
    print(
        json.dumps(
            {
                "trl_tokens_per_s": round(p["train_tokens_per_s"], 1),
                "ray_train_tokens_per_s": round(r["train_tokens_per_s"], 1),
                "ray_train_vs_trl_throughput": round(r["train_tokens_per_s"] / p["train_tokens_per_s"], 3),
                "dataset_build_s_per_10k_turns": build["dataset_build_s_per_10k_turns"],
                # Tokens per CPU-second of the training process: on a shared machine the wall-clock ratio mostly
                # measures the neighbours; this one measures the work each run did per token.
                "trl_tokens_per_cpu_s": round(p["train_tokens"] / p["train_cpu_s"], 1),
                "ray_train_tokens_per_cpu_s": round(r["train_tokens"] / r["train_cpu_s"], 1),
                "ray_train_vs_trl_cpu_efficiency": round(
                    (r["train_tokens"] / r["train_cpu_s"]) / (p["train_tokens"] / p["train_cpu_s"]), 3
                ),
                "load_avg_1m": [round(x, 1) for x in (plain_load, ray_load)],
                "ray_train_overhead_s": round(ray_wall - plain_wall, 1),
                "trl_wall_s": round(plain_wall, 1),
                "ray_train_wall_s": round(ray_wall, 1),
                "train_tokens": p["train_tokens"],
                "tokens_per_example": round(p["train_tokens"] / (args.steps * args.batch)),
                "steps": args.steps,
                "batch": args.batch,
                "threads": args.threads,
                "precision": p["precision"],
                "trl_losses": [round(x, 3) for x in p["losses"]],
                "ray_train_losses": [round(x, 3) for x in r["losses"]],
            }
        )
    )


if __name__ == "__main__":
    main()
