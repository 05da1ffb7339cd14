"""LoRA fine-tuning of a causal LM with a compact training loop.

The loss of a batch B with sample weights w_i (1 when none are given):

    l_i = (1 / T_i) * sum_t nll_{i,t}          mean NLL over row i's T_i learned tokens
    L_B = sum_{i in B} w_i * l_i / sum_{i in B} w_i

so a row counts by its weight, not by its length, and the weights are
normalized within each batch (a self-normalized, Hajek-style mean; rows with
weight 0 are left out). `loss_reduction="token"` instead weights every learned
token alike, ``sum_i w_i * sum_t nll_{i,t} / sum_i w_i * T_i`` (transformers'
default when all w_i = 1): long answers then dominate the gradient. Sample weights come from `Examples.weights` (e.g. the
`_weight = 1/pi` column a sampling design writes) times class weights
`w_c = (N / (C * N_c)) ** class_weight_power` when that is set.

The loop (not `transformers.Trainer`) because it is shorter and faster here:
batches are grouped by length (little padding), the vocabulary head runs only
on the positions that carry a loss (llama-style models), the weighted loss
above needs no Trainer subclass, and evaluation, early stopping and restoring
the best adapter are a few lines. peft supplies the LoRA layers.
"""
from __future__ import annotations

import warnings

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError
from thresher.train.examples import Encoded, Examples, encode, pad_batch

DTYPES = ("auto", "float32", "bfloat16")
SCHEDULES = ("linear", "constant")
REDUCTIONS = ("row", "token")
ENGINES = ("own", "hf")  # hf: transformers.Trainer (thresher.train.engine_hf)
_GROUP_BATCHES = 50  # batches per length-sorted group (as transformers' LengthGroupedSampler)


@dataclass
class TrainConfig:
    """Fine-tuning hyper-parameters. How long a run trains: `train_tokens`
    (equal compute: batches are taken until that many non-pad tokens have
    been processed), else `max_steps`, else `epochs` (may be fractional).
    The learning rate warms up linearly over the first `warmup` share of the
    steps, then follows `schedule`. Evaluation runs every `eval_every` optimizer steps;
    training stops after `patience` evaluations without an improvement of more
    than `min_delta` (patience None: never). `class_weight_power` None is off;
    1.0 multiplies `w_c = N / (C * N_c)` (from `Examples.labels`) into the
    sample weights. `dtype` "auto" is bf16 autocast only where the hardware
    has native bf16 (see `thresher.models.resolve_dtype`). `threads` None uses
    every core this process may use. `engine` "own" is the loop below, "hf"
    `transformers.Trainer` with the same loss, steps and schedule (`engine_hf`)."""

    lr: float = 1e-3
    epochs: float = 1.0
    max_steps: int | None = None
    train_tokens: int | None = None
    warmup: float = 0.1
    batch_size: int = 8
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    eval_every: int = 25
    patience: int | None = 3
    min_delta: float = 0.0
    max_length: int = 256
    template: str | None = None
    dtype: str = "auto"
    group_by_length: bool = True
    seed: int = 0
    threads: int | None = None
    class_weight_power: float | None = None
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    schedule: str = "linear"
    eval_batch_size: int = 16
    loss_reduction: str = "row"
    engine: str = "own"

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        _positive("lr", self.lr, float)
        _positive("epochs", self.epochs, float)
        for name in ("batch_size", "lora_r", "eval_every", "max_length", "eval_batch_size"):
            _positive(name, getattr(self, name), int)
        if not 0.0 <= self.warmup < 1.0:
            raise UsageError(f"warmup must be a share of the steps in [0, 1), got {self.warmup}")
        for name in ("max_steps", "patience", "threads") + (() if self.train_tokens == "auto" else ("train_tokens",)):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), int)
        _positive("lora_alpha", self.lora_alpha, float)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise UsageError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.min_delta < 0 or self.weight_decay < 0:
            raise UsageError("min_delta and weight_decay must be >= 0")
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.loss_reduction not in REDUCTIONS:
            raise UsageError(f"loss_reduction must be one of {', '.join(REDUCTIONS)}, got {self.loss_reduction!r}")
        if self.engine not in ENGINES:
            raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.class_weight_power is not None and not 0.0 <= self.class_weight_power <= 1.0:
            raise UsageError(f"class_weight_power must be in [0, 1] or None, got {self.class_weight_power}")
        if not self.target_modules:
            raise UsageError("target_modules must name at least one module (e.g. q_proj, v_proj)")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


def _positive(name: str, value: Any, kind: type) -> None:
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool) and value > 0
    if not ok:
        raise UsageError(f"{name} must be a positive {'number' if kind is float else 'integer'}, got {value!r}")


@dataclass
class TrainResult:
    """A fine-tuned peft model (eval mode; the best-eval-loss adapter when an
    eval set was given) and its record. `history` holds one dict per log
    point: step, train_loss (mean since the previous point), eval_loss (None
    without eval), tokens (non-pad training tokens so far), seconds.
    `diverged`: training stopped at a non-finite loss (the step is not applied)."""

    model: Any
    tokenizer: Any
    history: list[dict]
    best_step: int | None
    best_eval_loss: float | None
    stopped_early: bool
    steps: int
    train_tokens: int
    seconds: float
    config: TrainConfig
    pad_tokens: int = 0
    dtype: str = "float32"
    diverged: bool = False


# ------------------------------------------------------------------ batching
def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           group_batches: int = _GROUP_BATCHES) -> list[np.ndarray]:
    """One epoch of batches (row indices) with little padding: rows are
    shuffled, cut into groups of `group_batches * batch_size`, sorted by length
    inside each group and cut into batches; the batch order is shuffled."""
    lengths = np.asarray(lengths)
    order = rng.permutation(lengths.size)
    group = batch_size * group_batches
    batches = []
    for start in range(0, order.size, group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, chunk.size, batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of shuffled batches without length grouping."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def padding_tokens(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    """Pad positions the batches need when each is padded to its longest row."""
    lengths = np.asarray(lengths)
    return int(sum(lengths[b].max() * b.size - lengths[b].sum() for b in batches))


def plan_batches(lengths: np.ndarray, rows: np.ndarray, config: "TrainConfig",
                 rng: np.random.Generator) -> list[np.ndarray]:
    """Every batch (row indices) of a run, decided before it starts so the
    schedule knows the step count: epochs of length-grouped (or shuffled)
    batches of `rows`, cut at `train_tokens`, else `max_steps`, else `epochs`."""
    if config.train_tokens == "auto":
        raise UsageError("train_tokens='auto' is resolved by compare; give fine_tune a number of tokens")
    per_epoch = math.ceil(rows.size / config.batch_size)
    steps = None if config.train_tokens else (config.max_steps or max(1, math.ceil(config.epochs * per_epoch)))
    plan: list[np.ndarray] = []
    tokens = 0
    while True:
        lens = lengths[rows]
        epoch = (length_grouped_batches(lens, config.batch_size, rng) if config.group_by_length
                 else random_batches(rows.size, config.batch_size, rng))
        for b in epoch:
            if (steps is not None and len(plan) >= steps) or (steps is None and tokens >= config.train_tokens):
                return plan
            plan.append(rows[b])
            tokens += int(lens[b].sum())


def lr_factor(total: int, config: "TrainConfig") -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warmup, then linear decay to 0 (or constant)."""
    warm = int(round(config.warmup * total))
    linear = config.schedule == "linear"

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if not linear:
            return 1.0
        return max(0.0, 1.0 - (step - warm) / max(1, total - warm))
    return factor


# ------------------------------------------------------------------ training
def sample_weights(examples: Examples, class_weight_power: float | None) -> np.ndarray:
    """Per-row training weights: `examples.weights` (or ones) times class weights."""
    w = np.ones(len(examples)) if examples.weights is None else examples.weights.astype(np.float64)
    if class_weight_power is not None:
        if examples.labels is None:
            raise UsageError("class weights need a label per row (a label field); none was given")
        from thresher.balance.weights import class_weights

        w = w * class_weights(np.asarray(examples.labels, dtype=object), power=class_weight_power)
    if not np.any(w > 0):
        raise UsageError("every training row has weight 0")
    return w


def weighted_loss(nll_sum, count, weights, reduction: str = "row"):
    """The batch loss of the module docstring ("row"): sum_i w_i * (nll_sum_i / count_i) / sum_i w_i;
    "token": sum_i w_i * nll_sum_i / sum_i w_i * count_i (transformers' token mean when w = 1)."""
    if reduction == "token":
        return (weights * nll_sum).sum() / (weights * count).sum()
    return (weights * nll_sum / count).sum() / weights.sum()


def fine_tune(train: Examples, eval: Examples | None = None, config: TrainConfig = TrainConfig(), model: Any = None,
              tokenizer: Any = None, model_path: str | None = None,
              progress: Callable[[int, int, dict], None] | None = None) -> TrainResult:
    """LoRA fine-tune on `train`, evaluating the response loss on `eval` every
    `config.eval_every` steps (and before the first step) with early stopping.
    A given `model` is copied, never modified; otherwise `model_path` (None:
    the bundled SmolLM2) is loaded. `progress(step, total_steps, stats)` is
    called after every step (stats: loss, tokens, seconds so far).
    `config.engine` "hf" trains with `transformers.Trainer` instead (`thresher.train.engine_hf`)."""
    if config.engine == "hf":
        from thresher.train.engine_hf import fine_tune_hf

        return fine_tune_hf(train, eval, config, model, tokenizer, model_path, progress)
    import torch

    from thresher.models import load_causal_lm, resolve_dtype, torch_threads

    if len(train) == 0:
        raise UsageError("no training rows")
    if (model is None) != (tokenizer is None):
        raise UsageError("give both model and tokenizer, or neither (then model_path is loaded)")
    weights = sample_weights(train, config.class_weight_power)  # check before loading a model
    if model is None:
        model, tokenizer = load_causal_lm(model_path)
    else:
        model = copy.deepcopy(model)
    enc = encode(tokenizer, train, config.template, config.max_length)
    eval_enc = encode(tokenizer, eval, config.template, config.max_length) if eval is not None and len(eval) else None
    device_type = next(model.parameters()).device.type
    dtype = resolve_dtype(config.dtype, device_type)
    cuda = [next(model.parameters()).device.index or 0] if device_type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch_threads(config.threads):
        torch.manual_seed(config.seed)
        peft_model = _wrap_lora(model, config)
        run = _Run(peft_model, tokenizer, enc, weights, eval_enc, config, dtype, progress)
        run.train()
    peft_model.eval()
    return TrainResult(peft_model, tokenizer, run.history, run.best_step, run.best_loss, run.stopped_early,
                       run.step, run.tokens, run.seconds, config, run.pad, dtype, run.diverged)


def _wrap_lora(model: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in config.target_modules if m not in names]
    if missing:
        raise UsageError(f"LoRA target modules {missing} are not in this model; it has e.g. "
                         f"{sorted(n for n in names if n.endswith('proj'))[:8]}")
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        # peft still asks transformers 5 for the deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)


def pad_id_of(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if tid is not None:
            return int(tid)
    return 0


class _Run:
    """State of one training run (kept out of fine_tune to keep it short)."""

    def __init__(self, model, tokenizer, enc: Encoded, weights: np.ndarray, eval_enc: Encoded | None,
                 config: TrainConfig, dtype: str, progress: Callable[[int, int, dict], None] | None = None):
        import torch

        self.model, self.enc, self.weights, self.eval_enc, self.cfg = model, enc, weights, eval_enc, config
        self.pad_id, self.dtype, self.progress = pad_id_of(tokenizer), dtype, progress
        self.rows = np.flatnonzero(weights > 0)
        self.rng = make_rng(config.seed)
        self.plan = plan_batches(enc.lengths, self.rows, config, self.rng)
        self.total = len(self.plan)
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_factor(self.total, config))
        self.history: list[dict] = []
        self.best_step, self.best_loss, self.best_state = None, None, None
        self.bad_evals, self.stopped_early, self.diverged = 0, False, False
        self.step, self.tokens, self.pad, self.seconds = 0, 0, 0, 0.0
        self._since_log: list[float] = []

    def train(self) -> None:
        import torch

        from thresher.train.metrics import token_nll

        start = time.perf_counter()
        if self.eval_enc is not None:
            self.log(start)
        device = next(self.model.parameters()).device
        use_bf16 = self.dtype == "bfloat16"
        while self.step < self.total and not self.stopped_early:
            self.model.train()
            rows = self.plan[self.step]
            ids, mask, labels = (torch.from_numpy(a).to(device) for a in pad_batch(self.enc, rows, self.pad_id))
            w = torch.as_tensor(self.weights[rows], dtype=torch.float32, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                nll_sum, count = token_nll(self.model, ids, mask, labels)
            loss = weighted_loss(nll_sum, count, w, self.cfg.loss_reduction)
            if not torch.isfinite(loss):  # diverged: no later step can recover; keep the best adapter
                self.diverged = self.stopped_early = True
                break
            loss.backward()
            if self.cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                               self.cfg.max_grad_norm)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            self.step += 1
            real = int(self.enc.lengths[rows].sum())
            self.tokens += real
            self.pad += int(ids.numel()) - real
            self._since_log.append(float(loss.detach()))
            if self.progress is not None:
                self.progress(self.step, self.total, {"loss": self._since_log[-1], "tokens": self.tokens,
                                                      "seconds": time.perf_counter() - start})
            if self.step % self.cfg.eval_every == 0 or self.step == self.total:
                self.log(start)
        if not self.history or self.history[-1]["step"] != self.step:
            self.log(start)  # the point where training stopped
        self.seconds = time.perf_counter() - start
        if self.best_state is not None and self.best_step != self.step:
            self.restore()

    def log(self, start: float) -> None:
        eval_loss = None
        if self.eval_enc is not None:
            from thresher.train.metrics import encoded_loss

            eval_loss = encoded_loss(self.model, self.eval_enc, self.pad_id, self.cfg.eval_batch_size,
                                     self.dtype)["loss"]
            self.track(eval_loss)
        train_loss = float(np.mean(self._since_log)) if self._since_log else None
        self._since_log = []
        self.history.append({"step": self.step, "train_loss": train_loss, "eval_loss": eval_loss,
                             "tokens": self.tokens, "seconds": round(time.perf_counter() - start, 4)})

    def track(self, eval_loss: float) -> None:
        if self.best_loss is None or eval_loss < self.best_loss - self.cfg.min_delta:
            self.best_loss, self.best_step, self.bad_evals = eval_loss, self.step, 0
            self.best_state = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
            return
        self.bad_evals += 1
        if self.cfg.patience is not None and self.bad_evals >= self.cfg.patience:
            self.stopped_early = True

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name in self.best_state:
                    p.copy_(self.best_state[name])


# ------------------------------------------------------------------ saving
def save_adapter(result: TrainResult, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the adapter (peft `save_pretrained`), `train_config.json`,
    `history.json` and each `extra` {file name: JSON-able value} into
    `folder`, atomically (temp folder + rename)."""
    from thresher.data.writers import atomic_path

    folder = Path(folder)
    with atomic_path(folder) as tmp:
        tmp.unlink()
        tmp.mkdir()
        result.model.save_pretrained(str(tmp))
        record = {"config": result.config.to_dict(), "best_step": result.best_step,
                  "best_eval_loss": result.best_eval_loss, "stopped_early": result.stopped_early,
                  "steps": result.steps, "train_tokens": result.train_tokens, "seconds": result.seconds,
                  "dtype": result.dtype, "diverged": result.diverged}
        (tmp / "train_config.json").write_text(json.dumps(record, indent=2) + "\n")
        (tmp / "history.json").write_text(json.dumps(result.history, indent=2) + "\n")
        for name, value in (extra or {}).items():
            (tmp / name).write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    return folder


def load_adapter(folder: str | Path, model: Any = None, tokenizer: Any = None,
                 model_path: str | None = None) -> tuple[Any, Any]:
    """(peft model, tokenizer) from a folder written by `save_adapter`, on a
    copy of `model` (with its `tokenizer`) or on `model_path` (None: the bundled SmolLM2)."""
    from peft import PeftModel

    from thresher.models import load_causal_lm

    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise UsageError(f"{folder}: not an adapter folder (no adapter_config.json)")
    if model is None:
        model, tokenizer = load_causal_lm(model_path)
    else:
        model = copy.deepcopy(model)
    peft_model = PeftModel.from_pretrained(model, str(folder))
    peft_model.eval()
    return peft_model, tokenizer


__all__ = ["TrainConfig", "TrainResult", "fine_tune", "save_adapter", "load_adapter", "length_grouped_batches",
           "plan_batches", "lr_factor",
           "random_batches", "padding_tokens", "sample_weights", "weighted_loss"]
