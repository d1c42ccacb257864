"""Command-line flags made from pydantic settings models: a field's type, default and help are written
once, in its ``Field(...)``; ``--name-with-dashes`` is the flag (``json_schema_extra={"flag": ...}``
names another). A bool field is a switch; None (not given) leaves the value to the config file or
the model's default, so flags override YAML and YAML overrides defaults."""

from __future__ import annotations

import argparse
import enum
import types
import typing
from collections.abc import Iterable

from pydantic import BaseModel
from pydantic.fields import FieldInfo

def flag_of(name: str, field: FieldInfo) -> str:
    """The flag of field ``name``."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("flag") or "--" + name.replace("_", "-"))


def _value_type(annotation: object) -> object:
    """The annotation without ``| None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return options[0] if len(options) == 1 else str
    return annotation


def _shown(value: object) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return ",".join(map(_shown, value))
    return str(value)


def _help(field: FieldInfo, is_switch: bool) -> str:
    text = field.description or ""
    default = field.get_default(call_default_factory=True)
    if not is_switch and default is not None and "(default" not in text:
        text += f" (default {_shown(default)})"
    return text


def add_model_flags(parser: argparse.ArgumentParser, model: type[BaseModel], exclude: Iterable[str] = ()) -> None:
    """One flag per field of ``model`` (but ``exclude``), its value stored under the field's name: an int
    or float for such fields, else the text as given, which the model validates (and parses: a list
    field's validator reads its text)."""
    for name, field in model.model_fields.items():
        if name in exclude:
            continue
        kind = _value_type(field.annotation)
        if kind is bool:
            parser.add_argument(flag_of(name, field), dest=name, action="store_true", default=None,
                                help=_help(field, True))
        else:
            convert = kind if kind in (int, float) else str
            parser.add_argument(flag_of(name, field), dest=name, type=convert, default=None,
                                metavar=name.upper(), help=_help(field, False))


def model_flag_values(args: argparse.Namespace, model: type[BaseModel], exclude: Iterable[str] = ()) -> dict:
    """{field: value} for the flags of ``model`` that were given."""
    values = {name: getattr(args, name, None) for name in model.model_fields if name not in exclude}
    return {name: value for name, value in values.items() if value is not None}
