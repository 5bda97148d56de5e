"""Safe resolution of memory-file names inside an episode's memory root.

A name comes from a model, so it is hostile until checked: no absolute paths, no ``..``, no NUL or control
characters, bounded length, and nothing that resolves outside the root, symlinks included (even one planted inside
the root by something other than automem). Every check returns a ``PathViolation`` rather than raising past the
store, so a bad name becomes an error result for the model.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

MAX_NAME_CHARS = 128
MAX_COMPONENT_CHARS = 64
MAX_DEPTH = 4
TEMP_PREFIX = ".tmp-"
"""The store writes a file through a temp file named with this prefix; no memory-file name may start with it,
so a memory file can never be mistaken for (and hidden as) a leftover temp file, nor the other way round."""

# C0 and C1 controls and DEL (a terminal or a log viewer interprets them), the bidirectional formatting
# characters (they make a name display as another, e.g. "txt.md" shown for "dm.txt"), and lone surrogates (not
# encodable as UTF-8: the name cannot be written to disk or printed as JSON faithfully).
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


class PathViolation(ValueError):
    """A memory-file name that is unsafe or outside the root."""


def check_name(name: str) -> tuple[str, ...]:
    """Validate a relative memory-file name and split it into components.

    Args:
        name: the name as the model wrote it, e.g. ``notes.md`` or ``places/caves.md``.

    Returns:
        The path components.

    Raises:
        PathViolation: the name is empty, absolute, too long, too deep, or contains ``..``, ``.``, a backslash,
            NUL or another control character (C0 or C1), a bidirectional override, a lone surrogate, or a
            component starting with the store's temp-file prefix ``.tmp-``.
    """
    if not name:
        raise PathViolation("empty file name")
    if len(name) > MAX_NAME_CHARS:
        raise PathViolation(f"file name longer than {MAX_NAME_CHARS} characters")
    bad = _BAD_CHARS.search(name)
    if bad:
        c = bad.group()
        if "\ud800" <= c <= "\udfff":
            raise PathViolation("file name is not valid UTF-8 text")
        raise PathViolation(f"file name contains a control or bidirectional formatting character ({c!r})")
    if "\\" in name:
        raise PathViolation("file name contains a backslash; use / between folders")
    if name.startswith("/") or name.startswith("~"):
        raise PathViolation("absolute paths are not allowed; names are relative to the memory root")
    parts = tuple(name.split("/"))
    if len(parts) > MAX_DEPTH:
        raise PathViolation(f"file name nested deeper than {MAX_DEPTH} levels")
    for part in parts:
        if part in ("", ".", ".."):
            raise PathViolation(f"file name has an empty, '.' or '..' component: {name!r}")
        if len(part) > MAX_COMPONENT_CHARS:
            raise PathViolation(f"a path component is longer than {MAX_COMPONENT_CHARS} characters")
        if part[: len(TEMP_PREFIX)].lower() == TEMP_PREFIX:
            raise PathViolation(
                f"names starting with {TEMP_PREFIX!r} are reserved for the store's temp files"
            )
    return parts


def resolve(root: Path | str, name: str) -> str:
    """The absolute path of ``name`` inside ``root``, refusing anything that could leave it.

    Every existing component is checked with ``lstat``: a symlink anywhere on the way (to a file or a folder,
    pointing inside or outside) is refused, and so is a non-directory where a folder is expected.

    Raises:
        PathViolation: see ``check_name``; also for a symlink or a path that resolves outside ``root``.
    """
    parts = check_name(name)
    path = str(root)  # plain strings: pathlib's object churn cost more than the lstat calls themselves
    for i, part in enumerate(parts):
        path = f"{path}/{part}"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            break  # the rest does not exist yet; nothing to follow
        if stat.S_ISLNK(st.st_mode):
            raise PathViolation(f"{'/'.join(parts[: i + 1])!r} is a symbolic link; links are not followed")
        is_last = i == len(parts) - 1
        if not is_last and not stat.S_ISDIR(st.st_mode):
            raise PathViolation(f"{'/'.join(parts[: i + 1])!r} is a file, not a folder")
    # No component is '..' and none that exists is a link, so the path cannot leave ``root`` (the store opens
    # with the root already resolved). A realpath() here would double the cost of every operation for nothing.
    # A plain string again: building a Path here cost about a fifth of a whole operation.
    return f"{root}/{'/'.join(parts)}"
