"""Submit an automem command to a Ray cluster as a Ray job (``ray job submit`` underneath).

    automem submit --address http://127.0.0.1:8265 -- automem rollout --env crafter-v0 --episodes 64 \\
        --out s3://bucket/trajectories
    automem submit --address http://head:8265 --no-wait -- automem rollout ...

The current directory is packaged as the job's working dir, so the cluster runs this checkout's code; the
command's ``automem`` is run as ``python -m pipelines.cli`` from it. S3 and API-key settings in this shell
(``AWS_*``, ``AUTOMEM_API_KEY``) are passed to the job.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from automem import env_vars

_PASS_ENV = (
    env_vars.AWS_ENDPOINT_URL,
    env_vars.AWS_ACCESS_KEY_ID,
    env_vars.AWS_SECRET_ACCESS_KEY,
    env_vars.AWS_DEFAULT_REGION,
    env_vars.AUTOMEM_API_KEY,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="submit an automem command to a Ray cluster as a Ray job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--address", default=None, help="the cluster's dashboard/job address (default: RAY_ADDRESS)"
    )
    p.add_argument("--working-dir", default=".", help="folder packaged for the job (default: .)")
    p.add_argument(
        "--no-wait", action="store_true", help="return once submitted instead of following the logs"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- automem SUBCOMMAND ...")
    p.set_defaults(func=run)


def build_command(args: argparse.Namespace) -> list[str]:
    """The ``ray job submit`` command line for ``args`` (exposed for tests)."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("nothing to submit: give the command after --, e.g. -- automem rollout ...")
    if command[0] == "automem":
        command = ["python", "-m", "pipelines.cli", *command[1:]]
    address = args.address or env_vars.RAY_ADDRESS.get()
    if not address:
        raise ValueError("no cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    pass_env = env_vars.forwarded(*_PASS_ENV)
    pass_env["RAY_AUTH_MODE"] = env_vars.RAY_AUTH_MODE.get() or "disabled"
    runtime_env = {"env_vars": pass_env, "excludes": [".venv", ".git", "runs", "artifacts"]}
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    cmd = [
        ray_bin,
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        args.working_dir,
        "--runtime-env-json",
        json.dumps(runtime_env),
    ]
    if args.no_wait:
        cmd.append("--no-wait")
    return [*cmd, "--", *command]


def run(args: argparse.Namespace) -> int:
    try:
        cmd = build_command(args)
    except ValueError as exc:
        print(f"automem submit: {exc}", file=sys.stderr)
        return 2
    address = cmd[cmd.index("--address") + 1]
    if address.startswith("http"):
        import httpx

        try:
            httpx.get(f"{address.rstrip('/')}/api/version", timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            print(
                f"automem submit: no Ray job server answers at {address} ({exc}); is the cluster up, and is "
                "this its dashboard address (port 8265)?",
                file=sys.stderr,
            )
            return 2
    print("+ " + " ".join(cmd[:6]) + " ... -- " + " ".join(cmd[cmd.index("--") + 1 :]), file=sys.stderr)
    env_vars.export_default(env_vars.RAY_AUTH_MODE)
    return subprocess.call(cmd)
