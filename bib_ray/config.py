"""Validated configuration of a design run (CLI flags and YAML files map onto it one to one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bib_ray.alphabets import is_nucleotide
from bib_ray.backbones import trust_remote_code_spec
from bib_ray.core.aux_ensemble import AuxiliarySettings
from bib_ray.core.methods import NTK_BACKBONE, Method, methods_help
from bib_ray.core.optimizer import CotangentBatching, OptimiserSettings
from bib_ray.core.support import SupportLevel
from bib_ray.errors import UserError


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

    task: str = Field("ehrlich", description="task spec (see `bib-ray tasks`)")
    data_dir: str | None = Field(None, description="task data directory (else $BIB_RAY_DATA)")
    alphabet: str | None = Field(None, description="alphabet of a user data file: dna, rna, protein or letters")
    backbone: str = Field("tiny", description=f"backbone spec (see `bib-ray backbones`), or {NTK_BACKBONE!r}: "
                          "the NTK proxy on one-hot features (implied by method bdi)")
    trust_remote_code: bool = Field(False, description="let a Hugging Face backbone run the code its checkpoint "
                                    "ships (adds trust_remote_code=true to the backbone spec)")
    method: Method = Field(Method.BIB, description=f"design method: {methods_help()}")
    ntk_rows: int = Field(5000, ge=2, description=f"offline rows in the NTK proxy's kernel (backbone "
                          f"{NTK_BACKBONE!r}; a fixed random subset when the task has more)")
    steps: int | None = Field(None, ge=1, le=100_000, description="optimisation steps T; unset: the "
                              "reference's, 100 on DNA/RNA and 25 on proteins")
    designs: int = Field(128, ge=1, le=1_000_000)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    lr: float = Field(0.1, gt=0, description="Adam step size eta_0")
    target: float = Field(10.0, description="target score y_h in standardised label units")
    beta_scale: float = Field(1e-6, gt=0, description="ridge beta = beta_scale * trace(G) / N")
    gamma_init: float = Field(0.5, ge=0, le=1)
    gamma_lr: float = Field(0.1, gt=0, description="Adam step size of adaptive gamma (reference: eta_0 = 0.1)")
    eta_meta_lr: float = Field(0.01, gt=0)
    init_std: float = Field(0.01, gt=0, description="standard deviation of the initial logits' noise "
                            "(reference 0.01)")
    aux_members: int = Field(5, ge=1, le=64)
    aux_hidden: int = Field(64, ge=1)
    aux_epochs: int = Field(20, ge=1)
    aux_max_rows: int = Field(20000, ge=2, description="offline rows the aux ensemble trains on")
    trajectory_batch: int = Field(128, ge=1, description="trajectories per LM call (and per Ray task)")
    embed_batch_size: int = Field(512, ge=1)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="precision of the LM's "
                                                             "weights (embeddings and the proxy stay float32/64)")
    support: SupportLevel = Field(SupportLevel.PAIRS, description="constraints of the final decode, learned "
                                  "from the offline set: none, letters (seen at each position) or pairs (letters "
                                  "and adjacent letter pairs seen at each position); on for every task")
    max_mutations: int | None = Field(None, ge=1, description="K: final designs differ from the task's reference "
                                      "(DMS wild type) or else from their start in at most K positions; unset: "
                                      "with support none no limit, else the task's mutation radius (DMS) or "
                                      "ceil(L / 3)")
    observed_letters_only: bool = Field(False, description="designs use only letters that the offline data "
                                        "shows at each position (for DMS tasks: measured substitutions)")
    cotangents: CotangentBatching = Field(CotangentBatching.SEQUENTIAL,
                                          description="how the adaptive modules' LM gradients are taken: one "
                                                      "backward each (sequential) or one vmapped backward (batched)")

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
            self.backbone = trust_remote_code_spec(self.backbone)
        return self

    @property
    def uses_ntk_proxy(self) -> bool:
        """Whether the proxy is the NTK on one-hot features (backbone ``ntk``) rather than an LM's head."""
        return self.backbone == NTK_BACKBONE

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
        return OptimiserSettings(mode=self.method.mode, adaptive_eta=self.method.adaptive_eta,
                                 steps=self.resolved_steps, lr=self.lr, target=self.target,
                                 gamma_init=self.gamma_init, gamma_lr=self.gamma_lr, eta_meta_lr=self.eta_meta_lr,
                                 init_std=self.init_std, cotangents=self.cotangents)

    def aux_settings(self) -> AuxiliarySettings:
        return AuxiliarySettings(members=self.aux_members, hidden=self.aux_hidden, epochs=self.aux_epochs,
                                 max_rows=self.aux_max_rows)

    def method_label(self) -> str:
        """The method's name, e.g. 'bib+eta'."""
        return self.method.value


class RaySettings(BaseModel):
    """Where and how the Ray layer runs (the core ignores it)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="Ray cluster address (else $RAY_ADDRESS, else embedded local Ray)")
    shards: int | None = Field(None, ge=1, description="LM replicas (default: one per GPU, else per CPU, max 8)")
    cpus_per_shard: float = Field(1.0, gt=0)
    gpus_per_shard: float | None = Field(None, ge=0, description="GPUs per shard, default 1 when the cluster has "
                                         "GPUs, else 0; a fraction shares a GPU, K > 1 (whole) splits one LM "
                                         "over K GPUs")
    max_restarts: int = Field(3, ge=0, description="actor restarts and task retries after a failure")
    placement_timeout_s: float = Field(300.0, gt=0, description="how long the shards may wait for the cluster's "
                                       "resources (an autoscaler is asked for them) before the run fails")

    @field_validator("gpus_per_shard")
    @classmethod
    def _whole_gpus_to_split(cls, gpus: float | None) -> float | None:
        if gpus is not None and gpus > 1 and gpus != int(gpus):
            raise ValueError(f"{gpus} GPUs: a shard shares one GPU (a fraction <= 1) or splits its LM over whole GPUs")
        return gpus


def format_validation_error(error: ValidationError) -> str:
    """One line per problem: 'field: message'."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "config"
        lines.append(f"{where}: {problem['msg']}")
    return "; ".join(lines)


Model = TypeVar("Model", bound=BaseModel)


def parse_model(model: type[Model], values: dict, what: str) -> Model:
    """``model`` validated from ``values``; pydantic errors become a UserError starting with ``what``."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise UserError(f"{what}: {format_validation_error(error)}") from None


def build_config(values: dict) -> DesignConfig:
    """Validate a mapping into a DesignConfig, turning pydantic errors into a UserError."""
    return parse_model(DesignConfig, values, "invalid design configuration")


def load_yaml_mapping(path: str | Path) -> dict:
    """A YAML file that must hold a mapping (UserError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of settings at the top level")
    return values
