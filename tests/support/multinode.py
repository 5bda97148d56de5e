"""Multi-node Ray clusters on this machine, each in a process of its own, for the node-loss and autoscaling tests.

    python -m tests.support.multinode node-loss --endpoint URL --out DIR --report FILE
    python -m tests.support.multinode autoscale --endpoint URL --out DIR --report FILE

Each command starts its own cluster (``ray.cluster_utils.Cluster``: a head with no ``rollout`` resource, nodes that
are processes here), runs a rollout on it through the library (``run_rollout`` with ``address=``), writes what it
saw as JSON to ``--report`` and stops every node it started. Tests call :func:`run`, which runs it in a new session
and kills that process group afterwards, so nothing outlives it even if it crashes. Everything Ray writes goes under a temp dir of
its own (``RAY_TMPDIR``, set by :func:`child_env`), and every port is a free one: the session's shared cluster and
other people's clusters on the machine are left alone (Ray's ``AutoscalingCluster`` runs ``ray stop --force``,
which would stop them all, and Ray 2.60's wheel lacks the ``example.yaml`` it reads: it is not used).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NODE_MEMORY = 80 * 1024 * 1024
"""Object store bytes per node (Ray's minimum is 75 MiB; nothing big travels through it here)."""


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a command of this module: its own Ray temp dir (a short path: Ray's socket names must
    fit), no auth, no usage stats."""
    env = dict(os.environ if base is None else base)
    env.update(
        RAY_TMPDIR=tempfile.mkdtemp(prefix="amq-", dir="/tmp"),
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def run(command: str, endpoint: str, out: str, report: str, timeout: float = 180) -> dict[str, Any]:
    """Run ``command`` of this module in a new session and return its report (plus ``took_s``); whatever it left
    running is killed (its process group) and its Ray temp dir removed. A non-zero exit fails with its output."""
    env = child_env()
    cmd = [sys.executable, "-m", "tests.support.multinode", command, "--endpoint", endpoint, "--out", out]
    proc = subprocess.Popen(
        [*cmd, "--report", report],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    t0 = time.monotonic()
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group started here: this cluster's processes only
        except ProcessLookupError:
            pass
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert proc.returncode == 0, f"{command} ended with {proc.returncode}:\n{output[-4000:]}"
    with open(report) as f:
        return {**json.load(f), "took_s": time.monotonic() - t0}


@contextlib.contextmanager
def seeded_stub(latency: float = 0.1):
    """The stub model server with replies that are a function of the prompt (``policy="seeded"``); its URL."""
    from automem.llm.stub_server import spawn

    proc, url = spawn(latency=latency, policy="seeded")
    try:
        yield url
    finally:
        proc.kill()
        proc.wait()


def rollout_config(endpoint: str, out: str, **kw: Any):
    """The rollouts of these tests: short corridor episodes against the seeded stub, no retry backoff."""
    from automem.rollout import RolloutConfig

    base = dict(
        env="corridor-v0",
        episodes=9,
        seeds="0-8",
        max_steps=12,
        concurrency=6,
        endpoint=endpoint,
        out=out,
        run_id="r1",
        retry_backoff=0,
    )
    return RolloutConfig(**{**base, **kw})


def store_digest(root: str, run_id: str = "r1") -> dict[str, Any]:
    """What a run's committed episodes hold, without what differs between two plays of the same episode (attempt
    numbers, timings, workers): per episode its record's totals, each step's observation and action, each turn's
    completion and each memory operation."""
    from automem.trajectory import load as load_store

    tables = load_store(root, run_id=run_id)
    keep = {
        "episodes": ("seed", "status", "steps", "progression", "episode_return", "turns", "prompt_tokens",
                     "completion_tokens", "invalid_actions", "op_errors", "system_prompt"),
        "steps": ("step", "observation", "action_text", "reward", "progression"),
        "turns": ("step", "phase", "turn", "completion", "prompt_tokens"),
        "memory_ops": ("step", "phase", "turn", "seq", "op", "args", "ok", "bytes_delta"),
    }  # fmt: skip
    digest: dict[str, Any] = {}
    for table, columns in keep.items():
        rows: dict[str, list] = {}
        for r in tables[table].to_pylist():
            rows.setdefault(r["episode_id"], []).append(tuple(r[c] for c in columns))
        digest[table] = {e: sorted(v, key=repr) for e, v in rows.items()}
    return digest


def _head_args(**kw: Any) -> dict[str, Any]:
    from automem.serving.local_s3 import free_port

    return dict(
        gcs_server_port=free_port(),
        num_cpus=1,
        include_dashboard=False,
        dashboard_agent_listen_port=free_port(),  # Ray's default (52365) is shared with every other cluster
        object_store_memory=NODE_MEMORY,
        **kw,
    )


def _actor_nodes(handles) -> dict[str, dict[str, Any]]:
    """Actor id -> its node id and worker pid, from the GCS's actor table (dead actors included; the state API
    would need the dashboard)."""
    import ray

    out = {}
    for h in handles:
        aid = h._actor_id.hex()
        info = ray._private.state.actors(actor_id=aid)  # private: the GCS table, no dashboard needed
        out[aid] = {"node": info["Address"]["NodeID"], "pid": info["Pid"], "state": info["State"]}
    return out


def _alive_nodes() -> dict[str, dict[str, float]]:
    import ray

    return {n["NodeID"]: n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")}


class _Watch:
    """Runs ``run_rollout`` in a thread and keeps what the test asserts on."""

    def __init__(self, config) -> None:
        from actors.executor import RayExecutor

        self.config = config
        self.executor = RayExecutor()
        self.result: Any = None
        self.error: str | None = None
        self.handles: list[Any] = []  # every runner actor the scheduler started (replacements too)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from automem.rollout import run_rollout

        try:
            self.result = run_rollout(self.config, self.executor, say=print)
        except Exception as exc:  # reported to the test
            self.error = f"{type(exc).__name__}: {exc}"

    def runners(self):
        sched = self.executor.scheduler
        return list(sched.runners) if sched is not None else []

    def note_handles(self) -> None:
        for r in self.runners():
            if all(r.handle is not h for h in self.handles):
                self.handles.append(r.handle)

    def report(self) -> dict[str, Any]:
        res = self.result
        return {
            "error": self.error,
            "committed": res.committed if res else None,
            "failed": res.failed if res else None,
            "attempts": res.attempts if res else None,
            "runner_restarts": res.runner_restarts if res else None,
            "wall_s": res.wall_seconds if res else None,
            "actors": _actor_nodes(self.handles),
        }


def node_loss(args: argparse.Namespace) -> dict[str, Any]:
    """Three rollout nodes; once every runner is busy mid-episode, one node (with its runner) is killed."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=_head_args())
    try:
        workers = [
            cluster.add_node(num_cpus=2, resources={"rollout": 1}, object_store_memory=NODE_MEMORY)
            for _ in range(3)
        ]
        cluster.wait_for_nodes()
        # rollout=0.01: two nodes could host all three runners, so landing on three is the SPREAD strategy's doing
        watch = _Watch(
            rollout_config(
                args.endpoint,
                args.out,
                address=cluster.address,
                runners=3,
                runner_resources={"rollout": 0.01},
            )
        )
        watch.thread.start()
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline and watch.thread.is_alive():
            time.sleep(0.2)
            runners = watch.runners()
            if len(runners) < 3 or not all(r.ready for r in runners):
                continue
            stats = [ray.get(r.handle.stats.remote(), timeout=10) for r in runners]
            if all(s["running"] and s["steps"] >= 2 for s in stats):  # each runner is mid-episode
                watch.note_handles()
                victim = _actor_nodes([runners[0].handle])[runners[0].handle._actor_id.hex()]["node"]
        assert victim is not None, f"the runners never all got busy: {watch.report()}"
        initial = {aid: a["node"] for aid, a in _actor_nodes(watch.handles).items()}
        node = next((n for n in workers if n.node_id == victim), None)
        assert node is not None, (victim, [n.node_id for n in workers], _actor_nodes(watch.handles))
        cluster.remove_node(node, allow_graceful=False)  # a lost machine: no goodbye
        removed_at_committed = _committed_now(args.out)
        while watch.thread.is_alive():
            watch.note_handles()
            time.sleep(0.2)
        watch.thread.join()
        return {
            **watch.report(),
            "head": cluster.head_node.node_id,
            "workers": [n.node_id for n in workers],
            "initial_runner_nodes": initial,
            "victim": victim,
            "committed_when_removed": removed_at_committed,
        }
    finally:
        _stop(cluster)


def _stop(cluster) -> None:
    """Disconnect and stop every node of ``cluster``; then kill what is left of it (a failed test's nodes)."""
    import ray

    ray.shutdown()
    try:
        cluster.shutdown()
    except ValueError:  # a rollout thread still running reconnected this process: once more
        ray.shutdown()
        cluster.shutdown()
    finally:
        _kill_leftovers()


def _committed_now(out: str) -> int:
    from automem.trajectory import Storage, committed_episode_ids

    try:
        return len(committed_episode_ids(Storage(out), "r1"))
    except Exception:  # noqa: BLE001 - informational
        return -1


def _autoscaling_config(gcs_address: str, idle_timeout_minutes: float, max_workers: int) -> dict[str, Any]:
    """A fake multi-node provider's cluster config (what Ray's missing ``example.yaml`` held, roughly): nodes are
    started by the autoscaler as processes on this machine and join the GCS at ``gcs_address``."""
    return {
        "cluster_name": "automem-fake",
        "max_workers": max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,
            # Nodes here share one IP: the autoscaler must tell them apart by node id, start Ray on them itself
            # (no SSH updaters), and not judge them outdated (else it terminates busy nodes).
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ray"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "rollout": {
                "resources": {"CPU": 1, "rollout": 1, "object_store_memory": NODE_MEMORY},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def autoscale(args: argparse.Namespace) -> dict[str, Any]:
    """A head alone; runners that need a whole ``rollout`` node each make the autoscaler add nodes (one per
    autoscaler round with the fake provider); once the rollout is done they are idle and removed.

    The cluster may first have two rollout nodes, and three (one per runner) once an episode committed: the
    rollout must get going on the runners it has and take the third when its node comes (the autoscaler reads its
    config file again every round)."""
    import ray
    from ray.cluster_utils import Cluster

    # The fake provider refuses to start without it; the autoscaler rounds every second instead of every five.
    os.environ.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    head = _head_args()
    ip = ray._private.services.get_node_ip_address()
    path = os.path.join(os.environ["RAY_TMPDIR"], "autoscaling.json")
    gcs = f"{ip}:{head['gcs_server_port']}"
    with open(path, "w") as f:
        json.dump(_autoscaling_config(gcs, args.idle_minutes, 2), f)
    cluster = Cluster(initialize_head=True, head_node_args={**head, "autoscaling_config": path})
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        head_id = cluster.head_node.node_id
        timeline: list[tuple[float, int, int]] = []  # (s since start, rollout nodes alive, runners ready)
        seen_nodes: set[str] = set()
        t0 = time.monotonic()
        watch = _Watch(
            rollout_config(
                args.endpoint,
                args.out,
                address=cluster.address,
                runners=3,
                runner_resources={"rollout": 1},  # a node each: three runners need three nodes
                placement_timeout=150,
            )
        )
        watch.thread.start()
        at_raise = None  # (rollout nodes, runners ready, episodes committed) when the cap went up
        while watch.thread.is_alive() and time.monotonic() - t0 < 200:
            alive = {k for k, r in _alive_nodes().items() if r.get("rollout")}
            seen_nodes |= alive
            ready = sum(r.ready for r in watch.runners())
            timeline.append((round(time.monotonic() - t0, 1), len(alive), ready))
            if at_raise is None and (committed := _committed_now(args.out)) > 0:
                at_raise = (len(alive), ready, committed)
                with open(path + ".new", "w") as f:
                    json.dump(_autoscaling_config(gcs, args.idle_minutes, 3), f)
                os.replace(path + ".new", path)  # the monitor never reads half a file
            watch.note_handles()
            time.sleep(0.5)
        watch.thread.join(timeout=30)
        done_at = time.monotonic() - t0
        report = {**watch.report(), "head": head_id, "at_raise": at_raise}
        # The runners are gone (the scheduler kills them at the end): their nodes are idle and must be removed.
        while time.monotonic() - t0 < done_at + args.idle_minutes * 60 + 60:
            alive = {k for k, r in _alive_nodes().items() if r.get("rollout")}
            seen_nodes |= alive  # the third node may join after the rollout ended
            timeline.append((round(time.monotonic() - t0, 1), len(alive), 0))
            if not alive and len(seen_nodes) >= 3:
                break
            time.sleep(1.0)
        report.update(
            timeline=timeline,
            rollout_nodes_seen=sorted(seen_nodes),
            rollout_nodes_left=len(alive),
            removed_after_s=round(time.monotonic() - t0 - done_at, 1),
        )
        return report
    finally:
        _stop(cluster)  # also the nodes the autoscaler started and did not remove (a failed test)


def _kill_leftovers() -> None:
    """Kill, by id, the processes left of this cluster (those with this command's own ``RAY_TMPDIR``): the nodes
    the (now stopped) autoscaler launched and did not remove."""
    import psutil

    for proc in psutil.process_iter(["pid", "environ"]):
        try:
            env = proc.info.get("environ") or {}
        except psutil.Error:
            continue
        if env.get("RAY_TMPDIR") == os.environ["RAY_TMPDIR"] and proc.pid != os.getpid():
            try:
                proc.kill()
            except psutil.Error:
                pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("node-loss", "autoscale"))
    p.add_argument("--endpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--idle-minutes", type=float, default=0.1, help="autoscale: idle time before a node goes")
    a = p.parse_args(argv)
    report = (node_loss if a.command == "node-loss" else autoscale)(a)
    with open(a.report, "w") as f:
        json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main()
