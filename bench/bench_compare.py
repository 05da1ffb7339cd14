"""Where `thresher compare` spends its time, before and after the evaluation rework.

On the topic pool of `bench/make_topic_pool.py` (1,840 Alpaca rows with long
passages, 5 labels, a separate 100-row eval file), in one process:

* model load (once per process);
* held-out scoring of the untuned model, the old way (one forward pass per
  row x label for the label scores plus one for the loss, as
  `label_logprobs` + `response_loss` still do) vs the new one
  (`score_rows`: one cached pass per row);
* one training run with the old defaults (30 steps x 8, lr 2e-4) vs the new
  ones (equal-compute token budget, lr 1e-3, warmup), with the accuracy each gets;
* with `--full`, the whole comparison of the issue (full, random@20%, a
  k-center and a DEITA selection of 20%, base; 3 seeds) through the CLI's
  code path, wall time and verdicts.

    python bench/make_topic_pool.py --wheel /tmp/demo_src/evals-3.0.1.post1-py3-none-any.whl --out out/topic
    python bench/bench_compare.py --pool out/topic/pool.jsonl --eval out/topic/eval.jsonl [--full]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<46} {seconds:8.1f} s", flush=True)
    return out, seconds


def old_scoring(model, tok, examples, labels, max_length):
    from thresher.train.metrics import label_logprobs, response_loss

    lp = label_logprobs(model, tok, examples.prompts, labels, max_length=max_length)
    loss = response_loss(model, tok, examples, max_length=max_length)["loss"]
    acc = sum(labels[k] == r.strip() for k, r in zip(lp.argmax(axis=1), examples.responses)) / len(examples)
    return {"loss": loss, "accuracy": acc}


def new_scoring(model, tok, examples, labels, max_length):
    from thresher.train.metrics import evaluate_model

    out = evaluate_model(model, tok, examples, label_set=labels, max_length=max_length)
    return {"loss": out["loss"], "accuracy": out["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default="out/topic/pool.jsonl")
    ap.add_argument("--eval", default="out/topic/eval.jsonl")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--full", action="store_true", help="Also run the whole 4-arm x 3-seed comparison.")
    ap.add_argument("--out", default="out/bench_compare")
    args = ap.parse_args()

    from thresher.api import read
    from thresher.models import load_causal_lm, resolve_dtype
    from thresher.train.examples import Examples
    from thresher.train.lora import TrainConfig, fine_tune

    pool, ev = read(args.pool), read(args.eval)
    (model, tok), _ = timed("load SmolLM2-135M-Instruct", lambda: load_causal_lm())
    print(f"dtype auto -> {resolve_dtype('auto')}")
    examples = Examples.from_dataset(ev, weight_field=None)
    labels = sorted({r.strip() for r in examples.responses})
    old, t_old = timed("score 100 eval rows, old (row x label passes)",
                       lambda: old_scoring(model, tok, examples, labels, args.max_length))
    new, t_new = timed("score 100 eval rows, new (one cached pass)",
                       lambda: new_scoring(model, tok, examples, labels, args.max_length))
    print(f"  scoring speed-up {t_old / t_new:.1f}x; base accuracy old {old['accuracy']:.2f} new {new['accuracy']:.2f}")
    train = Examples.from_dataset(pool, weight_field=None)
    old_cfg = TrainConfig(lr=2e-4, max_steps=30, batch_size=8, max_length=args.max_length, patience=None, warmup=0.0)
    new_cfg = TrainConfig(train_tokens=24_576, batch_size=8, max_length=args.max_length, patience=None)
    for name, cfg in (("old defaults (30 steps, lr 2e-4)", old_cfg), ("new defaults (24,576 tokens, lr 1e-3)", new_cfg)):
        result, _ = timed(f"train, {name}", lambda: fine_tune(train, None, cfg, model=model, tokenizer=tok))
        score = new_scoring(result.model, tok, examples, labels, args.max_length)
        print(f"  {result.steps} steps, {result.train_tokens:,} tokens, {result.train_tokens / result.seconds:,.0f} "
              f"tok/s; accuracy {score['accuracy']:.2f}, loss {score['loss']:.3f}")
    if args.full:
        run_full(args, pool, ev, model, tok)


def run_full(args, pool, ev, model, tok) -> None:
    from pathlib import Path

    from thresher.api import write_selection
    from thresher.pipeline.runner import StepSpec, run_steps
    from thresher.train.compare import compare, compare_table

    Path(args.out).mkdir(parents=True, exist_ok=True)
    files = {}
    for method in ("kcenter", "deita"):
        sel = run_steps(pool, [StepSpec(method, {"fraction": 0.2})], seed=0).selection
        path = f"{args.out}/{method}.jsonl"
        write_selection(pool, sel, path, command="select", overwrite=True)
        files[method] = path
    arms = ["full", "random@20%", files["kcenter"], files["deita"], "base"]
    results, seconds = timed("compare: 4 arms + base, 3 seeds, 100 eval rows",
                             lambda: compare(pool, arms, eval_data=ev, holdout=None, seeds=3,
                                             label_field="category", model=model, tokenizer=tok,
                                             config=_auto_config(args.max_length)))
    print(compare_table(results))
    with open(f"{args.out}/results.json", "w") as fh:
        json.dump({"seconds": seconds, "arms": [{k: a[k] for k in ("name", "summary", "verdict")}
                                                for a in results["arms"]]}, fh, indent=2)


def _auto_config(max_length: int):
    from thresher.train.lora import TrainConfig

    return replace(TrainConfig(max_length=max_length, patience=None), train_tokens="auto")


if __name__ == "__main__":
    main()
