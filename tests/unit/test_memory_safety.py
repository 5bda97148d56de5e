# Run: .venv/bin/python -m pytest tests/unit/test_memory_safety.py
"""No operation may touch anything outside the memory root; over-quota operations change nothing."""

from __future__ import annotations

import json
import os

import pytest

from automem.memory import MemoryStore, Quotas, run_text

HOSTILE_NAMES = [
    "/etc/passwd",
    "../outside.md",
    "a/../../outside.md",
    "./a.md",
    "a//b.md",
    "a\x00b.md",
    "a\nb.md",
    "a\x1bb.md",
    "a\\..\\b.md",
    "~/x.md",
    "x" * 200 + ".md",
    "a/b/c/d/e/f.md",
    "",
    "a\x85b.md",  # C1 controls
    "a\x9bb.md",
    "txt\u202e.md",  # bidi overrides and isolates: a name that displays as another
    "a\u2066b.md",
    "a\udcffb.md",  # an undecodable byte (from argv or stdin), not UTF-8 text
    ".tmp-x.md",  # the store's own temp-file prefix: such a file would be hidden from LIST and the quotas
    "d/.TMP-y.md",
]


@pytest.fixture
def sandbox(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("secret\n")
    root.mkdir()
    os.symlink(outside, root / "linkdir")
    os.symlink(outside / "secret.md", root / "link.md")
    os.symlink(root / "mine.md", root / "inner-link.md")  # even a link pointing inside is refused
    store = MemoryStore.open_dir(root, Quotas(max_ops_per_turn=100))
    return store, root, outside


def snapshot(path):
    return {
        os.path.join(d, f): open(os.path.join(d, f), "rb").read()
        for d, _, fs in os.walk(path, followlinks=False)
        for f in fs
        if not os.path.islink(os.path.join(d, f))
    }


TEMPLATES = [
    "READ {n}",
    "TAIL {n}",
    "COUNT {n} s",
    "SEARCH s {n}",
    "CREATE {n}",
    "WRITE {n} pwned",
    "APPEND {n} pwned",
    "UPSERT {n} k pwned",
    "REPLACE {n} secret pwned",
    "DELETE {n}",
]


@pytest.mark.parametrize(
    "name", HOSTILE_NAMES + ["linkdir/secret.md", "link.md", "inner-link.md", "linkdir/new.md"]
)
@pytest.mark.parametrize("template", TEMPLATES)
def test_hostile_names_are_refused_and_touch_nothing(sandbox, name, template):
    store, root, outside = sandbox
    before_out, before_root = snapshot(outside), snapshot(root)
    quoted = json.dumps(name)  # exactly this name reaches the store (unicode_escape wrote \x85, not JSON)
    results = run_text(store, template.format(n=quoted))
    assert results and not any(r.ok for r in results), [r.to_json() for r in results]
    assert all(r.error_kind in ("path", "parse", "bad_args", "missing") for r in results)
    assert snapshot(outside) == before_out
    assert snapshot(root) == before_root
    assert "secret" not in "".join(r.output for r in results)


def test_search_all_and_list_skip_planted_links(sandbox):
    store, root, _ = sandbox
    run_text(store, "APPEND mine.md hello")
    (result,) = run_text(store, "SEARCH secret *")
    assert result.ok and result.output == ""
    (listing,) = run_text(store, "LIST")
    assert listing.output == "mine.md (1 lines, 6 bytes)"


def test_link_planted_after_open_is_refused(tmp_path):
    root = tmp_path / "root"
    store = MemoryStore.open_dir(root)
    run_text(store, "APPEND a.md x")
    (tmp_path / "target.md").write_text("target\n")
    os.unlink(root / "a.md")
    os.symlink(tmp_path / "target.md", root / "a.md")  # swapped behind the store's back
    for line in ("READ a.md", "APPEND a.md pwned", "WRITE a.md pwned", "TAIL a.md"):
        (r,) = run_text(store, line)
        assert not r.ok and r.error_kind == "path"
    assert (tmp_path / "target.md").read_text() == "target\n"


@pytest.mark.parametrize(
    "quotas, setup, line",
    [
        (Quotas(max_files=1), "APPEND a.md x", "APPEND b.md y"),
        (Quotas(max_files=1), "APPEND a.md x", "CREATE b.md"),
        (Quotas(max_file_bytes=10), "APPEND a.md 12345", "APPEND a.md 67890"),
        (Quotas(max_file_bytes=10), "APPEND a.md 12345", "WRITE a.md 12345678901"),
        (Quotas(max_total_bytes=12), "APPEND a.md 12345", "APPEND b.md 1234567"),
        (Quotas(max_line_chars=10), "APPEND a.md 12345", "APPEND a.md 12345678901"),
        (Quotas(max_line_chars=10), "CREATE a.md", "UPSERT a.md key 1234567890"),
        (Quotas(max_line_chars=10), "APPEND a.md abc", "REPLACE a.md abc 12345678901"),
        (Quotas(max_file_bytes=10), "APPEND a.md abc", "REPLACE a.md abc 12345678901"),
    ],
)
def test_over_quota_returns_error_and_changes_nothing(tmp_path, quotas, setup, line):
    store = MemoryStore.open_dir(tmp_path / "m", quotas)
    assert all(r.ok for r in run_text(store, setup))
    before, index = snapshot(tmp_path / "m"), dict(store.index)
    (result,) = run_text(store, line)
    assert not result.ok and result.error_kind == "quota", result.to_json()
    assert snapshot(tmp_path / "m") == before
    assert store.index == index


def test_ops_per_turn_limit(tmp_path):
    store = MemoryStore.open_dir(tmp_path, Quotas(max_ops_per_turn=2))
    results = run_text(store, "APPEND a.md 1\nAPPEND a.md 2\nAPPEND a.md 3\nbad line")
    assert [r.ok for r in results] == [True, True, False, False]
    assert results[2].error_kind == "limit"
    assert (tmp_path / "a.md").read_text() == "1\n2\n"


def test_disabled_and_read_only(tmp_path):
    from automem.memory import execute, parse

    store = MemoryStore.open_dir(tmp_path)
    (r,) = execute(store, parse("DELETE a.md"), enabled=["READ", "APPEND"])
    assert r.error_kind == "disabled"
    (r,) = execute(store, parse("APPEND a.md x"), read_only=True)
    assert r.error_kind == "read_only"
    assert not (tmp_path / "a.md").exists()


def test_fresh_root_refuses_a_used_directory(tmp_path):
    (tmp_path / "old.md").write_text("x")
    with pytest.raises(FileExistsError):
        MemoryStore.fresh(tmp_path)


@pytest.mark.parametrize("planted", ["before", "after"])
def test_hard_links_are_refused_for_every_operation(tmp_path, planted):
    """A hard link in the root to a file outside it is not a memory file: nothing reads or changes it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    secret = outside / "s.txt"
    secret.write_text("secret\n")
    store = MemoryStore.open_dir(root, Quotas(max_ops_per_turn=100))
    if planted == "before":
        os.link(secret, root / "hard.md")
        store = MemoryStore.open_dir(root, Quotas(max_ops_per_turn=100))
        assert "hard.md" not in store.index
    else:  # a file of the store swapped for a hard link behind its back
        run_text(store, "APPEND hard.md mine")
        os.unlink(root / "hard.md")
        os.link(secret, root / "hard.md")
    for template in TEMPLATES:
        results = run_text(store, template.format(n="hard.md"))
        assert results and not any(r.ok for r in results), (template, [r.to_json() for r in results])
        assert all(r.error_kind in ("path", "missing") for r in results), template
        assert "secret" not in "".join(r.output for r in results)
    (search,) = run_text(store, "SEARCH secret *")
    assert "secret" not in search.output
    if planted == "before":  # never indexed (after a swap the index still names it, and every op refuses it)
        (listing,) = run_text(store, "LIST")
        assert "hard.md" not in listing.output
    assert secret.read_text() == "secret\n" and os.stat(secret).st_nlink == 2


def test_temp_prefix_names_cannot_escape_the_quotas(tmp_path):
    store = MemoryStore.open_dir(tmp_path, Quotas(max_files=1))
    assert run_text(store, "APPEND a.md x")[0].ok
    (r,) = run_text(store, "WRITE .tmp-b.md y")
    assert r.error_kind == "path"
    # A run over the same root still sees one file, so the file-count quota holds across runs.
    again = MemoryStore.open_dir(tmp_path, Quotas(max_files=1))
    assert list(again.index) == ["a.md"]
    assert run_text(again, "APPEND c.md z")[0].error_kind == "quota"
    assert sorted(os.listdir(tmp_path)) == ["a.md"]


def test_text_that_is_not_utf8_is_refused(tmp_path):
    store = MemoryStore.open_dir(tmp_path)
    for op, args in [
        ("WRITE", ["a.md", "x\udcffy"]),
        ("APPEND", ["a.md", "\ud800"]),
        ("UPSERT", ["a.md", "k\udcff", "v"]),
        ("SEARCH", ["\udcff", "*"]),
    ]:
        result = store.run_op(op, args)
        assert not result.ok and result.error_kind == "bad_args", (op, result.to_json())
        result.to_json()["args"][-1].encode()  # echoed arguments are encodable
    assert os.listdir(tmp_path) == []
