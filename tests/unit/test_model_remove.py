# .venv/bin/python -m pytest tests/unit/test_model_remove.py -q
"""``automem model remove``: the local registry, the merged copies, an S3 registry, unknown names, a dry run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from automem.serving import adapters
from automem.serving.merge import merge_key, merged_copies


def _adapter(folder: Path, weights: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "base_model_name_or_path": None}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    (folder / "training.json").write_text("{}")
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A temporary cache dir (adapters, merged copies, a prepared base model) and state dir; no endpoint."""
    root = tmp_path / "cache"
    monkeypatch.setenv("AUTOMEM_CACHE_DIR", str(root))
    monkeypatch.setenv("AUTOMEM_STATE_DIR", str(tmp_path / "state"))
    base = root / "models" / "smollm2-135m-0123456789abcdef"
    base.mkdir(parents=True)
    (base / "config.json").write_text('{"dtype": "float32"}')
    return root


def _merged(cache: Path, adapter_dir: Path) -> Path:
    """A (fake) merged copy of the adapter onto the cached base, where ``merge_adapter`` would put it."""
    folder = cache / "merged" / merge_key(adapter_dir, cache / "models" / "smollm2-135m-0123456789abcdef")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / ".merged").write_text("x\n")
    return folder


def _remove(argv, capsys):
    from pipelines.cli import main

    rc = main(["model", "remove", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_remove_local_helper(tmp_path):
    root = tmp_path / "registry"
    adapters.save_local(_adapter(tmp_path / "a"), "one", root=root)
    adapters.save_local(_adapter(tmp_path / "b"), "two", root=root)
    assert adapters.remove_local("one", root=root) == root / "one"
    assert adapters.list_local(root) == ["two"] and not list(root.glob(".*"))
    assert adapters.remove_local("one", root=root) is None


def test_merged_copies_names_only_that_adapters_copies(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    a, b = _adapter(tmp_path / "a"), _adapter(tmp_path / "b", b"other weights")
    root = tmp_path / "merged"
    (root / merge_key(a, base)).mkdir(parents=True)
    (root / merge_key(b, base)).mkdir(parents=True)
    assert merged_copies(a, [base, tmp_path / "not-a-model"], root=root) == [root / merge_key(a, base)]


def test_cli_removes_the_folder_and_the_merged_copy(cache, tmp_path, capsys):
    one = adapters.save_local(_adapter(tmp_path / "a"), "one")
    two = adapters.save_local(_adapter(tmp_path / "b", b"other weights"), "two")
    copy_one, copy_two = _merged(cache, one), _merged(cache, two)
    rc, out, err = _remove(["one"], capsys)
    assert rc == 0, err
    assert out.splitlines() == [f"one: removed the folder {one}", f"one: removed the merged copy {copy_one}"]
    assert adapters.list_local() == ["two"] and not copy_one.exists() and copy_two.is_dir()
    assert err == ""  # no endpoint runs: nothing to say about it


def test_cli_keeps_a_merged_copy_another_adapter_shares(cache, tmp_path, capsys):
    one = adapters.save_local(_adapter(tmp_path / "a"), "one")
    adapters.save_local(_adapter(tmp_path / "a"), "same")  # the same files: the same merged copy
    copy = _merged(cache, one)
    rc, out, _ = _remove(["one"], capsys)
    assert rc == 0 and out.splitlines()[-1] == f"one: kept the merged copy {copy} (also same's)"
    assert copy.is_dir() and adapters.list_local() == ["same"]


def test_cli_dry_run_removes_nothing(cache, tmp_path, capsys):
    one = adapters.save_local(_adapter(tmp_path / "a"), "one")
    copy = _merged(cache, one)
    rc, out, _ = _remove(["one", "--dry-run"], capsys)
    assert rc == 0
    assert out.splitlines() == [
        f"one: would remove the folder {one}",
        f"one: would remove the merged copy {copy}",
    ]
    assert adapters.list_local() == ["one"] and copy.is_dir()


def test_cli_unknown_name_exits_2_and_removes_nothing(cache, tmp_path, capsys):
    one = adapters.save_local(_adapter(tmp_path / "a"), "one")
    adapters.save_local(_adapter(tmp_path / "b"), "two")
    copy = _merged(cache, one)
    rc, out, err = _remove(["one", "nope"], capsys)
    assert rc == 2 and out == ""
    assert err.splitlines() == ["automem model remove: unknown adapter nope; registered: one, two"]
    assert adapters.list_local() == ["one", "two"] and copy.is_dir()


def test_registry_remove_deletes_every_object_config_first(tmp_path):
    from moto import mock_aws

    with mock_aws():
        import boto3

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="reg")
        reg = adapters.AdapterRegistry("s3://reg/lora")
        reg.publish(_adapter(tmp_path / "a"), "one")
        reg.publish(_adapter(tmp_path / "b"), "one-b")  # a name that starts with the other's
        keys = reg.remove("one")
        assert keys[0] == "lora/one/adapter_config.json"  # unlisted first
        assert sorted(keys) == ["lora/one/adapter_config.json", "lora/one/adapter_model.safetensors",
                                "lora/one/training.json"]  # fmt: skip
        assert reg.list() == ["one-b"] and reg.remove("one") == []
        left = [o["Key"] for o in s3.list_objects_v2(Bucket="reg")["Contents"]]
        assert all(k.startswith("lora/one-b/") for k in left)


def test_cli_removes_from_the_running_endpoints_registry(cache, tmp_path, monkeypatch, capsys):
    """The running embedded endpoint's S3 registry (moto here) loses the adapter; the endpoint (merged copies, the
    default) drops its engine at its next polls, and the note says so."""
    from moto import mock_aws

    from automem.serving.endpoint import config_path
    from automem.serving.state import EndpointState, write_state
    from pipelines import model_cmd

    uri = f"s3://{adapters.EMBEDDED_BUCKET}/{adapters.EMBEDDED_PREFIX}"
    write_state(
        EndpointState(
            pid=os.getpid(),
            base_url="http://127.0.0.1:1/v1",
            model_id="smollm2-135m",
            config=config_path(None),
            phase="ready",
            adapter_registry=uri,
        )
    )
    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=adapters.EMBEDDED_BUCKET)
        live = adapters.AdapterRegistry(uri)
        monkeypatch.setattr(model_cmd, "_running_embedded_registry", lambda: live)
        one = adapters.save_local(_adapter(tmp_path / "a"), "one")
        live.publish(one, "one")
        live.publish(_adapter(tmp_path / "c", b"only live"), "live-only")
        copy_live = _merged(cache, tmp_path / "c")
        rc, out, err = _remove(["one", "live-only"], capsys)
        assert rc == 0, err
        assert out.splitlines() == [
            f"one: removed {uri}/one (the running endpoint's registry, 3 objects)",
            f"one: removed the folder {one}",
            f"live-only: removed {uri}/live-only (the running endpoint's registry, 3 objects)",
            f"live-only: removed the merged copy {copy_live}",  # found from the registry's files
        ]
        assert live.list() == [] and adapters.list_local() == [] and not copy_live.exists()
        assert err.startswith(
            "the running endpoint undeploys the merged engine of one, live-only within about 10 s"
        )


def test_cli_registry_option(cache, tmp_path, capsys):
    from moto import mock_aws

    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="reg")
        reg = adapters.AdapterRegistry("s3://reg/lora")
        reg.publish(_adapter(tmp_path / "a"), "one")
        adapters.save_local(_adapter(tmp_path / "b"), "local")  # not in that registry: unknown there
        rc, _, err = _remove(["local", "--registry", "s3://reg/lora"], capsys)
        assert rc == 2 and err.strip() == "automem model remove: unknown adapter local; registered: one"
        rc, out, _ = _remove(["one", "--registry", "s3://reg/lora"], capsys)
        assert rc == 0 and out.splitlines() == ["one: removed s3://reg/lora/one (the registry, 3 objects)"]
        assert reg.list() == [] and adapters.list_local() == ["local"]
