"""Validated configuration of a design run (CLI flags and YAML files map onto it one to one)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bib_ray.alphabets import is_nucleotide
from bib_ray.backbones import BackboneSpec
from bib_ray.core.aux_ensemble import AuxiliarySettings
from bib_ray.core.evolution import EvolutionSettings
from bib_ray.core.methods import NTK_BACKBONE, Method, methods_help
from bib_ray.core.optimizer import CotangentBatching, OptimiserSettings
from bib_ray.core.support import SupportLevel
from bib_ray.errors import UserError
from bib_ray.proxy.fitting import ProxySettings
from bib_ray.tasks import Task, UserDataOptions, load_task
from bib_ray.tasks.mutations import read_wild_type
from bib_ray.tasks.user_data import read_exclusions
from bib_ray.run.batch import BatchSettings
from bib_ray.specs import parse_positions, parse_seeds
from bib_ray.validation import parse_model

OPTIMISER = OptimiserSettings()  # the reference code's values: the defaults below read them
AUX = AuxiliarySettings()
PROXY = ProxySettings()
BATCH = BatchSettings(size=1)  # its defaults: chosen by measurement (bib_ray.run.batch)


REFERENCE_STEPS = {"nucleotide": 100, "protein": 25}  # dna/BIB.py and protein/BIB.py, --Tmax


def reference_steps(alphabet: str) -> int:
    """The reference code's T for a task with these letters: 100 on DNA/RNA, 25 on proteins (and any
    other alphabet)."""
    return REFERENCE_STEPS["nucleotide" if is_nucleotide(alphabet) else "protein"]


class DesignConfig(BaseModel):
    """Everything a ``bib-ray design`` run needs; defaults follow the BIB reference code, except the
    support-constrained decode (``support``), which the reference does not have. ``steps`` left unset
    is the reference's T for the task's alphabet (``resolved_for``)."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    task: str = Field("ehrlich", description="task spec, e.g. ehrlich, tfbind8, tfbind8-r, gb1, user:my.csv "
                      "(see `bib-ray tasks`)")
    data_dir: str | None = Field(None, description="directory with task data files (default $BIB_RAY_DATA)")
    alphabet: str | None = Field(None, description="alphabet of a user data file: dna, rna, protein or the "
                                 "letters (default: detected)")
    backbone: str = Field(str(PROXY.backbone), description=f"{NTK_BACKBONE} (default): the NTK proxy on one-hot "
                          "features (implied by method bdi); or an LM backbone spec, e.g. unirep-256, antiberty, "
                          "hf:PATH, tiny (see `bib-ray backbones`), whose embeddings get a closed-form linear head")
    trust_remote_code: bool = Field(False, description="let a Hugging Face backbone run the modelling/tokenizer "
                                    "code its checkpoint ships (HyenaDNA, Nucleotide Transformer v2, ...; adds "
                                    "trust_remote_code=true to the backbone spec)")
    method: Method = Field(Method.BIB, description=f"design method: {methods_help()} (bdi: bidirectional on the "
                           f"NTK proxy, backbone {NTK_BACKBONE})")
    ntk_rows: int = Field(PROXY.ntk_rows, ge=2, description=f"offline rows M in the NTK proxy's kernel (backbone "
                          f"{NTK_BACKBONE}; a fixed random subset when the task has more); the fit holds two M x M "
                          "float64 matrices (0.4 GB at 5,000, 6.4 GB at 20,000) and a step costs O(M)")
    steps: int | None = Field(None, ge=1, le=100_000, description="optimisation steps T (default: the "
                              "reference's, 100 on DNA/RNA and 25 on proteins)")
    designs: int = Field(128, ge=1, le=1_000_000, description="designs (trajectories) per seed")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="seeds, e.g. 0,1,2 or 0-4")
    lr: float = Field(OPTIMISER.lr, gt=0, description="Adam step size eta_0")
    target: float = Field(OPTIMISER.target, description="target score y_h in standardised label units")
    beta_scale: float = Field(PROXY.beta_scale, gt=0, description="ridge beta = beta_scale * trace(G) / N")
    gamma_init: float = Field(OPTIMISER.gamma_init, ge=0, le=1, description="gamma of bidirectional / bdi, "
                              "start of bib's gamma")
    gamma_lr: float = Field(OPTIMISER.gamma_lr, gt=0, description="Adam step size of adaptive gamma (the "
                            "reference's eta_0)")
    eta_meta_lr: float = Field(OPTIMISER.eta_meta_lr, gt=0, description="Adaptive-eta coefficient of bib+eta / "
                               "forward+eta")
    init_std: float = Field(OPTIMISER.init_std, gt=0, description="standard deviation of the initial logits' "
                            "noise (the reference's)")
    aux_members: int = Field(AUX.members, ge=1, le=64, description="auxiliary ensemble size")
    aux_hidden: int = Field(AUX.hidden, ge=1, description="hidden units of each aux member")
    aux_epochs: int = Field(AUX.epochs, ge=1, description="training epochs of the aux ensemble")
    aux_max_rows: int = Field(AUX.max_rows, ge=2, description="offline rows the aux ensemble trains on")
    trajectory_batch: int = Field(128, ge=1, description="trajectories per LM call (and per Ray task)")
    embed_batch_size: int = Field(PROXY.embed_batch_size, ge=1, description="rows per LM call when embedding")
    device: str = Field(PROXY.device, description="auto, cpu, cuda or cuda:N")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(PROXY.dtype, description="precision of the LM's "
                                                             "weights (embeddings and the proxy stay float32/64)")
    support: SupportLevel = Field(SupportLevel.PAIRS, description="constraints of the final decode, learned "
                                  "from the offline set: none, letters (seen at each position) or pairs (letters "
                                  "and adjacent letter pairs seen at each position)")
    max_mutations: int | None = Field(None, ge=1, description="K: final designs keep at most K substitutions "
                                      "from the task's wild type (DMS tasks; default their mutation radius) or "
                                      "else from their start (default ceil(L/3); no limit with support none)")
    observed_letters_only: bool = Field(False, description="designs use only letters the offline data shows at "
                                        "each position (DMS tasks: measured substitutions, which the oracle can "
                                        "score)")
    cotangents: CotangentBatching = Field(OPTIMISER.cotangents,
                                          description="how the adaptive modules' LM gradients are taken: one "
                                                      "backward each (sequential) or one vmapped backward (batched)")
    batch: int | None = Field(None, ge=1, description="also choose N sequences to order, pooled over the seeds: "
                              "distinct, none offline or in --exclude, ranked by a lower confidence bound under a "
                              "diversity rule (batch.csv, batch.fasta)")
    kappa: float = Field(BATCH.kappa, ge=0, description="the batch's bound: mean - kappa * std over the "
                         "proxy and the aux ensemble's members")
    batch_min_distance: int = Field(BATCH.min_distance, ge=1, description="designs in the batch differ "
                                    "pairwise in at least this many positions")
    batch_per_start: int | None = Field(BATCH.per_start, ge=1, description="at most this many batch "
                                        "designs from one starting sequence (default: no cap)")
    batch_checkpoints: int = Field(BATCH.checkpoints, ge=0, le=50, description="points along each "
                                   "trajectory, besides its end, whose decoded designs are batch candidates")
    exclude: str | None = Field(None, description="CSV or FASTA of sequences already ordered or measured "
                                "elsewhere: never in the batch")
    fixed: str | None = Field(None, description="positions every design keeps from its start, 1-based ranges "
                              "like 1-10,23,40-45")
    mutable: str | None = Field(None, description="the only positions designs may change, 1-based ranges (the "
                                "others are fixed)")
    wild_type: str | None = Field(None, description="user data: the wild type its sequences are variants of (a "
                                  "sequence or a FASTA file); designs are limited and written relative to it")
    duplicates: Literal["mean", "median", "max", "error"] = Field("mean", description="user data: a sequence "
                                                                   "measured more than once gets the mean, median "
                                                                   "or max of its scores; error refuses it")

    @field_validator("fixed", "mutable")
    @classmethod
    def _position_ranges(cls, text: str | None, info) -> str | None:
        if text is not None:
            parse_positions(text, f"--{info.field_name}")
        return text

    @model_validator(mode="after")
    def _fixed_or_mutable(self) -> "DesignConfig":
        if self.fixed is not None and self.mutable is not None:
            raise ValueError("give --fixed or --mutable, not both (one is the other's complement)")
        return self

    @field_validator("backbone")
    @classmethod
    def _canonical_backbone(cls, backbone: str) -> str:
        return str(BackboneSpec.parse(backbone))

    @model_validator(mode="before")
    @classmethod
    def _no_old_method_fields(cls, values: Any) -> Any:
        if isinstance(values, dict):
            old = [key for key in ("mode", "adaptive_eta") if key in values]
            if old:
                raise ValueError(f"{' and '.join(old)}: replaced by method (--method / method:), one of "
                                 f"{methods_help()}")
        return values

    @model_validator(mode="after")
    def _bdi_on_the_ntk(self) -> "DesignConfig":
        if self.method is Method.BDI:
            if "backbone" in self.model_fields_set and self.backbone != NTK_BACKBONE:
                raise ValueError(f"method bdi runs on the NTK proxy (backbone {NTK_BACKBONE!r}), not on "
                                 f"{self.backbone!r}; for another backbone pick method bidirectional")
            self.backbone = NTK_BACKBONE
        return self

    @model_validator(mode="after")
    def _trust_remote_code_in_spec(self) -> "DesignConfig":
        if self.trust_remote_code:
            self.backbone = str(BackboneSpec.parse(self.backbone).with_trust_remote_code())
        return self

    @property
    def uses_ntk_proxy(self) -> bool:
        """Whether the proxy is the NTK on one-hot features (backbone ``ntk``) rather than an LM's head."""
        return self.backbone == NTK_BACKBONE

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_from_text(cls, seeds: Any) -> Any:
        """'0,1,2' or '0-4' (a flag's or YAML's text) -> the list of seeds."""
        return parse_seeds(seeds) if isinstance(seeds, str) else seeds

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    @model_validator(mode="after")
    def _device_known(self) -> "DesignConfig":
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device {self.device!r} must be auto, cpu, cuda or cuda:N")
        return self

    def resolved_for(self, alphabet: str) -> "DesignConfig":
        """This config with its task-dependent defaults filled in for a task with these letters:
        ``steps`` unset becomes ``reference_steps(alphabet)``."""
        if self.steps is not None:
            return self
        return self.model_copy(update={"steps": reference_steps(alphabet)})

    @property
    def resolved_steps(self) -> int:
        """``steps``, which must have been resolved for the task (``resolved_for``)."""
        if self.steps is None:
            raise ValueError("steps is unset: resolve the config for its task first (DesignConfig.resolved_for)")
        return self.steps

    def optimiser_settings(self) -> OptimiserSettings:
        """The optimiser's settings of a gradient method (ValueError for ``evolution``, which has none)."""
        if not self.method.is_gradient:
            raise ValueError(f"method {self.method.value} does not run the gradient optimiser")
        checkpoints = () if self.batch is None else self.batch_settings().checkpoint_steps(self.resolved_steps)
        return OptimiserSettings(mode=self.method.mode, adaptive_eta=self.method.adaptive_eta,
                                 steps=self.resolved_steps, lr=self.lr, target=self.target,
                                 gamma_init=self.gamma_init, gamma_lr=self.gamma_lr, eta_meta_lr=self.eta_meta_lr,
                                 init_std=self.init_std, cotangents=self.cotangents, checkpoint_steps=checkpoints)

    def aux_settings(self) -> AuxiliarySettings:
        return AuxiliarySettings(members=self.aux_members, hidden=self.aux_hidden, epochs=self.aux_epochs,
                                 max_rows=self.aux_max_rows)

    def proxy_settings(self) -> ProxySettings:
        """How the proxy is fitted (the LM, its device and precision, beta, aux rows, NTK rows)."""
        return ProxySettings(backbone=BackboneSpec.parse(self.backbone), beta_scale=self.beta_scale, device=self.device,
                             embed_batch_size=self.embed_batch_size, aux_max_rows=self.aux_max_rows,
                             dtype=self.dtype, ntk_rows=self.ntk_rows)

    def evolution_settings(self) -> EvolutionSettings:
        """``evolution``'s settings: ``steps`` rounds, a population of ``designs`` and four children per
        member each round."""
        return EvolutionSettings(rounds=self.resolved_steps, population=self.designs,
                                 children_per_round=4 * self.designs)

    def batch_settings(self) -> BatchSettings | None:
        """The batch to choose (None without ``batch``)."""
        if self.batch is None:
            return None
        return BatchSettings(size=self.batch, kappa=self.kappa, min_distance=self.batch_min_distance,
                                   per_start=self.batch_per_start, checkpoints=self.batch_checkpoints)

    def fixed_positions(self, length: int) -> np.ndarray | None:
        """(L,) bool: the positions no design may change (``fixed``, or all but ``mutable``); None when every
        position may change. UserError for a position past ``length`` or nothing left to mutate."""
        given = self.fixed if self.fixed is not None else self.mutable
        if given is None:
            return None
        flag = "--fixed" if self.fixed is not None else "--mutable"
        positions = parse_positions(given, flag)
        if positions[-1] > length:
            raise UserError(f"{flag} {given!r}: position {positions[-1]} is past the end of the designs "
                            f"(length {length}; positions are 1-based)")
        named = np.zeros(length, dtype=bool)
        named[np.asarray(positions) - 1] = True
        fixed = named if self.fixed is not None else ~named
        if fixed.all():
            raise UserError(f"{flag} {given!r} leaves no position to mutate (length {length})")
        return fixed

    def user_data_options(self) -> UserDataOptions:
        """How a user data file is read: alphabet, replicates, wild type (read from its file if one is named)."""
        wild_type = None if self.wild_type is None else read_wild_type(self.wild_type)
        return UserDataOptions(alphabet=self.alphabet, duplicates=self.duplicates, wild_type=wild_type)

    def load_task(self) -> Task:
        """The task, on the process that has the data: loaded, its ``exclude`` file read into it, and the
        fixed positions checked against its length (every user mistake is a UserError here, before Ray)."""
        task = load_task(self.task, self.data_dir, self.user_data_options())
        if self.exclude is not None:
            task = dataclasses.replace(task, excluded=read_exclusions(self.exclude, task))
        self.fixed_positions(task.length)
        return task

    def method_label(self) -> str:
        """The method's name, e.g. 'bib+eta'."""
        return self.method.value


def build_config(values: dict) -> DesignConfig:
    """Validate a mapping into a DesignConfig, turning pydantic errors into a UserError."""
    return parse_model(DesignConfig, values, "invalid design configuration")
