"""How a residue sequence becomes a language model's tokens, and its soft (per-position) counterpart.

Three schemes cover the encoders people use for sequence design:

    letters          one token per residue (ESM-2, ProtBERT and ProtT5 with spaced letters,
                     character-level DNA models such as HyenaDNA and Caduceus)
    kmer<k>-overlap  one token per window of k residues, windows overlapping with stride 1
                     (DNABERT-1: L - k + 1 tokens)
    kmer<k>-block    non-overlapping k-mers from the start, then one single-letter token per
                     leftover residue (Nucleotide Transformer: L // k + L % k tokens)

For a design, position i holds a distribution P[i] over the alphabet (a hard one-hot row for a
real sequence). A token made of positions i_1..i_k takes the k-mer (a_1..a_k) with probability
prod_t P[i_t, a_t] (positions are independent under the design's parametrisation), so every
token position gets a distribution over its vocabulary entries; at one-hot input it puts all its
mass on the token the model's tokenizer would emit.

Detection (``detect_scheme``) reads the vocabulary: only single letters -> letters; all k-mers of
one length k and no single letters -> kmer<k>-overlap (DNABERT-1's convention); all k-mers of one
length k plus every single letter -> kmer<k>-block (the Nucleotide Transformer's). Anything else is
ambiguous and must be named in the spec (``tokens=``). Byte-pair-encoding vocabularies with merges
(DNABERT-2, GROVER) are refused by ``refuse_bpe``: their token boundaries depend on the letters
around them, so a position's letter distribution cannot be mapped onto tokens.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from bib_ray.errors import UserError

SchemeKind = Literal["letters", "overlap", "block"]

#: word-start / continuation markers of WordPiece ("##"), SentencePiece ("\u2581") and byte-level BPE ("\u0120")
_MARKERS = ("##", "\u2581", "\u0120")
_SCHEME_PATTERN = re.compile(r"kmer(\d+)-(overlap|block)")
#: longest k-mer a scheme may use (4^8 = 65,536 vocabulary rows for DNA)
MAX_K = 8


@dataclass(frozen=True)
class TokenScheme:
    """How residues map onto tokens: ``letters`` (k = 1), or k-mers ``overlap``-ping with stride 1
    or in non-overlapping ``block``-s with single-letter tokens for the tail."""

    kind: SchemeKind
    k: int = 1

    def __post_init__(self) -> None:
        if self.kind == "letters" and self.k != 1:
            raise ValueError("the letters scheme has k = 1")
        if self.kind in ("overlap", "block") and not 2 <= self.k <= MAX_K:
            raise ValueError(f"k-mer schemes need 2 <= k <= {MAX_K}, got {self.k}")
        if self.kind not in ("letters", "overlap", "block"):
            raise ValueError(f"unknown token scheme kind {self.kind!r}")

    @classmethod
    def parse(cls, text: str) -> TokenScheme:
        """'letters', 'kmer6-overlap' or 'kmer6-block' -> the scheme; UserError for anything else."""
        if text == "letters":
            return cls("letters")
        match = _SCHEME_PATTERN.fullmatch(text)
        if match is None or not 2 <= int(match.group(1)) <= MAX_K:
            raise UserError(f"tokens={text!r}: use letters, kmer<k>-overlap or kmer<k>-block with 2 <= k <= {MAX_K}")
        return cls(match.group(2), int(match.group(1)))  # type: ignore[arg-type]

    def __str__(self) -> str:
        return "letters" if self.kind == "letters" else f"kmer{self.k}-{self.kind}"

    @property
    def uses_kmers(self) -> bool:
        return self.kind != "letters"

    @property
    def uses_letters(self) -> bool:
        """Whether single-letter tokens occur (always for letters; the tail of a block scheme)."""
        return self.kind != "overlap"

    def kmers(self, alphabet: str) -> list[str]:
        """Every k-mer over ``alphabet`` in ``itertools.product`` order (the last axis of ``distributions``)."""
        return ["".join(word) for word in itertools.product(alphabet, repeat=self.k)]

    def token_count(self, length: int) -> int:
        """Tokens for a sequence of ``length`` residues (ValueError when an overlap scheme gets fewer than k)."""
        if self.kind == "letters":
            return length
        if self.kind == "overlap":
            if length < self.k:
                raise ValueError(f"{self} needs sequences of at least {self.k} residues, got {length}")
            return length - self.k + 1
        return length // self.k + length % self.k

    def split(self, sequence: str) -> list[str]:
        """The token strings of ``sequence``, in order."""
        if self.kind == "letters":
            return list(sequence)
        if self.kind == "overlap":
            return [sequence[i:i + self.k] for i in range(self.token_count(len(sequence)))]
        whole = len(sequence) - len(sequence) % self.k
        return [sequence[i:i + self.k] for i in range(0, whole, self.k)] + list(sequence[whole:])

    def distributions(self, probs: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Per-token distributions over vocabulary entries, as consecutive segments of the token axis.

        Args:
            probs: (B, L, V) residue distributions (rows sum to 1).

        Returns:
            [(unit, D)] in token order, unit "kmer" (D: (B, T, V^k), k-mers in ``kmers`` order) or
            "letter" (D: (B, T, V)); the segments' T add up to ``token_count(L)``. Differentiable in probs.
        """
        if self.kind == "letters":
            return [("letter", probs)]
        if self.kind == "overlap":
            self.token_count(probs.shape[1])
            return [("kmer", kmer_probs(probs, self.k, 1))]
        whole = probs.shape[1] - probs.shape[1] % self.k
        segments = []
        if whole:
            segments.append(("kmer", kmer_probs(probs[:, :whole], self.k, self.k)))
        if whole < probs.shape[1]:
            segments.append(("letter", probs[:, whole:]))
        return segments


def kmer_probs(probs: torch.Tensor, k: int, step: int) -> torch.Tensor:
    """(B, L, V) -> (B, W, V^k): for each window of k positions starting every ``step`` residues, the
    product of its positions' probabilities, k-mers in ``itertools.product`` order (first letter slowest)."""
    windows = probs.unfold(1, k, step)  # (B, W, V, k)
    joint = windows[..., 0]
    for t in range(1, k):
        joint = (joint.unsqueeze(-1) * windows[..., t].unsqueeze(-2)).flatten(-2)
    return joint


def alphabet_words(vocabulary: Iterable[str], alphabet: str) -> dict[int, set[str]]:
    """Vocabulary entries spelled only with ``alphabet``'s letters (after dropping a WordPiece,
    SentencePiece or byte-level marker), grouped by length."""
    letters = set(alphabet)
    words: dict[int, set[str]] = {}
    for entry in vocabulary:
        for marker in _MARKERS:
            entry = entry.removeprefix(marker)
        if entry and set(entry) <= letters:
            words.setdefault(len(entry), set()).add(entry)
    return words


def detect_scheme(vocabulary: Iterable[str], alphabet: str, model: str) -> TokenScheme:
    """The scheme a vocabulary implies for ``alphabet`` (see the module docstring); UserError when it
    has no tokens for the alphabet or is ambiguous (then ``tokens=`` must name the scheme)."""
    words = alphabet_words(vocabulary, alphabet)
    complete = {n for n, found in words.items() if len(found) == len(alphabet) ** n}
    longer = sorted(n for n in words if n > 1)
    if not longer and 1 in complete:
        return TokenScheme("letters")
    if len(longer) == 1 and longer[0] in complete and longer[0] <= MAX_K:
        k = longer[0]
        if 1 in complete:
            return TokenScheme("block", k)
        if 1 not in words:
            return TokenScheme("overlap", k)
    if 1 not in complete and not any(n in complete for n in longer):
        missing = sorted(set(alphabet) - words.get(1, set()))
        raise UserError(f"model {model!r} has no token for letter(s) {missing} of the alphabet {alphabet!r} nor for "
                        "every k-mer over it: it was not trained on such sequences")
    found = ", ".join(f"{len(words[n])} of {len(alphabet) ** n} {n}-mers" for n in sorted(words))
    raise UserError(f"cannot tell how model {model!r} tokenises {alphabet!r} sequences: its vocabulary holds {found} "
                    "over the alphabet. Name the scheme in the spec if you know it: hf:ID,tokens=letters|"
                    "kmer<k>-overlap|kmer<k>-block")


def bpe_merge_count(tokenizer) -> int:
    """Number of merge rules of a byte-pair-encoding tokenizer (0 for other tokenizers, and for a
    BPE without merges, which is a character-level vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        model = json.loads(backend.to_str()).get("model", {})
        return len(model.get("merges") or []) if model.get("type") == "BPE" else 0
    return len(getattr(tokenizer, "bpe_ranks", None) or {})


def refuse_bpe(tokenizer, model: str) -> None:
    """UserError when ``tokenizer`` is a byte-pair encoding with merges (DNABERT-2, GROVER, ...)."""
    merges = bpe_merge_count(tokenizer)
    if merges:
        raise UserError(
            f"model {model!r} uses a byte-pair-encoding tokenizer ({merges} merge rules), which bib-ray cannot "
            "design with: BPE cuts a sequence into tokens whose boundaries depend on the letters themselves, so "
            "changing one residue moves the boundaries around it, and a position's letter distribution has no "
            "fixed token to map onto. Per-position (soft one-hot) design needs a letter or k-mer vocabulary: "
            "pick another model (e.g. nt-v2-100m, dnabert-6, esm2-650m)")


@dataclass(frozen=True)
class TokenLayout:
    """A scheme bound to one tokenizer: the vocabulary ids of its units and the special tokens around them.

    Attributes:
        scheme: how residues map onto tokens.
        spaced: the tokenizer's input is the token strings joined by spaces (ProtBERT, ProtT5, DNABERT-1);
            else the raw sequence (ESM-2, the Nucleotide Transformer, character-level DNA models).
        letter_ids: vocabulary id of each alphabet letter (None when the scheme has no letter tokens).
        kmer_ids: vocabulary id of each k-mer in ``TokenScheme.kmers`` order (None for letters).
        prefix, suffix: ids the tokenizer puts before / after the residue tokens (CLS, EOS, ...).
    """

    scheme: TokenScheme
    spaced: bool
    letter_ids: tuple[int, ...] | None
    kmer_ids: tuple[int, ...] | None
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    def text(self, sequence: str) -> str:
        """What the model's users pass its tokenizer for ``sequence``."""
        return " ".join(self.scheme.split(sequence)) if self.spaced else sequence

    def residue_ids(self, sequence: str, alphabet: str) -> list[int]:
        """Ids of the residue tokens of ``sequence`` (no special tokens): the tokens that the soft path's
        distributions put all their mass on when ``sequence`` is fed as one-hot rows."""
        letters = dict(zip(alphabet, self.letter_ids or ()))
        kmers = dict(zip(self.scheme.kmers(alphabet), self.kmer_ids or ())) if self.scheme.uses_kmers else {}
        return [letters[token] if len(token) == 1 and self.scheme.uses_letters else kmers[token]
                for token in self.scheme.split(sequence)]


def probe_sequences(alphabet: str, scheme: TokenScheme) -> list[str]:
    """Two sequences holding every letter, long enough for two k-mer blocks and a tail (length = 1 mod k)."""
    length = max(2 * len(alphabet), 3 * scheme.k) + 1
    if scheme.kind == "block":
        length += (1 - length) % scheme.k
    forward = (alphabet * length)[:length]
    shifted = "".join(alphabet[(i * 3 + i // len(alphabet)) % len(alphabet)] for i in range(length))
    return [forward, shifted]


def _single_ids(tokenizer, texts: list[str], what: str) -> tuple[tuple[int, ...] | None, str]:
    """The one id each text tokenises to, or (None, why not)."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    unknown = getattr(tokenizer, "unk_token_id", None)
    bad = [text for text, ids in zip(texts, encoded) if len(ids) != 1 or ids[0] == unknown]
    if bad:
        return None, f"{what} {bad[:4]} {'is' if len(bad) == 1 else 'are'} not single known tokens"
    ids = tuple(ids[0] for ids in encoded)
    if len(set(ids)) != len(ids):
        return None, f"distinct {what}s share token ids"
    return ids, ""


def _try_layout(tokenizer, scheme: TokenScheme, alphabet: str, spaced: bool) -> TokenLayout | str:
    """The layout with tokenizer input ``spaced`` (or raw), or why the tokenizer disagrees with it."""
    letter_ids = kmer_ids = None
    if scheme.uses_letters:
        letter_ids, why = _single_ids(tokenizer, list(alphabet), "letters")
        if letter_ids is None:
            return why
    if scheme.uses_kmers:
        kmer_ids, why = _single_ids(tokenizer, scheme.kmers(alphabet), f"{scheme.k}-mers")
        if kmer_ids is None:
            return why
    layout = TokenLayout(scheme, spaced, letter_ids, kmer_ids, (), ())
    prefix = suffix = None
    for probe in probe_sequences(alphabet, scheme):
        text = layout.text(probe)
        body = tokenizer(text, add_special_tokens=False)["input_ids"]
        expected = layout.residue_ids(probe, alphabet)
        if body != expected:
            return f"{text!r} became {body[:12]}..., not {expected[:12]}..."
        full = tokenizer(text)["input_ids"]
        start = next((i for i in range(len(full) - len(body) + 1) if full[i:i + len(body)] == body), None)
        if start is None:
            return f"{text!r} with special tokens became {full[:12]}..., which does not contain its residue tokens"
        around = tuple(full[:start]), tuple(full[start + len(body):])
        if prefix is not None and (prefix, suffix) != around:
            return "the special tokens around a sequence depend on the sequence"
        prefix, suffix = around
    return TokenLayout(scheme, spaced, letter_ids, kmer_ids, prefix, suffix)


def resolve_layout(tokenizer, scheme: TokenScheme, alphabet: str, model: str) -> TokenLayout:
    """Bind ``scheme`` to ``tokenizer``: the unit ids, the input form its users give it, the special tokens.

    Letters are fed raw when the tokenizer splits a raw sequence into exactly its letters and its
    vocabulary has no multi-letter words over the alphabet (so no other sequence can merge letters),
    else spaced; overlapping k-mers are spaced windows (DNABERT-1); k-mer blocks are the raw sequence
    (the Nucleotide Transformer's tokenizer cuts blocks itself). Each candidate is checked on probe
    sequences; UserError when none reproduces the scheme.
    """
    if scheme.kind == "letters":
        merged = [n for n in alphabet_words(tokenizer.get_vocab(), alphabet) if n > 1]
        candidates = [True] if merged else [False, True]
    else:
        candidates = [scheme.kind == "overlap"]
    reasons = []
    for spaced in candidates:
        layout = _try_layout(tokenizer, scheme, alphabet, spaced)
        if isinstance(layout, TokenLayout):
            return layout
        reasons.append(f"{'spaced' if spaced else 'raw'} input: {layout}")
    raise UserError(f"the tokenizer of {model!r} does not tokenise {alphabet!r} sequences as {scheme}: "
                    f"{'; '.join(reasons)}")
