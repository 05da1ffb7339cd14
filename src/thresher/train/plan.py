"""A fine-tuning run's plan, shared by both engines (`lora`'s loop and
`engine_hf`'s Trainer): the hyper-parameters (`TrainConfig`) and the record
(`TrainResult`), the batches decided before the run, the learning-rate
schedule, the per-row sample weights and the LoRA layers."""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from thresher.errors import UsageError
from thresher.train.examples import Examples

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
    every core this process may use. `engine` "own" is `lora`'s loop, "hf"
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


def wrap_lora(model: Any, config: TrainConfig) -> Any:
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
