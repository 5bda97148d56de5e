"""Memory an agent manages through explicit operations: store, operations, grammar, quotas, op log."""

from automem.memory.grammar import action_regex, parse, parse_json, turn_regex
from automem.memory.oplog import OpLog, replay
from automem.memory.ops import ALL_OPS, READ_ONLY_OPS, REGISTRY, render_help
from automem.memory.paths import PathViolation
from automem.memory.quotas import DEFAULT_QUOTAS, Quotas
from automem.memory.results import OpRecord, OpResult
from automem.memory.store import MemoryStore
from automem.memory.turn import execute, run_text

__all__ = [
    "ALL_OPS",
    "DEFAULT_QUOTAS",
    "MemoryStore",
    "OpLog",
    "OpRecord",
    "OpResult",
    "PathViolation",
    "Quotas",
    "READ_ONLY_OPS",
    "REGISTRY",
    "action_regex",
    "execute",
    "parse",
    "parse_json",
    "render_help",
    "replay",
    "run_text",
    "turn_regex",
]
