"""Hugging Face checkpoints known by a short name (``esm2-650m``, ``nt-v2-100m``, ...), each with the token
scheme it was trained on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HFCheckpoint:
    """A Hugging Face checkpoint behind an alias, with the token scheme it was trained on."""

    model_id: str
    tokens: str
    description: str
    #: the checkpoint ships its own modelling code (needs --trust-remote-code)
    remote_code: bool = False


def _family(prefix: str, description: str, tokens: str, ids: dict[str, str],
            remote_code: bool = False) -> dict[str, HFCheckpoint]:
    return {f"{prefix}{size}": HFCheckpoint(model_id, tokens, description, remote_code)
            for size, model_id in ids.items()}


#: alias -> checkpoint; every one is fed with the scheme it was trained with
HF_ALIASES: dict[str, HFCheckpoint] = {
    **_family("esm2-", "ESM-2, protein", "letters", {
        "8m": "facebook/esm2_t6_8M_UR50D", "35m": "facebook/esm2_t12_35M_UR50D",
        "150m": "facebook/esm2_t30_150M_UR50D", "650m": "facebook/esm2_t33_650M_UR50D",
        "3b": "facebook/esm2_t36_3B_UR50D", "15b": "facebook/esm2_t48_15B_UR50D"}),
    "protbert": HFCheckpoint("Rostlab/prot_bert", "letters", "ProtBERT (spaced letters), protein"),
    "prott5": HFCheckpoint("Rostlab/prot_t5_xl_half_uniref50-enc", "letters",
                           "ProtT5-XL encoder, half-precision weights (spaced letters; its spiece.model needs "
                           "pip install sentencepiece), protein"),
    **{f"dnabert-{k}": HFCheckpoint(f"zhihan1996/DNA_bert_{k}", f"kmer{k}-overlap",
                                    "DNABERT-1, overlapping k-mers, DNA") for k in (3, 4, 5, 6)},
    **_family("nt-", "Nucleotide Transformer, 6-mer blocks, DNA", "kmer6-block", {
        "500m-human": "InstaDeepAI/nucleotide-transformer-500m-human-ref",
        "500m-1000g": "InstaDeepAI/nucleotide-transformer-500m-1000g",
        "2.5b-1000g": "InstaDeepAI/nucleotide-transformer-2.5b-1000g",
        "2.5b-multi": "InstaDeepAI/nucleotide-transformer-2.5b-multi-species"}),
    **_family("nt-v2-", "Nucleotide Transformer v2, 6-mer blocks, DNA", "kmer6-block", {
        size: f"InstaDeepAI/nucleotide-transformer-v2-{size}-multi-species"
        for size in ("50m", "100m", "250m", "500m")}, remote_code=True),
    **_family("hyenadna-", "HyenaDNA (causal, single letters), DNA", "letters", {
        "tiny": "LongSafari/hyenadna-tiny-1k-seqlen-hf", "small": "LongSafari/hyenadna-small-32k-seqlen-hf",
        "medium": "LongSafari/hyenadna-medium-160k-seqlen-hf"}, remote_code=True),
    "caduceus-ph": HFCheckpoint("kuleshov-group/caduceus-ph_seqlen-131k_d_model-256_n_layer-16", "letters",
                                "Caduceus-Ph (single letters; needs mamba-ssm and a GPU), DNA", remote_code=True),
}
