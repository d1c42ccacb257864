"""Parsing of the small spec strings the commands take: "name:key=value,..." options and seed lists."""

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


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) or '7' -> list of seeds."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, dash, high = part.partition("-")
            seeds.extend(range(int(low), int(high) + 1) if dash else [int(part)])
    except ValueError:
        raise UserError(f"--seeds {text!r}: use a list like 0,1,2 or a range like 0-4") from None
    if not seeds:
        raise UserError("--seeds needs at least one seed")
    return seeds
