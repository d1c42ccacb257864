"""Random-initialised Hugging Face models saved to disk, to test the loading code by local path.

Each family's tokenizer is built from a vocabulary in that family's real format: ESM-2's letters,
ProtBERT's ``vocab.txt``, ProtT5's SentencePiece pieces ("\u2581A", ...), DNABERT-1's k-mers, the
Nucleotide Transformer's 6-mers + single letters, a HyenaDNA-style character tokenizer shipped as the
checkpoint's own code, and a DNABERT-2-style byte-pair encoding."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
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
    return make_dnabert(directory, 3)


def make_dnabert(directory: Path, k: int) -> Path:
    """DNABERT-1 (``zhihan1996/DNA_bert_<k>``): BERT special tokens, then every k-mer over ACGT."""
    return make_bert(directory, ["".join(word) for word in itertools.product(DNA, repeat=k)])


#: the Nucleotide Transformer's vocabulary: 6 special tokens, the 4096 6-mers over A, T, C, G, then single letters
NT_VOCAB = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>",
            *("".join(word) for word in itertools.product("ATCG", repeat=6)), *"ATCGN"]


def make_nucleotide_transformer(directory: Path, seed: int = 0) -> Path:
    """A 2-layer ESM model with the Nucleotide Transformer's vocabulary (EsmTokenizer, 4107 entries,
    absolute positions, no token dropout); the tokenizer puts only <cls> before a sequence."""
    import torch
    from transformers import EsmConfig, EsmModel

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(NT_VOCAB) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "EsmTokenizer", "eos_token": None}))
    config = EsmConfig(vocab_size=len(NT_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, pad_token_id=1, mask_token_id=2, position_embedding_type="absolute",
                       token_dropout=False, emb_layer_norm_before=False, max_position_embeddings=1002)
    torch.manual_seed(seed)
    EsmModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


#: ProtT5's SentencePiece pieces: <pad>, </s>, <unk>, then each amino-acid letter as a word ("\u2581" + letter)
PROTT5_PIECES = ["<pad>", "</s>", "<unk>", *("\u2581" + letter for letter in "ALGVSREDTIPKFQNYMHWCXBOUZ")]


def make_prott5(directory: Path, seed: int = 0) -> Path:
    """A 2-layer T5 encoder (``T5EncoderModel``, relative position buckets) with ProtT5's tokenizer
    vocabulary (Unigram over ProtT5's pieces, 100 sentinel tokens, </s> appended)."""
    import torch
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    pieces = [(piece, 0.0 if piece.startswith("<") else -float(rank)) for rank, piece in enumerate(PROTT5_PIECES)]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=100)
    tokenizer.save_pretrained(directory)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, is_encoder_decoder=True, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(seed)
    T5EncoderModel(config).save_pretrained(directory)
    return directory


_CHARACTER_TOKENIZER = '''"""A HyenaDNA-style character tokenizer: one token per letter, [CLS] before and [SEP] after."""

from transformers import PreTrainedTokenizer

SPECIALS = ["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]"]


class CharacterTokenizer(PreTrainedTokenizer):
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, characters="ACGTN", **kwargs):
        self.characters = characters
        self._vocab = {token: index for index, token in enumerate(SPECIALS + list(characters))}
        self._tokens = {index: token for token, index in self._vocab.items()}
        super().__init__(cls_token="[CLS]", sep_token="[SEP]", bos_token="[BOS]", mask_token="[MASK]",
                         pad_token="[PAD]", unk_token="[UNK]", characters=characters, **kwargs)

    @property
    def vocab_size(self):
        return len(self._vocab)

    def get_vocab(self):
        return dict(self._vocab)

    def _tokenize(self, text, **kwargs):
        return list(text)

    def _convert_token_to_id(self, token):
        return self._vocab.get(token, self._vocab["[UNK]"])

    def _convert_id_to_token(self, index):
        return self._tokens.get(index, "[UNK]")

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        return [self.cls_token_id, *token_ids_0, self.sep_token_id]

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            return [int(token in (self.cls_token_id, self.sep_token_id)) for token in token_ids_0]
        return [1, *([0] * len(token_ids_0)), 1]

    def save_vocabulary(self, save_directory, filename_prefix=None):
        return ()
'''

_CAUSAL_CONV_MODEL = '''"""A HyenaDNA-style causal model: its own config and model class, a forward without attention_mask."""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class CausalConvConfig(PretrainedConfig):
    model_type = "causal-conv-dna"

    def __init__(self, vocab_size=12, d_model=32, n_layer=2, **kwargs):
        self.vocab_size, self.d_model, self.n_layer = vocab_size, d_model, n_layer
        super().__init__(**kwargs)


class CausalConvModel(PreTrainedModel):
    config_class = CausalConvConfig
    base_model_prefix = "backbone"

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(nn.Conv1d(config.d_model, config.d_model, 3, padding=2)
                                    for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(config.d_model)
        self.post_init()

    def _init_weights(self, module):
        pass

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def forward(self, input_ids=None, inputs_embeds=None, output_hidden_states=None, return_dict=None):
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        for conv in self.layers:  # padding 2 on both sides, keep the first L outputs: each sees only the past
            hidden = hidden + torch.tanh(conv(hidden.transpose(1, 2))[..., : hidden.shape[1]].transpose(1, 2))
        return BaseModelOutput(last_hidden_state=self.norm(hidden))
'''


def make_custom_code_dna(directory: Path, seed: int = 0) -> Path:
    """A HyenaDNA-like checkpoint that ships its own code: ``modeling_causal_conv.py`` (config and model,
    mapped in config.json's auto_map) and ``tokenization_character.py`` (mapped in tokenizer_config.json)."""
    import importlib.util

    import torch

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenization_character.py").write_text(_CHARACTER_TOKENIZER)
    (directory / "modeling_causal_conv.py").write_text(_CAUSAL_CONV_MODEL)
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CharacterTokenizer", "characters": "ACGTN",
        "auto_map": {"AutoTokenizer": ["tokenization_character.CharacterTokenizer", None]}}))
    spec = importlib.util.spec_from_file_location(f"causal_conv_{seed}", directory / "modeling_causal_conv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    model = module.CausalConvModel(module.CausalConvConfig(vocab_size=12, d_model=32, n_layer=2))
    model.save_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_causal_conv.CausalConvConfig",
                          "AutoModel": "modeling_causal_conv.CausalConvModel"}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def make_bpe_dna(directory: Path, seed: int = 0) -> Path:
    """A DNABERT-2-style checkpoint: a byte-pair-encoding tokenizer over DNA (tokenizer.json with merges)
    in front of a 2-layer BERT, and config.json naming its own code as DNABERT-2's does."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    merges = [("A", "C"), ("G", "T"), ("AC", "GT"), ("T", "A"), ("C", "A"), ("G", "G"), ("ACGT", "A")]
    vocab = {token: index for index, token in enumerate(
        ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", *DNA, *("".join(pair) for pair in merges)])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                            pad_token="[PAD]", mask_token="[MASK]").save_pretrained(directory)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=vocab["[PAD]"])
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    saved = json.loads((directory / "config.json").read_text())
    saved["auto_map"] = {"AutoConfig": "configuration_bert.BertConfig", "AutoModel": "bert_layers.BertModel"}
    (directory / "config.json").write_text(json.dumps(saved))
    return directory



def spaced_letters(sequence: str) -> str:
    """ProtBERT's and ProtT5's documented input: the letters separated by spaces."""
    return " ".join(sequence)


def spaced_kmers(k: int) -> Callable[[str], str]:
    """DNABERT-1's documented input (its ``seq2kmer``): overlapping k-mers, stride 1, separated by spaces."""
    return lambda sequence: " ".join(sequence[i:i + k] for i in range(len(sequence) - k + 1))


def raw(sequence: str) -> str:
    """ESM-2's, the Nucleotide Transformer's and character-level DNA models' input: the sequence itself."""
    return sequence


@dataclass(frozen=True)
class Family:
    """A model family as its users run it, for parity tests: checkpoint builder, the scheme bib-ray must
    detect, how users hand a sequence to the tokenizer, and the ``transformers`` class they load."""

    name: str
    build: Callable[[Path], Path]
    alphabet: str
    sequences: tuple[str, ...]
    scheme: str
    user_text: Callable[[str], str]
    encoder: str = "AutoModel"
    trust_remote_code: bool = False
    has_cls: bool = True

    def spec(self, directory: Path, **options: str) -> str:
        items = {**({"trust_remote_code": "true"} if self.trust_remote_code else {}), **options}
        return ",".join([f"hf:{directory}", *(f"{key}={value}" for key, value in items.items())])


PROTEIN_SEQS = ("MKTAYIAKQR", "ACDEFGHIKL", "WWYYVVTTSS")
DNA_SEQS = ("ACGTACGTAA", "TTTTGGGGCA", "GATTACAGAT")
DNA_SEQS_15 = ("ACGTACGTAGGCTTA", "TTTTGGGGCATGCAT", "GATTACAGATCCGAG")

FAMILIES = (
    Family("ESM-2 (EsmConfig)", make_esm2, PROTEIN, PROTEIN_SEQS, "letters", raw),
    Family("ProtBERT (BertConfig)", make_protein_bert, PROTEIN, PROTEIN_SEQS, "letters", spaced_letters),
    Family("ProtT5 (T5Config, encoder)", make_prott5, PROTEIN, PROTEIN_SEQS, "letters", spaced_letters,
           encoder="T5EncoderModel", has_cls=False),
    Family("character-level DNA, own code (HyenaDNA-style)", make_custom_code_dna, DNA, DNA_SEQS, "letters", raw,
           trust_remote_code=True),
    Family("DNABERT-1 k=3 (BertConfig)", make_dnabert3, DNA, DNA_SEQS, "kmer3-overlap", spaced_kmers(3)),
    Family("DNABERT-1 k=6 (BertConfig)", lambda directory: make_dnabert(directory, 6), DNA, DNA_SEQS_15,
           "kmer6-overlap", spaced_kmers(6)),
    Family("Nucleotide Transformer (EsmConfig)", make_nucleotide_transformer, DNA, DNA_SEQS_15, "kmer6-block", raw),
)


def reference_phi(family: Family, directory: Path, sequences: list[str], pooling: str = "mean"):
    """phi computed the way the family's users do, without bib-ray: their tokenizer on ``user_text``,
    the model on the token ids, then the mean of the last hidden states over the non-special tokens
    (or the first token's, which must be CLS). Returns (phi (B, H) float32, input ids (B, T))."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, trust_remote_code=family.trust_remote_code)
    loader = getattr(transformers, family.encoder)
    extra = {"trust_remote_code": True} if family.trust_remote_code else {}
    model = loader.from_pretrained(directory, **extra).eval()
    encoded = tokenizer([family.user_text(s) for s in sequences], return_tensors="pt")
    ids = encoded["input_ids"]
    with torch.no_grad():
        hidden = model(input_ids=ids).last_hidden_state
    if pooling == "cls":
        assert (ids[:, 0] == tokenizer.cls_token_id).all()
        return hidden[:, 0].float(), ids
    residue = (~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))).to(hidden.dtype).unsqueeze(-1)
    return ((hidden * residue).sum(1) / residue.sum(1)).float(), ids
