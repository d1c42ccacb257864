"""Settings from mappings and YAML files: pydantic models whose errors become one ``UserError`` line."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bib_ray.errors import UserError

Model = TypeVar("Model", bound=BaseModel)


def format_validation_error(error: ValidationError) -> str:
    """One entry per problem, 'field: message', joined by '; '."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "config"
        lines.append(f"{where}: {problem['msg']}")
    return "; ".join(lines)


def parse_model(model: type[Model], values: dict, what: str) -> Model:
    """``model`` validated from ``values``; pydantic errors become a UserError starting with ``what``."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise UserError(f"{what}: {format_validation_error(error)}") from None


def load_yaml_mapping(path: str | Path) -> dict:
    """A YAML file that must hold a mapping (UserError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of settings at the top level")
    return values
