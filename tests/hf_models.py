"""Random-initialised Hugging Face models saved to disk, to test the loading code by local path."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from bib_ray.alphabets import DNA, PROTEIN

ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO", ".", "-", "<null_1>", "<mask>"]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _write_vocab(directory: Path, tokens: list[str], tokenizer_class: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")
    config = {"tokenizer_class": tokenizer_class, "do_lower_case": False}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def make_esm2(directory: Path, seed: int = 0) -> Path:
    """A 2-layer ESM-2 style model (rotary positions, token dropout on) with the real ESM vocabulary."""
    import torch
    from transformers import EsmConfig, EsmModel

    _write_vocab(directory, ESM_VOCAB, "EsmTokenizer")
    config = EsmConfig(vocab_size=len(ESM_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, pad_token_id=1, mask_token_id=len(ESM_VOCAB) - 1,
                       position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                       max_position_embeddings=1026)
    torch.manual_seed(seed)
    EsmModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


def make_bert(directory: Path, residues: list[str], seed: int = 0) -> Path:
    """A 2-layer BERT over ``residues`` tokens (single letters or k-mers) plus the BERT special tokens."""
    import torch
    from transformers import BertConfig, BertModel

    tokens = BERT_SPECIALS + residues
    _write_vocab(directory, tokens, "BertTokenizer")
    config = BertConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


def make_protein_bert(directory: Path) -> Path:
    return make_bert(directory, list(PROTEIN))


def make_dnabert3(directory: Path) -> Path:
    """DNABERT-style vocabulary: every 3-mer over ACGT is one token, no single-letter tokens."""
    return make_bert(directory, ["".join(k) for k in itertools.product(DNA, repeat=3)])
