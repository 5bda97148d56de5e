"""Limits on what an agent's memory may hold and do. Going over one returns an error and changes nothing."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Quotas(BaseModel):
    """Size and count limits for one episode's memory."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_files: int = Field(32, ge=1)
    """Most files the memory may hold at once."""
    max_file_bytes: int = Field(256 * 1024, ge=1)
    """Largest size of one file, in UTF-8 bytes."""
    max_total_bytes: int = Field(1024 * 1024, ge=1)
    """Largest size of all files together, in UTF-8 bytes."""
    max_line_chars: int = Field(240, ge=8)
    """Longest line an operation may write, in characters."""
    max_ops_per_turn: int = Field(8, ge=1)
    """Most operations run from one model turn; the rest return a ``limit`` error and are not run."""
    max_output_chars: int = Field(2000, ge=64)
    """Budget for one operation's output; longer output is cut with a marker saying how much."""


DEFAULT_QUOTAS = Quotas()

# For replay and analysis: accepts everything a live run accepted and returns outputs uncut.
UNLIMITED_QUOTAS = Quotas(
    max_files=10**9,
    max_file_bytes=10**15,
    max_total_bytes=10**15,
    max_line_chars=10**9,
    max_ops_per_turn=10**9,
    max_output_chars=10**9,
)
