# python -m pytest tests/unit/test_adapters.py -q
"""The adapter registry's lineage, checks and publish order; merged-copy config and merge; the model CLI's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automem.serving import adapters
from automem.serving.config import MAX_LORA_RANKS, ConfigError, ServeConfig, load_config, parse_config
from automem.serving.lineage import AdapterError, base_matches, read_adapter

ROOT = Path(__file__).resolve().parents[2]
LINEAGE = {
    "dataset_id": "ds-1a2b",
    "base_model": f"/elsewhere/models/{adapters.target_base_model(ServeConfig()).rsplit('/', 1)[-1]}",
    "preset": "cpu-small",
    "config": {"lora_rank": 8},
    "metrics": {"first_loss": 2.3456, "last_loss": 1.987},
    "automem_version": "0.1.0",
    "created_at": "2026-12-02T10:00:00+00:00",
}


def _adapter(folder: Path, rank: int = 8, base: str | None = None, lineage: dict | None = LINEAGE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "base_model_name_or_path": base}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    if lineage is not None:
        (folder / "training.json").write_text(json.dumps(lineage))
    return folder


def _lora(**lora) -> ServeConfig:
    return parse_config({"lora": {"serve_as": "lora", **lora}})


def test_lineage_line_shows_rank_dataset_preset_loss_and_time(tmp_path):
    info = read_adapter(_adapter(tmp_path / "a", rank=16), "mem-v1")
    assert (info.name, info.rank, info.base_model) == ("mem-v1", 16, LINEAGE["base_model"])
    assert info.line() == (
        "mem-v1  rank 16  dataset ds-1a2b  preset cpu-small  loss 2.35->1.99  created 2026-12-02T10:00:00+00:00"
    )
    plain = read_adapter(_adapter(tmp_path / "b", lineage=None), "other")
    assert plain.line() == "other  rank 8  no lineage (not trained by automem)"


def test_rank_pattern_counts_and_non_lora_is_refused(tmp_path):
    folder = _adapter(tmp_path / "a")
    cfg = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "rank_pattern": {"q_proj": 64}}))
    assert read_adapter(folder).rank == 64
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "peft_type": "PREFIX_TUNING"}))
    with pytest.raises(AdapterError, match="not a PEFT LoRA"):
        read_adapter(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match="missing adapter_config.json, adapter_model.safetensors"):
        read_adapter(tmp_path / "empty")


def test_check_rank_fits_names_the_field_and_the_value_to_set():
    adapters.check_rank_fits(8, _lora(max_rank=8))
    with pytest.raises(ValueError, match=r"lora\.max_rank=16") as exc:
        adapters.check_rank_fits(12, _lora(max_rank=8))
    assert "lora.max_rank (8)" in str(exc.value)
    with pytest.raises(ValueError, match=r"lora\.max_rank=320"):
        adapters.check_rank_fits(300, _lora(max_rank=256))
    with pytest.raises(ValueError, match="largest max_lora_rank"):
        adapters.check_rank_fits(1024, _lora(max_rank=512))
    adapters.check_rank_fits(1024, ServeConfig())  # merged copies take any rank
    adapters.check_rank_fits(1024, parse_config({"lora": {"serve_as": "lora", "enabled": False}}))


@pytest.mark.parametrize("rank", [2, 4, 24, 100, 1000])
def test_max_rank_must_be_one_vllm_accepts(rank):
    with pytest.raises(ConfigError, match="lora.max_rank"):
        parse_config({"lora": {"max_rank": rank}})
    for ok in MAX_LORA_RANKS:
        assert parse_config({"lora": {"max_rank": ok}}).lora.max_rank == ok


def test_serve_as_defaults_merged_on_the_cpu_and_lora_on_gpus():
    embedded, gpu = ServeConfig(), load_config(ROOT / "deploy/serve-gpu.yaml")
    assert embedded.serves_merged and not embedded.serves_lora
    assert gpu.serves_lora and gpu.lora.max_rank == 256
    for rank in (128, 256):  # the paper's presets
        adapters.check_rank_fits(rank, gpu)
    with pytest.raises(ConfigError, match="lora.serve_as"):
        parse_config({"lora": {"serve_as": "fused"}})


def test_merged_copies_get_no_lora_a_small_kv_cache_and_fractional_cpus():
    from automem.serving.options import (
        cpu_engine_env,
        engine_kwargs,
        merged_deployment_config,
        merged_placement,
    )

    cfg = ServeConfig()
    assert "enable_lora" not in engine_kwargs(cfg)  # the base engine pays nothing for LoRA
    assert engine_kwargs(_lora(max_rank=16))["max_lora_rank"] == 16
    assert "enable_lora" not in engine_kwargs(_lora(), lora=False)
    assert cpu_engine_env(cfg, merged=True)["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert cpu_engine_env(cfg)["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert merged_placement(cfg) == {"bundles": [{"CPU": 0.5}], "strategy": "PACK"}
    assert merged_deployment_config(cfg)["ray_actor_options"] == {"num_cpus": 0}
    assert merged_placement(load_config(ROOT / "deploy/serve-gpu.yaml")) is None


def test_base_model_match():
    assert base_matches(None, "/x/smollm2-135m-abc")
    assert base_matches("/home/a/.cache/automem/models/smollm2-135m-abc", "/tmp/c/models/smollm2-135m-abc")
    assert base_matches("/data/qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct")
    assert not base_matches("Qwen/Qwen2.5-7B-Instruct", "/x/smollm2-135m-abc")


def test_base_model_match_by_config_shape(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, layers in ((a, 30), (b, 30)):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": layers}))
    assert base_matches(str(a), str(b))
    (b / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 12}))
    assert not base_matches(str(a), str(b))


def test_check_publishable_refuses_another_base_and_a_rank_too_large(tmp_path):
    other = read_adapter(_adapter(tmp_path / "a", lineage={**LINEAGE, "base_model": "Qwen/Qwen2.5-7B"}), "q")
    with pytest.raises(AdapterError, match="trained on Qwen/Qwen2.5-7B.*smollm2-135m"):
        adapters.check_publishable(other, ServeConfig())
    big = read_adapter(_adapter(tmp_path / "b", rank=64), "big")
    adapters.check_publishable(big, ServeConfig())  # merged: any rank
    with pytest.raises(AdapterError, match=r"big: .*lora\.max_rank=64"):
        adapters.check_publishable(big, _lora(max_rank=8))


def test_local_registry_keeps_the_lineage(tmp_path):
    root = tmp_path / "registry"
    adapters.save_local(_adapter(tmp_path / "a"), "one", root=root)
    assert (root / "one" / "training.json").is_file()
    (line,) = [i.line() for i in adapters.describe_local(root)]
    assert line.startswith("one  rank 8  dataset ds-1a2b")
    adapters.save_local(_adapter(tmp_path / "b", lineage=None), "one", root=root, replace=True)
    assert not (root / "one" / "training.json").exists()  # no stale lineage from the replaced adapter


def test_s3_registry_order_lineage_and_replace(tmp_path):
    from moto import mock_aws

    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="reg")
        reg = adapters.AdapterRegistry("s3://reg/lora")
        uploads: list[str] = []
        real = reg._client

        def client():
            c = real()
            orig = c.upload_file
            c.upload_file = lambda src, bucket, key: (
                uploads.append(key.rsplit("/", 1)[1]),
                orig(src, bucket, key),
            )
            return c

        object.__setattr__(reg, "_client", client)
        reg.publish(_adapter(tmp_path / "a"), "one")
        # adapter_config.json (what listing looks for) goes last: a listed adapter is complete.
        assert uploads == ["adapter_model.safetensors", "training.json", "adapter_config.json"]
        assert reg.list() == ["one"] and reg.exists("one") and not reg.exists("two")
        assert reg.describe()[0].line().startswith("one  rank 8  dataset ds-1a2b")
        fp = reg.fingerprints()["one"]
        with pytest.raises(adapters.AdapterExists, match="--replace"):
            reg.publish(_adapter(tmp_path / "b", rank=16), "one", replace=False)
        assert reg.describe()[0].rank == 8  # nothing written
        reg.publish(_adapter(tmp_path / "c", rank=16, lineage=None), "one", replace=True)
        assert reg.describe()[0].rank == 16 and reg.describe()[0].lineage is None
        assert reg.fingerprints()["one"] != fp
        out = reg.download("one", tmp_path / "dl")
        assert (out / "adapter_config.json").is_file() and not (out / "training.json").exists()


def _publish(argv, tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("AUTOMEM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOMEM_STATE_DIR", str(tmp_path / "state"))
    rc = main(["model", "publish", *argv])
    return rc, capsys.readouterr()


def test_cli_publish_and_list(tmp_path, monkeypatch, capsys):
    src = _adapter(tmp_path / "a")
    rc, out = _publish([str(src), "mem-v1"], tmp_path, monkeypatch, capsys)
    assert rc == 0 and out.out.strip() == "smollm2-135m:mem-v1", out.err
    from pipelines.cli import main

    assert main(["model", "adapters"]) == 0
    assert capsys.readouterr().out.startswith(
        "mem-v1  rank 8  dataset ds-1a2b  preset cpu-small  loss 2.35->1.99"
    )


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        ("taken", [], "already exists .*--replace"),
        ("not_peft", [], "not a PEFT adapter folder"),
        ("other_base", [], "trained on .*Qwen"),
        ("rank", ["--set", "lora.serve_as=lora"], r"lora\.max_rank=16"),
        ("bad_name", [], "bad adapter name"),
    ],
)
def test_cli_publish_refusals_exit_2_and_write_nothing(tmp_path, monkeypatch, capsys, make, extra, message):
    src = _adapter(tmp_path / "a")
    name = "mem"
    if make == "taken":
        assert _publish([str(src), name], tmp_path, monkeypatch, capsys)[0] == 0
        src = _adapter(tmp_path / "b", rank=16)
    elif make == "not_peft":
        (src / "adapter_model.safetensors").unlink()
    elif make == "other_base":
        src = _adapter(tmp_path / "b", lineage={**LINEAGE, "base_model": "Qwen/Qwen2.5-7B-Instruct"})
    elif make == "rank":
        src = _adapter(tmp_path / "b", rank=16)
    elif make == "bad_name":
        name = "a:b"
    before = adapters.describe_local(tmp_path / "cache" / "adapters")
    rc, out = _publish([str(src), name, *extra], tmp_path, monkeypatch, capsys)
    assert rc == 2, out.err
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("automem model publish: "), out.err
    import re

    assert re.search(message, lines[0]), lines[0]
    assert adapters.describe_local(tmp_path / "cache" / "adapters") == before
    assert not list((tmp_path / "cache").glob("adapters/.*"))  # no temporary folder left behind


def test_merge_key_follows_the_adapter_content(tmp_path):
    from automem.serving.merge import merge_key

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    a = _adapter(tmp_path / "a")
    key = merge_key(a, base)
    assert len(key) == 16 and merge_key(a, base) == key
    (a / "training.json").write_text("{}")  # lineage is not content
    assert merge_key(a, base) == key
    (a / "adapter_model.safetensors").write_bytes(b"other weights")
    assert merge_key(a, base) != key


def test_merge_adapter_adds_the_lora_delta_and_is_cached(tmp_path):
    """A tiny llama: the merged q_proj is W + scale * B @ A, the tokenizer-side files come along, and a second call
    returns the cached folder without merging again."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, LlamaConfig

    from automem.serving import merge

    torch.manual_seed(0)
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    config = LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(base_dir)
    (base_dir / "tokenizer.json").write_text("{}")
    (base_dir / "automem-prepared.json").write_text("{}")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(adapter_dir)

    said: list[str] = []
    out = merge.merge_adapter(adapter_dir, base_dir, root=tmp_path / "merged", progress=said.append)
    assert merge.is_merged(out) and out.name == merge.merge_key(adapter_dir, base_dir) and len(said) == 1
    assert (out / "tokenizer.json").is_file() and not (out / "automem-prepared.json").exists()
    w = load_file(str(base_dir / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"]
    ad = load_file(str(adapter_dir / "adapter_model.safetensors"))
    a = next(v for k, v in ad.items() if "q_proj.lora_A" in k)
    b = next(v for k, v in ad.items() if "q_proj.lora_B" in k)
    merged = load_file(str(out / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"]
    assert torch.allclose(merged, w + (8 / 4) * b @ a, atol=1e-5) and not torch.allclose(merged, w)
    assert merge.merge_adapter(adapter_dir, base_dir, root=tmp_path / "merged", progress=said.append) == out
    assert len(said) == 1  # cached: not merged again
    with pytest.raises(FileNotFoundError, match="lora.serve_as=lora"):
        merge.merge_adapter(adapter_dir, "Qwen/Qwen2.5-7B-Instruct", root=tmp_path / "merged")
