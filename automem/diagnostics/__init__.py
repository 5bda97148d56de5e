"""Diagnostics computed from stored trajectories: progression, memory-operation quality, unproductive actions,
memory size and utility, and cost (tokens, model seconds), per episode and per group, with a comparison mode.

Definitions live beside their code: ``memory_quality`` (redundant writes, failing operations, empty searches,
memory utility with provenance, memory size), ``actions`` (unproductive and invalid actions), ``summary``
(the measures as ratios of sums, and grouping), ``series`` (memory size over steps, bounded), ``compare``
(differences with paired or unpaired bootstrap). The store is read through ``automem.trajectory`` (``open_store``,
``connect``).
"""

from automem.diagnostics.actions import ActionQuality, analyse_steps
from automem.diagnostics.compare import compare_by, compare_groups, compare_groups_by, compare_tables
from automem.diagnostics.episodes import EpisodeDiagnostics, analyse_store, size_series
from automem.diagnostics.memory_quality import MemoryQuality, analyse_ops
from automem.diagnostics.summary import MEASURES, Diagnosis, Measure, aggregate, diagnose, resolve_by

__all__ = [
    "MEASURES",
    "ActionQuality",
    "Diagnosis",
    "EpisodeDiagnostics",
    "Measure",
    "MemoryQuality",
    "aggregate",
    "analyse_ops",
    "analyse_steps",
    "analyse_store",
    "compare_by",
    "compare_groups",
    "compare_groups_by",
    "compare_tables",
    "diagnose",
    "resolve_by",
    "size_series",
]
