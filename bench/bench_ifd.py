"""IFD scoring with the bundled SmolLM2-135M: batched `score_lm` against the
one-row-at-a-time `score_lm_reference`, and against a bare forward pass of the
same model over the same tokens. One process, CPU.

    PYTHONPATH=src python bench/bench_ifd.py --rows 2000

Rows are a seeded uniform sample of examples/demo/pool.jsonl. The batched
run scores all rows; the reference (one row at a time) runs on the first
`--ref-rows` and its time is extrapolated per token to all rows; the
ablations (no dedup / no prefix reuse), the bare forward pass and bf16 run on
the first rows too. Every timing is reported as wall and process-CPU seconds;
run with `--threads 1` on a shared machine and compare CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

POOL = Path(__file__).resolve().parents[1] / "examples" / "demo" / "pool.jsonl"


def load_rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded uniform sample of the demo pool as (prompt, response) texts."""
    rows = [json.loads(line) for line in POOL.read_text(encoding="utf-8").splitlines() if line.strip()]
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False))
    prompts = [rows[i]["instruction"] + (f"\n\n{rows[i]['input']}" if rows[i].get("input") else "") for i in pick]
    return prompts, [rows[i]["output"] for i in pick]


def timed(fn, *args, **kwargs):
    """fn's result and {"wall_s", "cpu_s"}: wall-clock and this process's CPU seconds.
    With one torch thread, CPU seconds barely move when other jobs share the
    machine, so comparisons use them; wall seconds are what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2)}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic)


def top_overlap(a: np.ndarray, b: np.ndarray, frac: float = 0.1) -> float:
    """Share of the top `frac` rows by `a` that are also top by `b` (NaN last)."""
    k = max(1, int(frac * len(a)))
    top = lambda x: set(np.argsort(np.where(np.isfinite(x), -x, np.inf), kind="stable")[:k])  # noqa: E731
    return len(top(a) & top(b)) / k


def bare_forward(model, plan, batch_tokens: int, logits: bool, threads: int | None) -> None:
    """A plain forward pass over every sequence score_lm runs (after dedup), length-
    bucketed and right-padded like score_lm, without prefix reuse or loss."""
    import torch

    from thresher.features.lm_scores import _buckets
    from thresher.models import torch_threads

    active = np.flatnonzero(plan.active)
    lengths = plan.lengths[active]
    base = getattr(model, model.base_model_prefix)
    with torch.inference_mode(), torch_threads(threads):
        for batch in _buckets(lengths, batch_tokens):
            ids, lens = plan.tokens(active[batch])
            mask = np.arange(int(lens.max())) < lens[:, None]
            grid = np.zeros(mask.shape, dtype=np.int64)
            grid[mask] = ids
            x, m = torch.from_numpy(grid), torch.from_numpy(mask).long()
            (model if logits else base)(input_ids=x, attention_mask=m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows scored by the batched run")
    parser.add_argument("--subset", type=int, default=200, help="rows for the ablations and bare forward")
    parser.add_argument("--ref-rows", type=int, default=80, help="rows for the one-at-a-time reference")
    parser.add_argument("--bf16-rows", type=int, default=40, help="rows for the bfloat16 check")
    parser.add_argument("--sweep", default="1024,4096,8192", help="batch_tokens values tried on --sweep-rows")
    parser.add_argument("--sweep-rows", type=int, default=100)
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all usable cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import torch

    from thresher.features import lm_scores
    from thresher.features.lm_scores import score_lm, score_lm_reference
    from thresher.models import available_cores, load_causal_lm

    lm, load_t = timed(load_causal_lm, None)
    model, tokenizer = lm
    prompts, responses = load_rows(args.rows, args.seed)
    bt = args.batch_tokens or lm_scores.DEFAULT_BATCH_TOKENS
    kw = dict(dtype="float32", num_threads=args.threads)

    def plan_of(n: int):
        return lm_scores._Plan.build(tokenizer, prompts[:n], responses[:n], "auto", lm_scores.DEFAULT_MAX_LENGTH)

    def tokens(n: int) -> int:
        """Tokens of every row's two sequences (before dedup and prefix reuse)."""
        plan = plan_of(n)
        return int(plan.lengths[plan.seg_len[:, 3] + plan.seg_len[:, 1] > 0].sum())

    def rate(t: dict, n_tok: int) -> dict:
        return {**t, "tok_per_cpu_s": round(n_tok / t["cpu_s"], 1), "tok_per_wall_s": round(n_tok / t["wall_s"], 1)}

    n_tokens = tokens(len(prompts))
    fig: dict = {
        "rows": len(prompts), "tokens": n_tokens, "batch_tokens": bt, "load": load_t,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "threads": args.threads or available_cores(), "loadavg_start": os.getloadavg()[0],
    }
    print(json.dumps(fig), flush=True)
    score_lm(prompts[:16], responses[:16], lm, **kw)  # warm-up

    fig["sweep"] = {}
    for value in [int(v) for v in args.sweep.split(",") if v]:
        _, t = timed(score_lm, prompts[: args.sweep_rows], responses[: args.sweep_rows], lm, batch_tokens=value, **kw)
        fig["sweep"][value] = t
        print(f"batch_tokens={value} on {args.sweep_rows} rows: {t}", flush=True)

    f32, t = timed(score_lm, prompts, responses, lm, batch_tokens=bt, **kw)
    fig["batched"] = rate(t, n_tokens)
    print(f"batched float32, {len(prompts)} rows: {fig['batched']}", flush=True)

    if args.ref_rows:
        ref, t = timed(score_lm_reference, prompts[: args.ref_rows], responses[: args.ref_rows], lm, **kw)
        ref_tokens = tokens(args.ref_rows)
        fig["reference"] = {"rows": args.ref_rows, **rate(t, ref_tokens),
                            "extrapolated_cpu_s": round(t["cpu_s"] * n_tokens / ref_tokens, 1),
                            "extrapolated_wall_s": round(t["wall_s"] * n_tokens / ref_tokens, 1)}
        fig["speedup_vs_reference_cpu"] = round(fig["reference"]["extrapolated_cpu_s"] / fig["batched"]["cpu_s"], 2)
        fig["speedup_vs_reference_wall"] = round(fig["reference"]["extrapolated_wall_s"] / fig["batched"]["wall_s"], 2)
        fig["batched_vs_reference_max_abs_diff"] = {
            k: float(np.nanmax(np.abs(ref[k] - f32[k][: args.ref_rows])))
            for k in ("loss_response_given_prompt", "loss_response_alone", "ifd", "ppl_prompt")
        }
        print(f"reference: {fig['reference']}", flush=True)

    # Ablations and the bare forward pass on the same first rows, back to back.
    n = min(args.subset, len(prompts))
    if n:
        plan, sub_tokens = plan_of(n), tokens(n)
        ran = int(plan.lengths[plan.active].sum())  # tokens the bare forward runs: deduplicated full sequences
        sub: dict = {"rows": n, "tokens": sub_tokens, "tokens_after_dedup": ran}
        for dedup, reuse in ((True, True), (True, False), (False, True), (False, False)):
            lm_scores._DEDUP, lm_scores._REUSE_PREFIX = dedup, reuse
            _, t = timed(score_lm, prompts[:n], responses[:n], lm, batch_tokens=bt, **kw)
            sub[f"batched{'' if dedup else '_no_dedup'}{'' if reuse else '_no_prefix_reuse'}"] = rate(t, sub_tokens)
        lm_scores._DEDUP, lm_scores._REUSE_PREFIX = True, True
        _, t = timed(bare_forward, model, plan, bt, True, args.threads)
        sub["bare_forward_logits"] = rate(t, ran)
        _, t = timed(bare_forward, model, plan, bt, False, args.threads)
        sub["bare_forward_body"] = rate(t, ran)
        fig["subset"] = sub
        print(f"subset: {json.dumps(sub)}", flush=True)

    m = min(args.bf16_rows, len(prompts))
    if m:
        f32_m, t32 = timed(score_lm, prompts[:m], responses[:m], lm, batch_tokens=bt, **kw)
        bf16, t16 = timed(score_lm, prompts[:m], responses[:m], lm, batch_tokens=bt, dtype="bfloat16",
                          num_threads=args.threads)
        fig["bf16"] = {
            "rows": m, "float32": t32, "bfloat16": t16,
            "ifd_spearman": round(spearman(f32_m["ifd"], bf16["ifd"]), 4),
            "ifd_top10pct_overlap": round(top_overlap(f32_m["ifd"], bf16["ifd"]), 3),
            "ifd_max_abs_diff": float(np.nanmax(np.abs(f32_m["ifd"] - bf16["ifd"]))),
        }
        print(f"bf16: {fig['bf16']}", flush=True)

    fig["loadavg_end"] = os.getloadavg()[0]
    fig["ifd_summary"] = {"median": float(np.nanmedian(f32["ifd"])), "share_ge_1": float(np.nanmean(f32["ifd"] >= 1)),
                          "nan": int(np.isnan(f32["ifd"]).sum()), "truncated": int(f32["lm_truncated"].sum())}
    print(json.dumps(fig, indent=2))
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2) + "\n")


if __name__ == "__main__":
    main()
