"""The `engine="hf"` training engine: `transformers.Trainer` behind `fine_tune`.

The same run as thresher's own loop (`thresher.train.lora`), with the
Trainer's machinery doing the stepping (accelerate device placement, bf16
mixed precision, its `LengthGroupedSampler`, gradient clipping):

* loss: `compute_loss` is overridden so a batch's loss is exactly
  `weighted_loss(token_nll(...), weights)` — row-mean NLL over the response
  tokens that `encode()` labels, weighted by the sample weights (times class
  weights); rows of weight 0 are left out of the training set;
* budget: the step count is `len(plan_batches(...))`, so `train_tokens`,
  `max_steps` and `epochs` give both engines the same number of steps (the
  Trainer draws its own length-grouped batches, so the tokens seen differ a
  little from `train_tokens`);
* schedule: thresher's AdamW and `lr_factor` (warmup share `config.warmup`,
  then linear decay or constant) are handed to the Trainer as its optimizer
  and scheduler, so the learning rate per step is the same as the own loop's;
* evaluation / early stopping: a callback computes the same held-out loss as
  the own loop (`encoded_loss`, before the first step, every `eval_every`
  steps and at the end), stops after `patience` evaluations without
  improvement and restores the best adapter (the Trainer's own
  `EarlyStoppingCallback` needs checkpoints on disk and its eval loss is a
  mean of batch losses, not this token-weighted loss);
* bf16 autocast when `resolve_dtype(config.dtype, device)` says bfloat16;
  the LoRA init is seeded as in the own loop and the Trainer seeded with
  `config.seed`; the global RNG state (torch, numpy, random) is restored.

Where it helps: on a GPU (the Trainer's device handling and bf16 path are
the most used in the ecosystem) or to check that a result does not depend on
thresher's loop. On CPU the own loop is faster (bench/RESULTS_train.md).
The Trainer trains on `cuda:0` or the CPU; for another GPU set
`CUDA_VISIBLE_DEVICES`.
"""
from __future__ import annotations

import contextlib
import copy
import random
import tempfile
import time
import warnings
from typing import Any, Callable, Iterator

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError
from thresher.train.examples import Encoded, Examples, encode, pad_batch


def fine_tune_hf(train: Examples, eval: Examples | None = None, config: Any = None, model: Any = None,
                 tokenizer: Any = None, model_path: str | None = None,
                 progress: Callable[[int, int, dict], None] | None = None):
    """`fine_tune` with `transformers.Trainer` as the engine (see the module
    docstring); same arguments, same `TrainResult`."""
    import torch

    from thresher.models import load_causal_lm, resolve_dtype, torch_threads
    from thresher.train.plan import TrainConfig, TrainResult, plan_batches, sample_weights, wrap_lora

    config = TrainConfig(engine="hf") if config is None else config
    if len(train) == 0:
        raise UsageError("no training rows")
    if (model is None) != (tokenizer is None):
        raise UsageError("give both model and tokenizer, or neither (then model_path is loaded)")
    weights = sample_weights(train, config.class_weight_power)
    if model is None:
        model, tokenizer = load_causal_lm(model_path)
    else:
        model = copy.deepcopy(model)
    device = next(model.parameters()).device
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and (device.index or 0) != 0):
        raise UsageError(f"engine 'hf' trains on cpu or cuda:0, the model is on {device}; "
                         "set CUDA_VISIBLE_DEVICES to pick a GPU, or use engine 'own'")
    enc = encode(tokenizer, train, config.template, config.max_length)
    eval_enc = encode(tokenizer, eval, config.template, config.max_length) if eval is not None and len(eval) else None
    dtype = resolve_dtype(config.dtype, device.type)
    rows = np.flatnonzero(weights > 0)
    total = len(plan_batches(enc.lengths, rows, config, make_rng(config.seed)))
    with _global_rng_kept(), torch_threads(config.threads), tempfile.TemporaryDirectory() as out:
        torch.manual_seed(config.seed)
        peft_model = wrap_lora(model, config)
        with warnings.catch_warnings():  # the Trainer still asks for the deprecated `is_gradient_checkpointing`
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            trainer = build_trainer(peft_model, tokenizer, enc, weights, config, out, eval_enc=eval_enc, dtype=dtype,
                                    total=total, progress=progress)
            trainer.train()
        run = trainer.run
        run.finish()
    peft_model.eval()
    return TrainResult(peft_model, tokenizer, run.history, run.best_step, run.best_loss, run.stopped_early,
                       run.step, run.tokens, run.seconds, config, run.pad, dtype, run.diverged)


@contextlib.contextmanager
def _global_rng_kept() -> Iterator[None]:
    """The Trainer calls `set_seed` (random, numpy, torch, cuda); give the caller its RNG state back."""
    import torch

    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


class _RunState:
    """History, best adapter and early stopping, as in the own loop's `_Run`."""

    def __init__(self, model, enc: Encoded, eval_enc: Encoded | None, config, dtype: str, pad_id: int, total: int,
                 progress: Callable[[int, int, dict], None] | None):
        self.model, self.enc, self.eval_enc, self.cfg = model, enc, eval_enc, config
        self.dtype, self.pad_id = dtype, pad_id
        self.total, self.progress = total, progress
        self.history: list[dict] = []
        self.best_step, self.best_loss, self.best_state = None, None, None
        self.bad_evals, self.stopped_early, self.diverged = 0, False, False
        self.step, self.tokens, self.pad, self.seconds = 0, 0, 0, 0.0
        self.start = time.perf_counter()
        self._since_log: list[float] = []
        self._before_step: dict | None = None

    def trainable(self) -> dict:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def begin(self) -> None:
        self.start = time.perf_counter()
        if self.eval_enc is not None:
            self.log()

    def batch_done(self, loss: float, real: int, pad: int) -> None:
        self._since_log.append(loss)
        self.tokens += real
        self.pad += pad

    def diverge(self) -> None:
        """A non-finite loss: remember the adapter before this step, to undo the step."""
        self.diverged = self.stopped_early = True
        self._before_step = self.trainable()

    def step_done(self, global_step: int) -> bool:
        """After an optimizer step; True when training should stop."""
        if self.diverged:
            self._restore(self._before_step)
            return True
        self.step = global_step
        if self.progress is not None:
            self.progress(self.step, self.total, {"loss": self._since_log[-1], "tokens": self.tokens,
                                                  "seconds": time.perf_counter() - self.start})
        if self.step % self.cfg.eval_every == 0 or self.step == self.total:
            self.log()
        return self.stopped_early

    def log(self) -> None:
        eval_loss = None
        if self.eval_enc is not None:
            from thresher.train.loss import encoded_loss

            eval_loss = encoded_loss(self.model, self.eval_enc, self.pad_id, self.cfg.eval_batch_size,
                                     self.dtype)["loss"]
            self._track(eval_loss)
        train_loss = float(np.mean(self._since_log)) if self._since_log else None
        self._since_log = []
        self.history.append({"step": self.step, "train_loss": train_loss, "eval_loss": eval_loss,
                             "tokens": self.tokens, "seconds": round(time.perf_counter() - self.start, 4)})

    def _track(self, eval_loss: float) -> None:
        if self.best_loss is None or eval_loss < self.best_loss - self.cfg.min_delta:
            self.best_loss, self.best_step, self.bad_evals = eval_loss, self.step, 0
            self.best_state = self.trainable()
            return
        self.bad_evals += 1
        if self.cfg.patience is not None and self.bad_evals >= self.cfg.patience:
            self.stopped_early = True

    def finish(self) -> None:
        if not self.history or self.history[-1]["step"] != self.step:
            self.log()
        self.seconds = time.perf_counter() - self.start
        if self.best_state is not None and self.best_step != self.step:
            self._restore(self.best_state)

    def _restore(self, state: dict | None) -> None:
        import torch

        if not state:
            return
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name in state:
                    p.copy_(state[name])


class _Collator:
    """Rows (by index into the encoding) -> thresher's right-padded batch plus the rows' weights."""

    def __init__(self, enc: Encoded, weights: np.ndarray, pad_id: int):
        self.enc, self.weights, self.pad_id = enc, weights, pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        rows = np.fromiter((f["row"] for f in features), np.int64, len(features))
        ids, mask, labels = pad_batch(self.enc, rows, self.pad_id)
        real = int(self.enc.lengths[rows].sum())
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                "labels": torch.from_numpy(labels), "weights": torch.as_tensor(self.weights[rows], dtype=torch.float32),
                "n_real": real, "n_pad": int(ids.size) - real}


def _trainer_class():
    from transformers import Trainer, TrainerCallback

    class WeightedTrainer(Trainer):
        """`Trainer` whose loss is thresher's per-row weighted loss (`weighted_loss`)."""

        loss_is_scaled_for_ga = False  # a per-batch mean; the Trainer divides by accumulation steps

        def __init__(self, *args, run: _RunState, reduction: str = "row", bf16_autocast: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self.run, self.reduction, self.bf16_autocast = run, reduction, bf16_autocast

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch

            from thresher.train.loss import token_nll, weighted_loss

            ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
            with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=self.bf16_autocast):
                nll_sum, count = token_nll(model, ids, mask, labels)
            loss = weighted_loss(nll_sum, count, inputs["weights"].to(nll_sum.dtype), self.reduction)
            if model.training:
                if not torch.isfinite(loss):  # diverged: undo this step afterwards, keep the best adapter
                    self.run.diverge()
                    loss = sum((p * 0.0).sum() for p in model.parameters() if p.requires_grad)
                else:
                    self.run.batch_done(float(loss.detach()), int(inputs.get("n_real", 0)), int(inputs.get("n_pad", 0)))
            return (loss, {"nll_sum": nll_sum, "count": count}) if return_outputs else loss

    class Tracking(TrainerCallback):
        def __init__(self, run: _RunState):
            self.run = run

        def on_train_begin(self, args, state, control, **kwargs):
            self.run.begin()

        def on_step_end(self, args, state, control, **kwargs):
            if self.run.step_done(state.global_step):
                control.should_training_stop = True

    return WeightedTrainer, Tracking


def build_trainer(peft_model: Any, tokenizer: Any, enc: Encoded, weights: np.ndarray, config: Any, output_dir: str,
                  eval_enc: Encoded | None = None, dtype: str = "float32", total: int | None = None,
                  progress: Callable[[int, int, dict], None] | None = None):
    """The `WeightedTrainer` for a LoRA-wrapped model on encoded rows (rows of
    weight 0 are left out); `trainer.run` holds the history. `total` steps
    (None: from `plan_batches`)."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainingArguments

    from thresher.train.loss import pad_id_of
    from thresher.train.plan import lr_factor, plan_batches

    rows = np.flatnonzero(np.asarray(weights) > 0)
    if rows.size == 0:
        raise UsageError("every training row has weight 0")
    if total is None:
        total = len(plan_batches(enc.lengths, rows, config, make_rng(config.seed)))
    device = next(peft_model.parameters()).device
    pad_id = pad_id_of(tokenizer)
    data = Dataset.from_dict({"row": rows.tolist(), "length": enc.lengths[rows].tolist()})
    bf16 = dtype == "bfloat16"
    args = TrainingArguments(
        output_dir=output_dir, max_steps=total, per_device_train_batch_size=config.batch_size,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        max_grad_norm=config.max_grad_norm or 0.0, bf16=bf16, use_cpu=device.type == "cpu", seed=config.seed,
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0, label_names=["labels"])
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(total, config))
    run = _RunState(peft_model, enc, eval_enc, config, dtype, pad_id, total, progress)
    trainer_cls, tracking = _trainer_class()
    collator = _Collator(enc, weights, pad_id)
    trainer = trainer_cls(model=peft_model, args=args, train_dataset=data, data_collator=collator,
                          optimizers=(opt, sched), callbacks=[tracking(run)], run=run,
                          reduction=config.loss_reduction, bf16_autocast=bf16)
    trainer.remove_callback(PrinterCallback)  # it prints the end-of-train metrics dict (disable_tqdm)
    return trainer


__all__ = ["fine_tune_hf", "build_trainer"]
