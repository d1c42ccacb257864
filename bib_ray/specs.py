"""Parsing of "name:key=value,..." spec strings used for tasks and backbones."""

from __future__ import annotations

from bib_ray.errors import UserError


def parse_int_options(text: str, what: str) -> dict[str, int]:
    """'a=1,b=2' -> {'a': 1, 'b': 2}; anything else is a UserError naming ``what``."""
    options: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        if not key or not value.strip().lstrip("-").isdigit():
            raise UserError(f"{what} option {item!r} must look like name=<integer>")
        options[key.strip()] = int(value)
    return options
