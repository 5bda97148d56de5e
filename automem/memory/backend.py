"""Where memory files live: a real directory (the product) or a dict (for replaying the op log).

Both backends expose the same few primitives, and every memory operation is written once on top of them, so a
replay of the op log runs exactly the code the live episode ran.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Protocol

from automem.memory.paths import TEMP_PREFIX, PathViolation, check_name, resolve

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Opening a FIFO planted between our lstat and open would block for a writer; non-blocking, it cannot.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _refuse_shared(name: str, st: os.stat_result) -> None:
    """Refuse a regular file with more than one hard link.

    A hard link planted in the root makes a file outside it reachable under a memory name (and unlike a
    symlink, ``lstat`` cannot tell which name is the "real" one), so every operation refuses such a file.
    """
    if st.st_nlink > 1:
        raise PathViolation(f"{name!r} has {st.st_nlink} hard links; a memory file may have only one")


class FileBackend(Protocol):
    """The primitives memory operations are built from. Names are already validated relative names."""

    def exists(self, name: str) -> bool: ...
    def read(self, name: str) -> str: ...
    def read_tail_bytes(self, name: str, max_bytes: int) -> str: ...
    def write(self, name: str, text: str) -> None: ...
    def append(self, name: str, text: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def names(self) -> list[str]: ...
    def version(self, name: str) -> object | None:
        """A token that changes whenever the file changes (None: do not cache)."""
        ...

    def check(self, name: str) -> None:
        """Raise ``PathViolation`` if ``name`` may not be used."""
        ...


class DictBackend:
    """Files held in a dict; used by ``replay`` and by tests."""

    def __init__(self, files: dict[str, str] | None = None) -> None:
        self.files: dict[str, str] = dict(files or {})

    def check(self, name: str) -> None:
        check_name(name)
        parts = name.split("/")
        for i in range(1, len(parts)):  # a file cannot also be a folder
            if "/".join(parts[:i]) in self.files:
                raise PathViolation(f"{'/'.join(parts[:i])!r} is a file, not a folder")
        if any(other.startswith(name + "/") for other in self.files):
            raise PathViolation(f"{name!r} is a folder")

    def exists(self, name: str) -> bool:
        return name in self.files

    def read(self, name: str) -> str:
        return self.files[name]

    def read_tail_bytes(self, name: str, max_bytes: int) -> str:
        data = self.files[name].encode()
        return data[-max_bytes:].decode(errors="ignore")

    def write(self, name: str, text: str) -> None:
        self.files[name] = text

    def append(self, name: str, text: str) -> None:
        self.files[name] = self.files.get(name, "") + text

    def delete(self, name: str) -> None:
        del self.files[name]

    def names(self) -> list[str]:
        return sorted(self.files)

    def version(self, name: str) -> object | None:
        return None


class DiskBackend:
    """Files in a real directory. Every access re-checks the path and opens with ``O_NOFOLLOW``; a file opened
    is checked again on its descriptor (regular, one hard link), so a swap after the check is caught too."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._root = str(self.root)  # resolve() takes and returns plain strings (hot path)

    def check(self, name: str) -> None:
        try:
            self._stat_regular(name)
        except FileNotFoundError:
            pass

    def _path(self, name: str) -> str:
        return resolve(self._root, name)

    def _stat_regular(self, name: str) -> os.stat_result:
        """``lstat`` of an existing memory file, refused unless it is a regular file with one link.

        Raises:
            FileNotFoundError: no such file.
            PathViolation: the name or what it names may not be used.
        """
        st = os.lstat(self._path(name))
        if stat.S_ISDIR(st.st_mode):
            raise PathViolation(f"{name!r} is a folder")
        if not stat.S_ISREG(st.st_mode):
            raise PathViolation(f"{name!r} is not a regular file")
        _refuse_shared(name, st)
        return st

    def exists(self, name: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self._path(name)).st_mode)
        except FileNotFoundError:
            return False

    def version(self, name: str) -> object | None:
        # A write replaces the inode and an append changes the size, so this also notices edits made by others.
        st = self._stat_regular(name)  # refuses a shared file before a cached copy is served
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _open(self, name: str, flags: int, mode: int = 0o644, *, path: str | None = None) -> int:
        """Open without following links, then check what was opened: a regular file with one link.

        ``path``: ``name`` already resolved, when the caller has it.
        """
        fd = os.open(path or self._path(name), flags | _NOFOLLOW | _NONBLOCK, mode)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PathViolation(f"{name!r} is not a regular file")
            _refuse_shared(name, st)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, name: str) -> str:
        with os.fdopen(self._open(name, os.O_RDONLY), "rb") as f:
            return f.read().decode(errors="replace")

    def read_tail_bytes(self, name: str, max_bytes: int) -> str:
        with os.fdopen(self._open(name, os.O_RDONLY), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            return f.read().decode(errors="ignore")

    def _mkparents(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent != self._root:
            os.makedirs(parent, exist_ok=True)
            resolve(self._root, parent[len(self._root) + 1 :])  # re-check: nothing planted meanwhile

    def write(self, name: str, text: str) -> None:
        path = self._path(name)
        self._mkparents(path)
        # Write a temp file and rename over the target: atomic, and a rename replaces a link, never follows it.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def append(self, name: str, text: str) -> None:
        path = self._path(name)
        self._mkparents(path)
        fd = self._open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, path=path)
        with os.fdopen(fd, "ab") as f:
            f.write(text.encode())

    def delete(self, name: str) -> None:
        os.unlink(self._path(name))

    def names(self) -> list[str]:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
            for fn in filenames:
                full = os.path.join(dirpath, fn)
                st = os.lstat(full)
                if fn.startswith(TEMP_PREFIX) or not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                    continue  # links (symbolic or hard) and specials are never memory files
                rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                try:
                    check_name(rel)
                except PathViolation:
                    continue
                out.append(rel)
        return sorted(out)
