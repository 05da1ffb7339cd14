"""Training throughput: thresher's LoRA loop vs the transformers `Trainer` at its best.

Same model, LoRA config (r=8, alpha=16, q/k/v/o), rows, token ids and masking,
batch size, number of steps, learning rate and schedule (linear, no warmup),
gradient clipping (1.0), device and dtype, in one process, one arm after the other.
Arms (`--arms`):

* `ours[-bf16][-token][-nogroup]`: thresher's own loop (`engine="own"`);
* `hf`: thresher's `engine="hf"` (transformers.Trainer + thresher's per-row weighted loss);
* `trainer`: the Trainer's defaults (random batches padded to the longest row);
* `trainer-grouped`: its best padded configuration, `group_by_length`
  (`train_sampling_strategy="group_by_length"`, transformers' LengthGroupedSampler);
* `trainer-flat`: padding-free, `DataCollatorWithFlattening` (each batch one
  packed row with position_ids; no pad tokens at all). Needs `use_cache=False`:
  with the config's `use_cache=True` transformers 5 builds a cache in training
  too and then skips the packed-sequence mask, so the rows attend to each
  other (checked on the tiny Llama: loss 7.23 vs 7.18 padded).

Throughput = non-pad tokens / wall second of the training loop (model loading
and tokenization excluded). Every adapter is then scored on the same held-out
rows (token-weighted response loss), so the losses compare at equal steps.

    nice -n 19 python -W ignore bench/bench_train.py --model smollm2 --rows 160 --steps 20 --threads 1
    python bench/bench_train.py --model tiny --steps 30 --lr 3e-2   # quick check, no SmolLM2
    python bench/bench_train.py --device cuda --dtype bfloat16 --batch-size 32 ...   # GPU
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "examples" / "demo" / "pool.jsonl"


def load_rows(n_train: int, n_eval: int, seed: int):
    from thresher.api import read
    from thresher.train import Examples

    ds = read(str(POOL))
    ex = Examples.from_dataset(ds, weight_field=None)
    order = np.random.default_rng(seed).permutation(len(ex))
    return ex.take(order[:n_train]), ex.take(order[n_train:n_train + n_eval])


def load_model(name: str):
    if name == "tiny":
        import sys

        sys.path.insert(0, str(ROOT / "tests" / "train"))
        from conftest import build_model, build_tokenizer  # the test fixture's tiny Llama

        tok = build_tokenizer()
        return build_model(len(tok)), tok
    from thresher.models import load_causal_lm

    return load_causal_lm(None if name == "smollm2" else name)


def run_ours(model, tok, train, args, threads: int, dtype: str, reduction: str = "row", group: bool = True,
             engine: str = "own") -> dict:
    from thresher.train import TrainConfig, fine_tune

    cfg = TrainConfig(lr=args.lr, max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length,
                      threads=threads, dtype=dtype, seed=args.seed, eval_every=args.steps, loss_reduction=reduction,
                      group_by_length=group, warmup=0.0, engine=engine)
    res = fine_tune(train, None, cfg, model=model, tokenizer=tok)
    return {"model": res.model, "seconds": res.seconds, "tokens": res.train_tokens, "pad": res.pad_tokens,
            "final_train_loss": res.history[-1]["train_loss"]}


class CountingCollator:
    """A Trainer collator (pad to longest, or flattening), counting real and pad tokens."""

    def __init__(self, tok, flat: bool = False):
        from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

        self.flat = flat
        self.inner = (DataCollatorWithFlattening(return_position_ids=True, separator_id=-100) if flat
                      else DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100))
        self.tokens = self.pad = 0

    def __call__(self, features):
        if self.flat:
            features = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
        batch = self.inner(features)
        real = int(batch["input_ids"].numel()) if self.flat else int(batch["attention_mask"].sum())
        self.tokens += real
        self.pad += int(batch["input_ids"].numel()) - real
        return batch


def run_trainer(model, tok, train, args, threads: int, dtype: str, mode: str = "default") -> dict:
    """The transformers Trainer with its own loss (token mean over the batch); `mode`
    default | grouped (group_by_length) | flat (padding-free, DataCollatorWithFlattening)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from thresher.train.examples import encode

    enc = encode(tok, train, None, args.max_length)
    data = Dataset.from_dict({"input_ids": [x.tolist() for x in enc.input_ids],
                              "labels": [x.tolist() for x in enc.labels],
                              "attention_mask": [[1] * x.size for x in enc.input_ids],
                              "length": enc.lengths.tolist()})
    if mode == "flat":
        model.config.use_cache = False  # else the packed-sequence mask is skipped (see the module docstring)
    torch.manual_seed(args.seed)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                                                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                                  task_type="CAUSAL_LM"))
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "thresher-bench-trainer"
    targs = TrainingArguments(output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                              learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0,
                              logging_steps=args.steps, save_strategy="no", report_to=[],
                              use_cpu=args.device == "cpu", seed=args.seed, bf16=dtype == "bfloat16",
                              train_sampling_strategy="group_by_length" if mode == "grouped" else "random",
                              disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0)
    collator = CountingCollator(tok, flat=mode == "flat")
    trainer = Trainer(model=peft_model, args=targs, train_dataset=data, data_collator=collator)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    trainer.train()
    _sync(args.device)
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    peft_model.config.use_cache = True
    return {"model": peft_model.eval(), "seconds": seconds, "tokens": collator.tokens, "pad": collator.pad,
            "final_train_loss": losses[-1] if losses else float("nan")}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


TRAINER_MODES = {"trainer": "default", "trainer-grouped": "grouped", "trainer-flat": "flat"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | a local model folder")
    ap.add_argument("--rows", type=int, default=160)
    ap.add_argument("--eval-rows", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (the model is moved there; every arm trains there)")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 for every arm (ours-bf16 forces bf16)")
    ap.add_argument("--arms", default="ours,hf,trainer-grouped,trainer-flat",
                    help="comma list of ours[-bf16][-token][-nogroup], hf, trainer, trainer-grouped, trainer-flat")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    import torch

    from thresher.train.metrics import response_loss

    train, held = load_rows(args.rows, args.eval_rows, args.seed)
    base, tok = load_model(args.model)
    base = base.to(args.device).eval()
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (os.uname().machine + " cpu")
    print(f"model={args.model} rows={len(train)} steps={args.steps} batch={args.batch_size} "
          f"max_length={args.max_length} device={device_name} dtype={args.dtype} "
          f"load={os.getloadavg()[0]:.1f} cores={os.cpu_count()}")
    with torch.no_grad():
        base_loss = response_loss(base, tok, held, max_length=args.max_length, dtype="float32")["loss"]
    print(f"held-out response loss of the base model: {base_loss:.4f}")
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        row = {"threads": threads}
        for arm in args.arms.split(","):
            model = copy.deepcopy(base)
            dtype = "bfloat16" if "bf16" in arm else args.dtype
            if arm in TRAINER_MODES:
                r = run_trainer(model, tok, train, args, threads, dtype, TRAINER_MODES[arm])
            elif arm == "hf":
                r = run_ours(model, tok, train, args, threads, dtype, engine="hf")
            else:
                r = run_ours(model, tok, train, args, threads, dtype, "token" if "token" in arm else "row",
                             "nogroup" not in arm)
            torch.set_num_threads(threads)
            r["held_out_loss"] = response_loss(r.pop("model"), tok, held, max_length=args.max_length,
                                               dtype="float32")["loss"]
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            r["pad_share"] = r["pad"] / (r["pad"] + r["tokens"])
            row[arm] = r
            print(f"threads={threads} {arm:15s} {r['seconds']:7.1f}s  {r['tokens_per_s']:8.1f} tok/s  "
                  f"pad {r['pad_share']:.0%}  final train loss {r['final_train_loss']:.4f}  "
                  f"held-out loss {r['held_out_loss']:.4f}  (load {os.getloadavg()[0]:.1f})", flush=True)
        mine = [a for a in row if a.startswith("ours") or a == "hf"]
        peers = [a for a in row if a in TRAINER_MODES]
        row["ratios"] = {f"{a}/{b}": row[a]["tokens_per_s"] / row[b]["tokens_per_s"] for a in mine for b in peers}
        for name, ratio in row["ratios"].items():
            print(f"threads={threads} tokens/s {name}: {ratio:.2f}x", flush=True)
        results.append(row)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "base_loss": base_loss,
                                         "device": device_name, "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
