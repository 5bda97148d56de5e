"""The Loop 1 experiment on the embedded model (issue 16): does ``automem evolve`` find a Crafter scaffold that
SmolLM2-135M plays better, and does the gate keep it from accepting noise?

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/experiments/loop1.py --root /work/experiments/loop1

Two evolve runs through the real command, in one store, each resumable (run the same command again after a stop:
finished iterations are kept, a cut rollout continues):

1. ``rules``: the rules reviewer, ``--iterations`` rounds on ``--tune-seeds``, then the start and the final scaffold
   on ``--holdout-seeds``.
2. ``llm``: the embedded model itself as reviewer (``--reviewer openai``), one round on a few seeds, no held-out
   play: it shows what a 135M reviewer answers through structured outputs.

Not in ``make test`` nor ``make bench``: on 2 cores a round of 8 Crafter episodes of 20 steps takes ~4 minutes.
Prints each command's output, then one JSON line with every iteration's decision and gate statistics and the
held-out result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT_DIR)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def evolve(root: str, name: str, *args: str) -> int:
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "evolve",
        "--out",
        root,
        "--name",
        name,
        "--no-progress",
        *args,
    ]
    say("$ automem " + " ".join(cmd[3:]))
    return subprocess.run(cmd, cwd=ROOT_DIR).returncode


def check_rejected(a: argparse.Namespace, rows: list[dict]) -> dict | None:
    """The rejected candidate with the largest tuning gain, against the start on the held-out seeds (through the
    same evolve run's player, so its held-out run is resumable and reused)."""
    from automem.evolve.loop import Evolve, EvolveConfig, rollout_player
    from automem.evolve.reviewers import RulesReviewer
    from automem.scaffold import from_yaml

    rejected = [r for r in rows if r["decision"] == "rejected" and r["mean_diff"] is not None]
    if not rejected:
        say("no rejected candidate to check")
        return None
    best = max(rejected, key=lambda r: (r["mean_diff"], -r["iteration"]))
    config = EvolveConfig(
        name=a.name,
        out=a.root,
        env="crafter-v0",
        reviewer="rules",
        tune_seeds=a.tune_seeds,
        holdout_seeds=a.holdout_seeds,
        iterations=a.iterations,
        max_steps=a.max_steps,
        executor="local",
    )
    evolve = Evolve(config, RulesReviewer(), rollout_player(config, say=say), say=say)
    say(f"checking iteration {best['iteration']}'s rejected {best['scaffold_id']} on the held-out seeds")
    return {
        "iteration": best["iteration"],
        "rule": best["rule"],
        **evolve.score_holdout(from_yaml(best["scaffold_yaml"])),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="the experiment's store (a folder)")
    p.add_argument("--tune-seeds", default="0-7")
    p.add_argument("--holdout-seeds", default="1000-1007")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--name", default="rules", help="the rules run's name (another name: another experiment)")
    p.add_argument("--skip-llm", action="store_true", help="only the rules run")
    p.add_argument("--skip-rules", action="store_true", help="only the llm run")
    p.add_argument("--llm-name", default="llm", help="the llm run's name")
    p.add_argument("--llm-iterations", type=int, default=1)
    p.add_argument(
        "--check-rejected",
        action="store_true",
        help="also play the rejected candidate with the largest tuning gain on the held-out seeds, paired with the "
        "start: was the gate right to refuse it?",
    )
    a = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    common = ["--env", "crafter-v0", "--max-steps", str(a.max_steps), "--executor", "local"]
    start = time.monotonic()
    codes: dict[str, int] = {}
    if not a.skip_rules:
        codes[a.name] = evolve(
            a.root,
            a.name,
            *common,
            "--reviewer",
            "rules",
            "--tune-seeds",
            a.tune_seeds,
            "--holdout-seeds",
            a.holdout_seeds,
            "--iterations",
            str(a.iterations),
        )
    if not a.skip_llm:
        codes[a.llm_name] = evolve(
            a.root,
            a.llm_name,
            *common,
            "--reviewer",
            "openai",
            "--tune-seeds",
            "0-3",
            "--holdout-seeds",
            "none",
            "--iterations",
            str(a.llm_iterations),
            "--max-steps",
            "10",
        )
    from automem.evolve.lineage import read_rows
    from automem.trajectory.storage import Storage

    st = Storage(a.root)
    if a.check_rejected and not a.skip_rules:
        codes["check"] = 0
        check = check_rejected(a, read_rows(st, a.name))
        if check is not None:
            st.write_bytes(
                st.path("evolve", a.name, "check-rejected.json"), json.dumps(check, indent=2).encode()
            )
    out: dict = {"seconds": round(time.monotonic() - start), "exit_codes": codes}
    keep = (
        "iteration",
        "decision",
        "rule",
        "scaffold_id",
        "reject_kind",
        "reason",
        "digest_tokens",
        "n_seeds",
    )
    keep += ("parent_mean", "candidate_mean", "mean_diff", "lower", "upper", "p_value", "reviewer_seconds")
    keep += ("op_error_rate_diff", "op_error_rate_lo", "op_error_rate_hi")
    keep += ("redundant_write_rate_diff", "redundant_write_rate_lo", "redundant_write_rate_hi")
    for name in (n for n in codes if n != "check"):
        out[name] = [{k: r.get(k) for k in keep} for r in read_rows(st, name)]
        for what in ("result", "check-rejected"):
            path = st.path("evolve", name, f"{what}.json")
            if st.exists(path):
                out[f"{name}_{what}"] = json.loads(st.read_bytes(path))
    print(json.dumps(out, default=str))
    return max(codes.values())


if __name__ == "__main__":
    sys.exit(main())
