"""Mutation notation: written and read back, 1-based, from the wild type (or the start)."""

from __future__ import annotations

import numpy as np
import pytest

from bib_ray.alphabets import PROTEIN, encode
from bib_ray.tasks.base import Task
from bib_ray.tasks.mutations import apply_mutant, mutation_strings, parse_mutant


def test_written_and_read_back():
    wild_type = "MKVLA"
    codes = encode(["MKVLA", "AKVLG", "MRVLA"], PROTEIN)
    written = mutation_strings(codes, encode([wild_type], PROTEIN)[0], PROTEIN)
    assert written == ["WT", "M1A:A5G", "K2R"]
    assert [apply_mutant(text, wild_type, PROTEIN) for text in written] == ["MKVLA", "AKVLG", "MRVLA"]
    assert parse_mutant("M1A,A5G", wild_type, PROTEIN) == [(0, "A"), (4, "G")]


def test_numbered_by_the_template_and_from_the_start_without_a_wild_type():
    gb1_like = Task("t", PROTEIN, encode(["VDGV", "ADGV"], PROTEIN), np.array([1.0, 0.5]),
                    template=encode(["MQVDGEVW"], PROTEIN)[0], design_positions=np.array([2, 3, 4, 7]))
    assert gb1_like.mutations(encode(["VAGW"], PROTEIN), encode(["ADGV"], PROTEIN)) == ["D4A"]  # from V, D, G, W
    plain = Task("p", PROTEIN, encode(["VDGV", "ADGV"], PROTEIN), np.array([1.0, 0.5]))
    assert plain.mutations(encode(["VAGV"], PROTEIN), encode(["ADGV"], PROTEIN)) == ["A1V:D2A"]


@pytest.mark.parametrize("text, message", [("Q1A", "position 1 of the wild type is M, not Q"),
                                            ("M9A", "outside the wild type"), ("M1", "is not like A23G"),
                                            ("M1Z", "'Z' is not in the alphabet")])
def test_bad_mutations_say_why(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mutant(text, "MKVLA", PROTEIN)
