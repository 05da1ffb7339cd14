"""`thresher compare | curve | sweep`: the evaluate stage (LoRA arms, learning curves, small sweeps)."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from thresher.cli.common import FieldMapOpt, FormatOpt, InputFormatOpt, console, print_json, read_input
from thresher.cli.train_options import (AlphaOpt, BatchOpt, DtypeOpt, EngineOpt, LrOpt, MaxLenOpt, MaxStepsOpt, ModelOpt,
                                        RankOpt, ThreadsOpt)
from thresher.errors import UsageError

OutDirOpt = typer.Option(..., "-o", "--output", help="Results folder: results.json, table.txt (+ adapters/).")
EvalOpt = typer.Option(None, "--eval", help="Held-out file (same formats as the pool); rows with the same ids leave the pool.")
HoldoutOpt = typer.Option(None, "--holdout", help="Fraction of the pool held out for evaluation (default 0.1 without --eval); groups stay whole.")
SeedsOpt = typer.Option(3, "--seeds", help="Runs per arm (different random subsets and training seeds).")
SeedOpt = typer.Option(0, "--seed", help="First seed; run i uses seed+i. Also seeds the holdout split.")
LabelOpt = typer.Option(None, "--label-field", help="Class label field: stratifies the holdout, enables +class-weights.")
GroupOpt = typer.Option(None, "--group-field", help="Rows sharing this field's value stay on one side of the holdout (default: _source_id when present).")
EpochsOpt = typer.Option(1.0, "--epochs", help="Each run makes this many passes over its own data (unequal compute).")
TokensOpt = typer.Option(None, "--train-tokens", help="Equal compute: every run trains on this many tokens; 'auto' = 3 epochs of the smallest arm, at most 24,576 on CPU / 1,048,576 on GPU.")
TaskOpt = typer.Option(None, "--task-field", help="Labels are scored per task of this field (default: --label-field).")
ValidationOpt = typer.Option(32, "--validation-rows", help="Rows of the training side held out for early stopping (never the test rows); 0: none.")
TemplateOpt = typer.Option(None, "--template", help="Prompt template: chat (the tokenizer's), plain, or a string holding {prompt}.")
DeviceOpt = typer.Option("auto", "--device", help="auto (cuda when available)|cpu|cuda[:N].")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing results.json.")
JsonOpt = typer.Option(False, "--json", help="Print results.json instead of the table.")
QuietOpt = typer.Option(False, "--quiet", "-q")


def _config(*, max_steps, epochs, lr, batch_size, lora_r, lora_alpha, max_length, template, threads, dtype,
            train_tokens=None, engine="own"):
    from thresher.train.setup import resolve_template
    from thresher.train.lora import TrainConfig

    return TrainConfig(lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lora_r=lora_r,
                       lora_alpha=lora_alpha, max_length=max_length, template=resolve_template(template),
                       threads=threads, dtype=dtype, patience=None, train_tokens=_tokens(train_tokens, max_steps),
                       engine=engine)


_CONFIG_PARAMS = ("max_steps", "epochs", "lr", "batch_size", "lora_r", "lora_alpha", "max_length", "template",
                  "threads", "dtype", "train_tokens", "engine")


def _inputs(ctx: typer.Context):
    """(TrainConfig, holdout fraction, pool, eval data) from a compare/curve/sweep command's parameters."""
    p = ctx.params
    cfg = _config(**{name: p[name] for name in _CONFIG_PARAMS})
    frac = _holdout(p["eval_path"], p["holdout"])
    pool = _read(p["data"], p["record_format"], p["field_map"], p["input_format"])
    return cfg, frac, pool, _read(p["eval_path"], p["record_format"], p["field_map"], p["input_format"])


def _tokens(text: Optional[str], max_steps: Optional[int]):
    """--train-tokens: None, "auto" or a positive integer (--max-steps wins over auto)."""
    if text is None or (text == "auto" and max_steps is not None):
        return None
    if text == "auto":
        return "auto"
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise UsageError(f"--train-tokens: expected a number of tokens or 'auto', got {text!r}") from None
    if value < 1:
        raise UsageError(f"--train-tokens must be at least 1, got {value}")
    return value


def _command(ctx: typer.Context) -> str:
    """The command line, rebuilt from the parsed parameters (non-defaults only)."""
    parts = ["thresher", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or value is False:
            continue
        if not param.opts[0].startswith("-"):
            parts.append(str(value))
        elif value is True:
            parts.append(param.opts[0])
        else:
            parts += [param.opts[0], str(value)]
    return shlex.join(parts)


def _read(path: Optional[str], record_format, field_map, input_format):
    return None if path is None else read_input(path, record_format, field_map, input_format).dataset


def _holdout(eval_path: Optional[str], holdout: Optional[float]) -> Optional[float]:
    if eval_path is not None and holdout is not None:
        raise UsageError("give --eval or --holdout, not both")
    return None if eval_path is not None else (0.1 if holdout is None else holdout)


def _finish(results: dict, table: str, output: Path, overwrite: bool, as_json: bool, quiet: bool) -> None:
    from thresher.train.results import write_results

    path = write_results(output, results, table, overwrite)
    if as_json:
        print_json(results)
    elif not quiet:
        console.print(table, markup=False, end="")
        console.print(f"results: {path}", markup=False)


def _progress(quiet: bool, total_runs: int | None = None, what: str = "runs"):
    from thresher.cli.progress import TrainingProgress

    return TrainingProgress(not quiet, total_runs, what)


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        ctx: typer.Context,
        data: str = typer.Argument(..., help="The pool the arms draw from."),
        output: Path = OutDirOpt,
        arms: str = typer.Option("full,random@20%", "--arms", help="Comma-separated arms: full, base, random@200|20%|50000t, a selection file, bag:random@20%x3, seq:A,B; modifiers +class-weights[=P], +template=T."),
        templates: Optional[str] = typer.Option(None, "--templates", help="Run every arm under each template, e.g. \"chat|plain\"."),
        model: Optional[str] = ModelOpt, eval_path: Optional[str] = EvalOpt, holdout: Optional[float] = HoldoutOpt,
        seeds: int = SeedsOpt, seed: int = SeedOpt, label_field: Optional[str] = LabelOpt,
        group_field: Optional[str] = GroupOpt, max_steps: Optional[int] = MaxStepsOpt, epochs: float = EpochsOpt,
        lr: float = LrOpt, batch_size: int = BatchOpt, lora_r: int = RankOpt, lora_alpha: float = AlphaOpt,
        max_length: int = MaxLenOpt, template: Optional[str] = TemplateOpt, threads: Optional[int] = ThreadsOpt,
        dtype: str = DtypeOpt, device: str = DeviceOpt, engine: str = EngineOpt,
        train_tokens: Optional[str] = typer.Option("auto", "--train-tokens", help=TokensOpt.help),
        task_field: Optional[str] = TaskOpt, validation_rows: int = ValidationOpt,
        n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap replicates for the intervals."),
        save_adapters: bool = typer.Option(False, "--save-adapters", help="Keep every adapter under OUTPUT/adapters/."),
        record_format: Optional[str] = FormatOpt, field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt, overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Fine-tune LoRA adapters per arm and seed at equal compute; paired bootstrap intervals, differences vs random/base/full, a verdict per arm."""
        from thresher.train.arms import parse_arms, split_arm_list
        from thresher.train.compare import compare, compare_table
        from thresher.train.results import check_out_dir

        check_out_dir(output, overwrite)
        parsed = parse_arms(split_arm_list(arms))
        cfg, frac, pool, eval_ds = _inputs(ctx)
        template_list = templates.split("|") if templates else None
        total = sum(1 if a.kind == "base" else seeds for a in parsed) * max(1, len(template_list or []))
        with _progress(quiet or as_json, total) as progress:
            results = compare(pool, parsed, config=cfg, eval_data=eval_ds, holdout=frac, seeds=seeds, seed=seed,
                              templates=template_list, label_field=label_field,
                              group_field=group_field, model_path=model,
                              save_adapters=output / "adapters" if save_adapters else None,
                              progress=progress, command=_command(ctx), device=device, task_field=task_field,
                              validation=validation_rows or None, n_boot=n_boot)
        _finish(results, compare_table(results), output, overwrite, as_json, quiet)

    @app.command("curve")
    def curve_cmd(
        ctx: typer.Context,
        data: str = typer.Argument(..., help="The pool."),
        output: Path = OutDirOpt,
        fractions: str = typer.Option("0.1,0.2,0.4,0.8,1.0", "--fractions", help="Nested subset sizes (fractions of the training side)."),
        by: Optional[str] = typer.Option(None, "--by", help="Stratify the nested subsets by this field."),
        metric: str = typer.Option("auto", "--metric", help="auto (macro_f1 with label-like answers, else loss)|loss|perplexity|accuracy|macro_f1"),
        n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap refits for the intervals."),
        model: Optional[str] = ModelOpt, eval_path: Optional[str] = EvalOpt, holdout: Optional[float] = HoldoutOpt,
        seeds: int = SeedsOpt, seed: int = SeedOpt, label_field: Optional[str] = LabelOpt,
        group_field: Optional[str] = GroupOpt, max_steps: Optional[int] = MaxStepsOpt, epochs: float = EpochsOpt,
        lr: float = LrOpt, batch_size: int = BatchOpt, lora_r: int = RankOpt, lora_alpha: float = AlphaOpt,
        max_length: int = MaxLenOpt, template: Optional[str] = TemplateOpt, threads: Optional[int] = ThreadsOpt,
        dtype: str = DtypeOpt, device: str = DeviceOpt, engine: str = EngineOpt, train_tokens: Optional[str] = TokensOpt,
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt, overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Learning curve on nested subsets; power-law fit, extrapolation to 2x/5x/10x and a recommendation."""
        from thresher.train.curve import curve, curve_table
        from thresher.train.results import check_out_dir

        check_out_dir(output, overwrite)
        try:
            fracs = [float(f) for f in fractions.split(",") if f.strip()]
        except ValueError:
            raise UsageError(f"--fractions: expected numbers like 0.1,0.2,0.4, got {fractions!r}") from None
        cfg, frac, pool, eval_ds = _inputs(ctx)
        with _progress(quiet or as_json, seeds * len(set(fracs))) as progress:
            results = curve(pool, config=cfg, fractions=fracs, seeds=seeds, seed=seed, metric=metric, by=by,
                            eval_data=eval_ds, holdout=frac, label_field=label_field, group_field=group_field,
                            model_path=model, n_boot=n_boot, progress=progress,
                            command=_command(ctx), device=device)
        _finish(results, curve_table(results), output, overwrite, as_json, quiet)

    @app.command("sweep")
    def sweep_cmd(
        ctx: typer.Context,
        data: str = typer.Argument(..., help="The pool."),
        output: Path = OutDirOpt,
        grid: Optional[str] = typer.Option(None, "--grid", help="e.g. \"lr=1e-4,3e-4;epochs=1,2;lora_r=4,8\""),
        random: Optional[int] = typer.Option(None, "--random", help="N random configs (lr log-uniform 5e-5..1e-3, epochs 1-3, rank 4/8/16)."),
        train_on: str = typer.Option("full", "--train-on", help="Data to train on: full, random@BUDGET or a selection file."),
        metric: str = typer.Option("auto", "--metric"),
        model: Optional[str] = ModelOpt, eval_path: Optional[str] = EvalOpt, holdout: Optional[float] = HoldoutOpt,
        seeds: int = typer.Option(1, "--seeds", help="Runs per config."), seed: int = SeedOpt,
        label_field: Optional[str] = LabelOpt, group_field: Optional[str] = GroupOpt,
        max_steps: Optional[int] = MaxStepsOpt, epochs: float = EpochsOpt, lr: float = LrOpt,
        batch_size: int = BatchOpt, lora_r: int = RankOpt, lora_alpha: float = AlphaOpt,
        max_length: int = MaxLenOpt, template: Optional[str] = TemplateOpt, threads: Optional[int] = ThreadsOpt,
        dtype: str = DtypeOpt, device: str = DeviceOpt, engine: str = EngineOpt, train_tokens: Optional[str] = TokensOpt,
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt, overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Grid or random search over lr / epochs / LoRA rank; best held-out score (ties to the cheaper config)."""
        from thresher.train.results import check_out_dir
        from thresher.train.sweep import grid_trials, parse_grid, random_trials, sweep, sweep_table

        check_out_dir(output, overwrite)
        if (grid is None) == (random is None):
            raise UsageError("give exactly one of --grid or --random N")
        trials = grid_trials(parse_grid(grid)) if grid else random_trials(random, seed)
        cfg, frac, pool, eval_ds = _inputs(ctx)
        with _progress(quiet or as_json, seeds * len(trials)) as progress:
            results = sweep(pool, trials, config=cfg, data=train_on, seeds=seeds, seed=seed, metric=metric,
                            eval_data=eval_ds, holdout=frac, label_field=label_field, group_field=group_field,
                            model_path=model, progress=progress, command=_command(ctx),
                            device=device)
        _finish(results, sweep_table(results), output, overwrite, as_json, quiet)
