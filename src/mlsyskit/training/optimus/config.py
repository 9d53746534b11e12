"""Model and cluster description (YAML) of an Optimus job, parsed once into frozen values.

Example (``configs/vit22b_gpt175b_3072.yaml``)::

    name: vit22b-gpt175b-3072
    gpu: h100-sxm
    num_gpus: 3072
    gpus_per_node: 8
    links: {intra_node: nvlink4, inter_node: ib-ndr}
    encoders: [{model: vit-22b, seq_len: 2048}]
    llm: {model: gpt-175b, seq_len: 2048}
    llm_plan: {dp: 48, pp: 8, tp: 8, virtual_stages: 12, num_microbatches: 16,
               microbatch_size: 2}
    recompute: true
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mlsyskit.hardware import GPU, Link, get_catalogue
from mlsyskit.training.optimus.errors import OptimusConfigError
from mlsyskit.training.optimus.models import TransformerSpec, get_model


@dataclass(frozen=True)
class ModelPart:
    """One transformer (encoder or LLM) with the sequence length it sees per sample."""

    spec: TransformerSpec
    seq_len: int


@dataclass(frozen=True)
class ParallelPlan:
    """A 3D-parallel plan for the LLM (or an encoder).

    ``virtual_stages`` is Megatron's interleaving degree V (1 = plain 1F1B);
    ``num_microbatches`` is per pipeline replica per iteration.
    """

    dp: int
    pp: int
    tp: int
    virtual_stages: int = 1
    num_microbatches: int = 1
    microbatch_size: int = 1

    @property
    def num_gpus(self) -> int:
        return self.dp * self.pp * self.tp


@dataclass(frozen=True)
class JobConfig:
    """Everything the planner, simulator and scheduler need about one training job."""

    name: str
    gpu: GPU
    num_gpus: int
    gpus_per_node: int
    intra_link: Link
    inter_link: Link
    encoders: tuple[ModelPart, ...]
    llm: ModelPart
    llm_plan: ParallelPlan
    recompute: bool = True

    def with_plan(self, plan: ParallelPlan) -> JobConfig:
        """A copy with another LLM plan (GPU count follows the plan)."""
        return JobConfig(
            self.name, self.gpu, plan.num_gpus, self.gpus_per_node, self.intra_link,
            self.inter_link, self.encoders, self.llm, plan, self.recompute,
        )


_TOP_KEYS = {
    "name", "gpu", "num_gpus", "gpus_per_node", "links", "encoders", "llm", "llm_plan",
    "recompute",
}
_PLAN_KEYS = {"dp", "pp", "tp", "virtual_stages", "num_microbatches", "microbatch_size"}


def _fail(source: str, msg: str) -> OptimusConfigError:
    return OptimusConfigError(f"{source}: {msg}")


def _part(raw: Any, source: str, where: str) -> ModelPart:
    if not isinstance(raw, dict) or "model" not in raw:
        raise _fail(source, f"{where} must be a mapping with a 'model' key; got {raw!r}")
    unknown = set(raw) - {"model", "seq_len"}
    if unknown:
        raise _fail(source, f"{where}: unknown keys {sorted(unknown)}")
    seq = int(raw.get("seq_len", 2048))
    if seq <= 0:
        raise _fail(source, f"{where}.seq_len must be positive; got {seq}")
    return ModelPart(get_model(str(raw["model"])), seq)


def parse_config(data: Any, source: str = "<config>") -> JobConfig:
    """Validate a decoded YAML mapping into a :class:`JobConfig`.

    Raises
    ------
    OptimusConfigError
        Missing or unknown keys, non-positive sizes, or a plan whose GPU count, TP degree
        or microbatch count is inconsistent (the message names the file and the key).
    """
    if not isinstance(data, dict):
        raise _fail(source, "top level must be a mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(source, f"unknown keys {sorted(unknown)}; expected some of {sorted(_TOP_KEYS)}")
    for key in ("gpu", "num_gpus", "encoders", "llm", "llm_plan"):
        if key not in data:
            raise _fail(source, f"missing key {key!r}")
    cat = get_catalogue()
    gpu = cat.get(str(data["gpu"]))
    if not isinstance(gpu, GPU):
        raise _fail(source, f"gpu {data['gpu']!r} is a {gpu.kind}, not a gpu")
    links = data.get("links", {}) or {}
    intra = cat.get(str(links.get("intra_node", "nvlink4")))
    inter = cat.get(str(links.get("inter_node", "ib-ndr")))
    if not isinstance(intra, Link) or not isinstance(inter, Link):
        raise _fail(source, "links.intra_node and links.inter_node must name links")
    encs = data["encoders"]
    if not isinstance(encs, list) or not encs:
        raise _fail(source, "encoders must be a non-empty list")
    encoders = tuple(_part(e, source, f"encoders[{i}]") for i, e in enumerate(encs))
    llm = _part(data["llm"], source, "llm")
    raw_plan = data["llm_plan"]
    if not isinstance(raw_plan, dict):
        raise _fail(source, "llm_plan must be a mapping")
    bad = set(raw_plan) - _PLAN_KEYS
    if bad:
        raise _fail(source, f"llm_plan: unknown keys {sorted(bad)}")
    try:
        plan = ParallelPlan(**{k: int(v) for k, v in raw_plan.items()})
    except (TypeError, ValueError) as exc:
        raise _fail(source, f"llm_plan: {exc}") from exc
    for key in _PLAN_KEYS:
        if getattr(plan, key) < 1:
            raise _fail(source, f"llm_plan.{key} must be >= 1; got {getattr(plan, key)}")
    num_gpus = int(data["num_gpus"])
    per_node = int(data.get("gpus_per_node", 8))
    if plan.num_gpus != num_gpus:
        raise _fail(
            source, f"llm_plan dp*pp*tp = {plan.num_gpus} but num_gpus = {num_gpus}"
        )
    if per_node % plan.tp and plan.tp % per_node:
        raise _fail(source, f"llm_plan.tp={plan.tp} must divide gpus_per_node={per_node}")
    if llm.spec.num_layers % (plan.pp * plan.virtual_stages):
        raise _fail(
            source,
            f"llm has {llm.spec.num_layers} layers, not divisible by pp*virtual_stages = "
            f"{plan.pp * plan.virtual_stages}",
        )
    if plan.virtual_stages > 1 and plan.num_microbatches % plan.pp:
        raise _fail(
            source, "interleaved 1F1B needs num_microbatches to be a multiple of pp "
            f"(got {plan.num_microbatches} and {plan.pp})",
        )
    return JobConfig(
        name=str(data.get("name", Path(source).stem)), gpu=gpu, num_gpus=num_gpus,
        gpus_per_node=per_node, intra_link=intra, inter_link=inter, encoders=encoders,
        llm=llm, llm_plan=plan, recompute=bool(data.get("recompute", True)),
    )


def load_config(path: Path) -> JobConfig:
    """Read and validate a YAML job description.

    Raises
    ------
    OptimusConfigError
        The file is missing, is not YAML (with the line of the error) or is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OptimusConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise OptimusConfigError(f"{path}{line}: not valid YAML ({exc})") from exc
    return parse_config(data, str(path))


def builtin_config_names() -> list[str]:
    """Names of the example configs shipped with the package."""
    folder = resources.files("mlsyskit.training.optimus") / "configs"
    names = (p.name for p in folder.iterdir())
    return sorted(n.removesuffix(".yaml") for n in names if n.endswith(".yaml"))


def load_builtin(name: str) -> JobConfig:
    """Load a shipped example config by name (e.g. ``"vit22b_gpt175b_3072"``)."""
    folder = resources.files("mlsyskit.training.optimus") / "configs"
    target = folder / f"{name}.yaml"
    if not target.is_file():
        from mlsyskit.errors import UnknownNameError

        raise UnknownNameError("optimus config", name, builtin_config_names())
    return parse_config(yaml.safe_load(target.read_text(encoding="utf-8")), f"{name}.yaml")
