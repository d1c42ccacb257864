"""A backbone named once: ``BackboneSpec`` parses a spec string into its kind, what it loads and its
options, checks them, and writes the canonical string back (for YAML, artifacts and shard actors).

    tiny[:hidden_size=H,layers=N,heads=A,seed=S]   onehot[:length=L]   ntk
    unirep-64|256|1900      unirep:/path/weights.npz
    antiberty[:OPTS]        ALIAS[:OPTS] (``HF_ALIASES``)      hf:<id or path>[,OPTS]
    OPTS: tokens=letters|kmer<k>-overlap|kmer<k>-block, pooling=mean|cls, trust_remote_code=true|false
"""

from __future__ import annotations

from dataclasses import dataclass

from bib_ray.errors import UserError
from bib_ray.specs import parse_int_options

INTEGER_OPTION_BACKBONES = ("tiny", "onehot")  # built-in backbones whose options are integers
NTK = "ntk"  # not an LM: the NTK proxy on one-hot features (``bib_ray.core.methods.NTK_BACKBONE``)


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed backbone spec.

    Attributes:
        name: ``tiny``, ``onehot``, ``ntk``, ``unirep-<size>``, ``unirep`` (a weights file), ``antiberty``,
            ``hf`` (any Hugging Face encoder) or an alias of ``HF_ALIASES``.
        target: what ``unirep`` and ``hf`` load (weights file; model id or directory), else None.
        options: (name, value) pairs: integers for ``tiny`` / ``onehot``, normalised strings for
            Hugging Face backbones (``huggingface.parse_hf_options``), in a canonical order.
    """

    name: str
    target: str | None = None
    options: tuple[tuple[str, str | int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "BackboneSpec":
        """The spec named by ``text``; UserError for an unknown backbone or bad options."""
        from bib_ray.backbones.huggingface import hf_option_items, parse_hf_options
        from bib_ray.backbones.aliases import HF_ALIASES
        from bib_ray.backbones.unirep import UNIREP_SIZES

        text = str(text).strip()
        name, _, argument = text.partition(":")
        if name in INTEGER_OPTION_BACKBONES:
            return cls(name, None, tuple(parse_int_options(argument, f"{name} backbone").items()))
        if name == NTK and not argument:
            return cls(NTK)
        if name == "unirep" and argument:
            return cls("unirep", argument)
        if name.startswith("unirep-") and not argument:
            size = name.removeprefix("unirep-")
            if not size.isdigit() or int(size) not in UNIREP_SIZES:
                raise UserError(f"unknown UniRep size in {text!r}: choose unirep-64, unirep-256 or unirep-1900")
            return cls(name)
        if name == "hf" and argument:
            model_id, *items = argument.split(",")
            if not model_id.strip():
                raise UserError(f"backbone {text!r}: hf: needs a model id or directory before the options")
            return cls("hf", model_id.strip(), hf_option_items(parse_hf_options(items, f"backbone {text!r}")))
        if name in HF_ALIASES or name == "antiberty":
            return cls(name, None, hf_option_items(parse_hf_options(argument.split(","), f"backbone {text!r}")))
        raise UserError(f"unknown backbone {text!r}; run `bib-ray backbones` to list the choices")

    def __str__(self) -> str:
        """The canonical spec: ``BackboneSpec.parse(str(spec)) == spec``."""
        head = f"{self.name}:{self.target}" if self.target is not None else self.name
        if not self.options:
            return head
        separator = "," if self.name == "hf" else ":"
        return head + separator + ",".join(f"{key}={value}" for key, value in self.options)

    @property
    def is_huggingface(self) -> bool:
        """Whether a Hugging Face model is loaded (``hf``, ``antiberty`` or an alias)."""
        return not (self.name in INTEGER_OPTION_BACKBONES or self.name == NTK or self.name.startswith("unirep"))

    def option_values(self) -> dict[str, str | int]:
        return dict(self.options)

    def with_trust_remote_code(self) -> "BackboneSpec":
        """This spec allowed to run its checkpoint's own code (Hugging Face backbones; others unchanged):
        how ``--trust-remote-code`` reaches the backbone and its artifact."""
        from bib_ray.backbones.huggingface import hf_option_items

        if not self.is_huggingface:
            return self
        return BackboneSpec(self.name, self.target, hf_option_items({**self.option_values(),
                                                                     "trust_remote_code": "true"}))
