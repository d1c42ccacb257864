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


def parse_positions(text: str, what: str) -> list[int]:
    """'1-10,23,40-45' (1-based, inclusive ranges) -> the sorted distinct positions; UserError naming
    ``what`` for anything else."""
    positions: set[int] = set()
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        low, dash, high = (piece.strip() for piece in part.partition("-"))
        if not low.isdigit() or (dash and not high.isdigit()):
            raise UserError(f"{what} {text!r}: {part!r} is not a position or a range like 40-45 (1-based)")
        first, last = int(low), int(high) if dash else int(low)
        if first < 1 or last < first:
            raise UserError(f"{what} {text!r}: {part!r}: positions start at 1 and a range runs low-high")
        positions.update(range(first, last + 1))
    if not positions:
        raise UserError(f"{what} {text!r} names no position")
    return sorted(positions)
