"""`thresher train`: LoRA fine-tune on a dataset, report held-out metrics, save the adapter."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from thresher.cli.common import FieldMapOpt, FormatOpt, InputFormatOpt, console, print_json, read_input
from thresher.cli.common import QuietOpt
from thresher.cli.train_options import (AlphaOpt, BatchOpt, DtypeOpt, EngineOpt, LrOpt, MaxLenOpt, MaxStepsOpt, ModelOpt,
                                        RankOpt, ThreadsOpt)
from thresher.errors import UsageError


def holdout_split(examples, fraction: float, seed: int, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, eval rows): whole groups on one side, stratified by label when rows have labels."""
    try:
        from thresher.train.split import group_split
    except ImportError:  # pragma: no cover - split.py ships with the package
        group_split = None
    if group_split is not None:
        return group_split(len(examples), fraction, seed=seed, groups=groups, stratify=examples.labels)
    order = np.random.default_rng(seed).permutation(len(examples))
    cut = max(1, int(round(fraction * len(examples))))
    return np.sort(order[cut:]), np.sort(order[:cut])


def label_rows(examples, label_field: Optional[str], class_weights: bool) -> None:
    """Without a label field, a classification-style response is the row's label
    (needed for --class-weights; gives per-class losses)."""
    from thresher.train.metrics import detect_label_set

    if examples.labels is not None:
        return
    if detect_label_set(examples.responses):
        examples.labels = [r.strip() for r in examples.responses]
    elif class_weights:
        raise UsageError("--class-weights needs classes: pass --label-field FIELD (responses are not label-like)")


def print_history(history: list[dict]) -> None:
    from rich.table import Table

    table = Table("step", "train loss", "eval loss", "tokens", "seconds", title="training")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for h in history:
        table.add_row(str(h["step"]), fmt(h["train_loss"]), fmt(h["eval_loss"]), str(h["tokens"]),
                      f"{h['seconds']:.1f}")
    console.print(table)


def print_metrics(metrics: dict) -> None:
    from rich.table import Table

    console.print(f"held-out: n={metrics['n']}  loss={metrics['loss']:.4f}  perplexity={metrics['perplexity']:.2f}")
    for key in ("accuracy", "macro_f1", "exact_match", "token_f1"):
        if key in metrics:
            console.print(f"  {key}: {metrics[key]:.4f}")
    if "per_class" in metrics:
        table = Table("label", "precision", "recall", "f1", "support", title="per class")
        for label, m in metrics["per_class"].items():
            table.add_row(label, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
        console.print(table)


def _groups(ds) -> Optional[np.ndarray]:
    """Augmented rows and their source share `_source_id`: keep them on one side."""
    if "_source_id" not in ds.table.column_names:
        return None
    src = np.asarray(ds.table.column("_source_id").to_pylist(), dtype=object)
    missing = np.array([v is None or v == "" for v in src])
    src[missing] = ds.ids[missing]
    return src.astype(str)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        data: str = typer.Argument(..., help="Training rows: JSONL, JSON, CSV, Parquet or a HF folder (any record format)."),
        output: Path = typer.Option(..., "-o", "--output", help="Adapter folder to write (adapter, train_config.json, history.json, metrics.json)."),
        eval_path: Optional[str] = typer.Option(None, "--eval", help="Held-out rows (same formats)."),
        holdout: Optional[float] = typer.Option(None, "--holdout", help="Hold out this fraction of DATA for evaluation (default 0.1 without --eval; 0 = none)."),
        model: Optional[str] = ModelOpt,
        max_steps: Optional[int] = MaxStepsOpt,
        epochs: float = typer.Option(1.0, "--epochs"),
        lr: float = LrOpt,
        train_tokens: Optional[int] = typer.Option(None, "--train-tokens", help="Train until this many tokens are processed (wins over --max-steps and --epochs)."),
        lora_r: int = RankOpt,
        lora_alpha: float = AlphaOpt,
        targets: str = typer.Option("q_proj,k_proj,v_proj,o_proj", "--targets", help="LoRA target modules, comma-separated."),
        batch_size: int = BatchOpt,
        max_length: int = MaxLenOpt,
        eval_every: int = typer.Option(25, "--eval-every", help="Evaluate the held-out loss every N steps."),
        patience: int = typer.Option(3, "--patience", help="Stop after N evaluations without improvement (0: never)."),
        template: Optional[str] = typer.Option(None, "--template", help="Prompt template with {prompt} (and optional {response}); default: the tokenizer's chat template."),
        class_weights: bool = typer.Option(False, "--class-weights", help="Weight rows by w_c = N/(C*N_c) of their class (--label-field, or label-like responses)."),
        label_field: Optional[str] = typer.Option(None, "--label-field", help="Field holding each row's class (per-class metrics, class weights)."),
        weight_field: str = typer.Option("auto", "--weight-field", help="Sample-weight field ('auto': _weight when present; 'none': ignore)."),
        generate: bool = typer.Option(False, "--generate", help="Also generate answers for the held-out rows (exact match, token F1)."),
        dtype: str = DtypeOpt,
        threads: Optional[int] = ThreadsOpt,
        engine: str = EngineOpt,
        seed: int = typer.Option(0, "--seed"),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        overwrite: bool = typer.Option(False, "--overwrite"),
        as_json: bool = typer.Option(False, "--json"),
        quiet: bool = QuietOpt,
    ) -> None:
        """LoRA fine-tune a causal LM on DATA, evaluate on held-out rows, save the adapter."""
        from thresher.data.writers import check_output_path
        from thresher.train import Examples, TrainConfig, evaluate_model, fine_tune, save_adapter

        check_output_path(output, [data, eval_path or ""], overwrite)
        if eval_path and holdout:
            raise UsageError("give --eval or --holdout, not both")
        config = TrainConfig(lr=lr, epochs=epochs, max_steps=max_steps, train_tokens=train_tokens,
                             batch_size=batch_size, lora_r=lora_r,
                             lora_alpha=lora_alpha, target_modules=tuple(t.strip() for t in targets.split(",") if t.strip()),
                             eval_every=eval_every, patience=patience or None, max_length=max_length,
                             template=template, dtype=dtype, seed=seed, threads=threads,
                             class_weight_power=1.0 if class_weights else None, engine=engine)
        wfield = None if weight_field.lower() == "none" else weight_field
        ds = read_input(data, record_format, field_map, input_format).dataset
        train = Examples.from_dataset(ds, weight_field=wfield, label_field=label_field)
        label_rows(train, label_field, class_weights)
        evaluation = None
        if eval_path:
            eval_ds = read_input(eval_path, record_format, field_map, input_format).dataset
            has_label = label_field is not None and label_field in eval_ds.table.column_names
            evaluation = Examples.from_dataset(eval_ds, weight_field=None, label_field=label_field if has_label else None)
            label_rows(evaluation, None, False)
        else:
            fraction = 0.1 if holdout is None else holdout
            if not 0 <= fraction < 1 or math.isnan(fraction):
                raise UsageError(f"--holdout must be in [0, 1), got {holdout}")
            if fraction > 0:
                tr, ev = holdout_split(train, fraction, seed, _groups(ds))
                train, evaluation = train.take(tr), train.take(ev)
        from thresher.cli.progress import TrainingProgress
        from thresher.train.setup import reported

        with TrainingProgress(not (quiet or as_json)) as progress, reported(progress, "training") as step:
            result = fine_tune(train, evaluation, config, model_path=model, progress=step)
        metrics = None
        if evaluation is not None:
            metrics = evaluate_model(result.model, result.tokenizer, evaluation, template=template, generate=generate,
                                     max_length=max_length, dtype=dtype)
        summary = {"adapter": str(output), "train_rows": len(train), "eval_rows": len(evaluation or []),
                   "steps": result.steps, "train_tokens": result.train_tokens, "seconds": round(result.seconds, 2),
                   "best_step": result.best_step, "best_eval_loss": result.best_eval_loss,
                   "base_eval_loss": result.history[0]["eval_loss"] if evaluation is not None else None,
                   "stopped_early": result.stopped_early, "diverged": result.diverged, "metrics": metrics}
        save_adapter(result, output, extra={"metrics.json": summary})
        if as_json:
            print_json({**summary, "history": result.history})
        elif not quiet:
            print_history(result.history)
            if result.diverged:
                console.print("[red]training diverged (non-finite loss); lower --lr[/]")
            if metrics is not None:
                console.print(f"eval loss: base {summary['base_eval_loss']:.4f} -> best {result.best_eval_loss:.4f} "
                              f"(step {result.best_step}{', stopped early' if result.stopped_early else ''})")
                print_metrics(metrics)
            console.print(f"adapter -> {output}")
