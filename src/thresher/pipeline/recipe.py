"""Recipe files: YAML validated with pydantic; errors name the YAML line."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from thresher.errors import InputError


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    format: Optional[str] = None
    overwrite: bool = False
    keep_removed: bool = False


class Recipe(BaseModel):
    """`data`, `seed`, `steps` (a list of {step_name: {params}}), `output`, optional `evaluate` /
    `report` / `coverage`."""

    model_config = ConfigDict(extra="forbid")
    data: str
    format: Optional[str] = None
    field_map: Optional[dict[str, str]] = None
    on_error: Literal["raise", "skip"] = "raise"
    seed: int = 0
    cache: Optional[str] = None
    steps: list[dict[str, Optional[dict[str, Any]]]]
    output: OutputSpec
    evaluate: Optional[dict[str, Any]] = None
    report: Optional[str] = None
    coverage: Optional[Union[bool, dict[str, Any]]] = None  # {min: K, by: FIELD, enforce: bool}; false: off
    executor: Optional[Union[str, dict[str, Any]]] = None  # local | ray | {name: ray, address: ..., num_cpus: ...}

    @field_validator("output", mode="before")
    @classmethod
    def _output_path(cls, value):
        return {"path": value} if isinstance(value, str) else value

    @field_validator("steps")
    @classmethod
    def _one_name_per_step(cls, steps):
        for i, step in enumerate(steps):
            if len(step) != 1:
                raise ValueError(f"step {i + 1} must be a single {{name: params}} mapping, got keys {list(step)}")
        return steps


def load_recipe(path: str | Path) -> tuple[Recipe, dict[tuple, int]]:
    """The validated recipe and a map from YAML paths (e.g. ("steps", 2)) to 1-based lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(str(path), f"cannot read the recipe ({err.strerror})") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(str(path), f"invalid YAML ({getattr(err, 'problem', err)})",
                         line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise InputError(str(path), "a recipe is a YAML mapping with data, steps and output")
    lines = _line_map(node)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        raise InputError(str(path), f"{'.'.join(map(str, loc)) or 'recipe'}: {first['msg']}",
                         line=_nearest_line(lines, loc)) from None
    return recipe, lines


def _line_map(node, prefix: tuple = ()) -> dict[tuple, int]:
    out = {prefix: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out.update(_line_map(value, prefix + (key.value,)))
            out[prefix + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_line_map(item, prefix + (i,)))
    return out


def _nearest_line(lines: dict[tuple, int], loc: tuple) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def step_line(lines: dict[tuple, int], index: int, name: str, param: str | None = None) -> int | None:
    return _nearest_line(lines, ("steps", index, name, param) if param else ("steps", index, name))
