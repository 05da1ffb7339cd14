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

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError
from thresher.train.examples import Encoded, Examples, encode, pad_batch
from thresher.train.loss import pad_id_of, weighted_loss
from thresher.train.plan import (DTYPES, ENGINES, REDUCTIONS, SCHEDULES, TrainConfig,  # noqa: F401 (re-export)
                                 TrainResult, length_grouped_batches, lr_factor, padding_tokens, plan_batches,
                                 random_batches, sample_weights, wrap_lora)

_wrap_lora = wrap_lora  # the name engine tests import


# ------------------------------------------------------------------ training
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
        peft_model = wrap_lora(model, config)
        run = _Run(peft_model, tokenizer, enc, weights, eval_enc, config, dtype, progress)
        run.train()
    peft_model.eval()
    return TrainResult(peft_model, tokenizer, run.history, run.best_step, run.best_loss, run.stopped_early,
                       run.step, run.tokens, run.seconds, config, run.pad, dtype, run.diverged)


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

        from thresher.train.loss import token_nll

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
            from thresher.train.loss import encoded_loss

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
