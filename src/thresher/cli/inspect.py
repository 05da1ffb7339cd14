"""`thresher inspect`: profile a pool in the terminal (or as JSON)."""
from __future__ import annotations

from typing import List, Optional

import typer
from thresher.cli.common import (FieldMapOpt, FormatOpt, InputFormatOpt, OnErrorOpt, console, escape_data,
                                 print_json, read_input, split_list)

BAR_WIDTH = 30
_EIGHTHS = " ▏▎▍▌▋▊▉"
_FEATURE_FIELDS = ("instruction_type", "cluster")  # automatic categories: computed (and cached) on demand


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect_cmd(
        data: str = typer.Argument(..., help="The pool: JSONL, JSON, CSV, Parquet or a HF save_to_disk folder."),
        by: List[str] = typer.Option([], "--by", help="Category field(s), repeat or comma-separate (default: "
                                     "'category' if present). instruction_type and cluster are computed."),
        seed: int = typer.Option(0, "--seed", help="Seed of the near-duplicate sample."),
        near_sample: int = typer.Option(2000, "--near-sample", help="Rows sampled for the near-duplicate estimate."),
        top: int = typer.Option(40, "--top", help="Category values shown in the terminal (most frequent first)."),
        cache: Optional[str] = typer.Option(None, "--cache", help="Feature cache for --by instruction_type/cluster."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        on_error: str = OnErrorOpt,
        as_json: bool = typer.Option(False, "--json", help="Print the profile as JSON."),
    ) -> None:
        """Profile a pool: format, fields, lengths, categories, duplicates, quality flags, suggestions."""
        from thresher.report.profile import profile_dataset

        fields = [f for item in by for f in split_list(item)] or None
        result = read_input(data, record_format, field_map, input_format, on_error)
        pool = _with_feature_fields(result.dataset, fields, cache)
        profile = profile_dataset(pool, by=fields, seed=seed, near_sample=near_sample)
        profile["rejected_rows"] = len(result.rejects)
        if result.rejects:
            first = result.rejects[0]
            profile["suggestions"].insert(0, f"{len(result.rejects):,} malformed rows were skipped (first: "
                                             f"{first.location}: {first.reason}); fix them or keep --on-error skip")
        if as_json:
            print_json(profile)
        else:
            print_profile(profile, top=top)


def _with_feature_fields(pool, fields: list[str] | None, cache: Optional[str]):
    """`pool` with the automatic-category features named in `fields` appended."""
    from thresher.api import attach_features, attach_kmeans

    wanted = [f for f in fields or () if f in _FEATURE_FIELDS and f not in pool.fields]
    if "instruction_type" in wanted:
        pool = attach_features(pool, ["instruction_type"], cache)
    if "cluster" in wanted:
        pool = attach_kmeans(pool, None, cache)
    return pool


def print_profile(profile: dict, top: int = 40) -> None:
    """The profile as terminal text: tables, histograms and bar charts."""
    src = profile["source"]
    console.print(f"[bold]{escape_data(src['path'])}[/]: {escape_data(src['record_format'])} records "
                  f"({escape_data(src['file_format'])}), "
                  f"{profile['rows']:,} rows, {len(profile['fields'])} fields")
    _print_fields(profile["fields"])
    _print_lengths(profile["lengths"])
    for cat in profile["categories"]:
        _print_categories(cat, profile["rows"], top)
    if profile.get("chat"):
        _print_chat(profile["chat"])
    _print_checks(profile)
    if profile["suggestions"]:
        console.print("\n[bold]Suggestions[/]")
        for line in profile["suggestions"]:
            console.print(f" • {escape_data(line)}")


def _table(*columns: str, title: str | None = None):
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", title_style="bold", pad_edge=False)
    for name in columns:
        left = name in ("field", "type", "value", "tokens", "", "prompt rows", "response rows")
        table.add_column(name, justify="left" if left else "right")
    return table


def _print_fields(fields: list[dict]) -> None:
    table = _table("field", "type", "nulls", title="\nFields")
    for f in fields:
        table.add_row(escape_data(f["name"]), escape_data(f["type"]), f"{f['nulls']:,}")
    console.print(table)


def _print_lengths(lengths: dict) -> None:
    table = _table("", "min", "p5", "median", "mean", "p95", "max", "total",
                   title="Lengths (approximate tokens)")
    for side in ("prompt", "response"):
        s = lengths[f"{side}_tokens"]
        if s["min"] is None:
            continue
        table.add_row(side, f"{s['min']:,}", f"{s['p5']:g}", f"{s['median']:g}", f"{s['mean']:.1f}",
                      f"{s['p95']:g}", f"{s['max']:,}", f"{s['total']:,}")
    console.print(table)
    prompt, response = lengths["prompt_tokens"]["counts"], lengths["response_tokens"]["counts"]
    used = [i for i, (a, b) in enumerate(zip(prompt, response)) if a or b]
    if not used:
        return
    peak = max(max(prompt), max(response))
    hist = _table("tokens", "prompt rows", "response rows")
    edges = lengths["bins"]
    for i in range(used[0], used[-1] + 1):
        lo, hi = edges[i], edges[i + 1] - 1
        label = str(lo) if lo == hi else f"{lo:,}-{hi:,}"
        hist.add_row(label, _bar_cell(prompt[i], peak, 20), _bar_cell(response[i], peak, 20))
    console.print(hist)


def _print_categories(cat: dict, rows: int, top: int) -> None:
    ratio = cat["imbalance_ratio"]
    title = (f"{escape_data(cat['field'])}: {cat['classes']:,} value{'' if cat['classes'] == 1 else 's'}"
             + (f", max/min = {ratio:.3g}x" if ratio is not None and cat["classes"] > 1 else ""))
    table = _table("value", "rows", "share", "", title=title)
    shown = cat["counts"][:max(top, 0)]
    peak = shown[0]["count"] if shown else 0
    for c in shown:
        table.add_row(escape_data(c["value"]), f"{c['count']:,}", _share(c["share"]), bar(c["count"], peak))
    rest = cat["classes"] - len(shown)
    if rest > 0:
        left = rows - sum(c["count"] for c in shown)
        table.add_row(f"... {rest:,} more", f"{left:,}", _share(left / max(rows, 1)), "")
    console.print(table)


def _print_chat(chat: dict) -> None:
    roles = ", ".join(f"{escape_data(role or '(none)')} {n:,}" for role, n in chat["turns_by_role"].items())
    console.print(f"[bold]Chat[/]\n turns by role: {roles}")
    console.print(f" rows with tool calls: {chat['rows_with_tool_calls']:,}, with tool turns: "
                  f"{chat['rows_with_tool_turns']:,}, with reasoning: {chat['rows_with_reasoning']:,}")
    console.print(f" rows with content parts: {chat['rows_with_content_parts']:,} ("
                  f"{chat['rows_with_non_text_parts']:,} with non-text parts, e.g. images: not in the text features)")


def _print_checks(profile: dict) -> None:
    exact, near, q = profile["duplicates"]["exact"], profile["near_duplicates"], profile["quality"]
    console.print("[bold]Duplicates and quality[/]")
    console.print(f" exact duplicates: {exact['duplicate_rows']:,} rows ({100 * exact['fraction']:.1f}%) repeat an "
                  f"earlier row ({exact['groups']:,} groups, largest {exact['largest_group']:,})")
    if near["exact"]:
        how = f"all {near['pool_rows']:,} rows checked"
    else:
        how = (f"{near['confidence']:.0%} CI {100 * near['ci_low']:.1f}-{100 * near['ci_high']:.1f}%; "
               f"{near['sample_rows']:,} sampled rows vs. all {near['pool_rows']:,}")
    console.print(f" near duplicates: {100 * near['fraction']:.1f}% of rows have one, exact ones included "
                  f"(Jaccard >= {near['threshold']:g}; {how})")
    empty_prompts = "" if q["empty_prompts"] is None else f", empty prompts: {q['empty_prompts']:,}"
    console.print(f" empty responses: {q['empty_responses']:,}, truncated responses: {q['truncated_responses']:,}"
                  f"{empty_prompts}")


def bar(count: int, peak: int, width: int = BAR_WIDTH) -> str:
    """A unicode bar of `count` scaled so that `peak` fills `width` cells
    (eighth-cell resolution; a nonzero count shows at least a sliver)."""
    if count <= 0 or peak <= 0:
        return ""
    eighths = max(1, round(8 * width * count / peak))
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def _bar_cell(count: int, peak: int, width: int) -> str:
    return f"{count:>7,} {bar(count, peak, width)}" if count else ""


def _share(x: float) -> str:
    return "<0.1%" if 0 < x < 0.0005 else f"{100 * x:.1f}%"
