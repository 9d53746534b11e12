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
from typing import Any, TypeVar

import yaml

from mlsyskit.errors import UnknownNameError
from mlsyskit.hardware import GPU, Device, Link, get_catalogue
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


_D = TypeVar("_D", bound=Device)


def _fail(source: str, msg: str) -> OptimusConfigError:
    return OptimusConfigError(f"{source}: {msg}")


def _int(raw: Any, source: str, key: str) -> int:
    """A positive YAML integer; floats (``4.5``, ``4.0``), strings and booleans are refused.

    Why strict: ``int(4.5)`` would silently plan TP 4, and YAML's ``true`` is an ``int``
    subclass in Python.
    """
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _fail(source, f"{key} must be a positive integer; got {raw!r}")
    if raw < 1:
        raise _fail(source, f"{key} must be >= 1; got {raw}")
    return raw


def _bool(raw: Any, source: str, key: str) -> bool:
    """A YAML boolean (``true``/``false``); ``bool("no")`` would be True."""
    if not isinstance(raw, bool):
        raise _fail(source, f"{key} must be true or false; got {raw!r}")
    return raw


def _mapping(raw: Any, source: str, key: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(source, f"{key} must be a mapping with keys {sorted(allowed)}; got {raw!r}")
    unknown = set(raw) - allowed
    if unknown:
        raise _fail(source, f"{key}: unknown keys {sorted(unknown)}; expected some of "
                            f"{sorted(allowed)}")
    return raw


def _device(raw: Any, source: str, key: str, cls: type[_D]) -> _D:
    """The catalogue device ``raw`` of type ``cls``; errors name the file, key and value."""
    cat = get_catalogue()
    kind = cls.kind
    if not isinstance(raw, str):
        raise _fail(source, f"{key} must be a {kind} name; got {raw!r}")
    try:
        dev = cat.get(raw)
    except UnknownNameError as exc:
        raise _fail(source, f"{key}: unknown device {raw!r}; known {kind}s: "
                            f"{', '.join(cat.names(kind))}") from exc
    if not isinstance(dev, cls):
        raise _fail(source, f"{key}: {raw!r} is a {dev.kind}, not a {kind}")
    return dev


def _part(raw: Any, source: str, where: str) -> ModelPart:
    if not isinstance(raw, dict) or "model" not in raw:
        raise _fail(source, f"{where} must be a mapping with a 'model' key; got {raw!r}")
    _mapping(raw, source, where, {"model", "seq_len"})
    name = raw["model"]
    if not isinstance(name, str):
        raise _fail(source, f"{where}.model must be a model name; got {name!r}")
    try:
        spec = get_model(name)
    except UnknownNameError as exc:
        raise _fail(source, f"{where}.model: {exc}") from exc
    return ModelPart(spec, _int(raw.get("seq_len", 2048), source, f"{where}.seq_len"))


def parse_config(data: Any, source: str = "<config>") -> JobConfig:
    """Validate a decoded YAML mapping into a :class:`JobConfig`.

    Raises
    ------
    OptimusConfigError
        Missing or unknown keys, values of the wrong type (sizes must be YAML integers,
        ``recompute`` a YAML boolean), non-positive sizes, unknown device or model names, or a
        plan whose GPU count, TP degree (it must divide the LLM's attention heads) or
        microbatch count is inconsistent.  The message names the file and the key.
    """
    if not isinstance(data, dict):
        raise _fail(source, "top level must be a mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(source, f"unknown keys {sorted(unknown)}; expected some of {sorted(_TOP_KEYS)}")
    for key in ("gpu", "num_gpus", "encoders", "llm", "llm_plan"):
        if key not in data:
            raise _fail(source, f"missing key {key!r}")
    gpu = _device(data["gpu"], source, "gpu", GPU)
    links = _mapping(data.get("links") or {}, source, "links", {"intra_node", "inter_node"})
    intra = _device(links.get("intra_node", "nvlink4"), source, "links.intra_node", Link)
    inter = _device(links.get("inter_node", "ib-ndr"), source, "links.inter_node", Link)
    encs = data["encoders"]
    if not isinstance(encs, list) or not encs:
        raise _fail(source, f"encoders must be a non-empty list; got {encs!r}")
    encoders = tuple(_part(e, source, f"encoders[{i}]") for i, e in enumerate(encs))
    llm = _part(data["llm"], source, "llm")
    raw_plan = _mapping(data["llm_plan"], source, "llm_plan", _PLAN_KEYS)
    plan = ParallelPlan(**{k: _int(v, source, f"llm_plan.{k}") for k, v in raw_plan.items()})
    num_gpus = _int(data["num_gpus"], source, "num_gpus")
    per_node = _int(data.get("gpus_per_node", 8), source, "gpus_per_node")
    recompute = _bool(data.get("recompute", True), source, "recompute")
    if plan.num_gpus != num_gpus:
        raise _fail(
            source, f"llm_plan dp*pp*tp = {plan.num_gpus} but num_gpus = {num_gpus}"
        )
    if per_node % plan.tp and plan.tp % per_node:
        raise _fail(source, f"llm_plan.tp = {plan.tp} and gpus_per_node = {per_node}: one must "
                            "divide the other (TP groups fill whole nodes or share one evenly)")
    heads = llm.spec.num_heads
    if heads % plan.tp:
        raise _fail(source, f"llm_plan.tp = {plan.tp} does not divide the {heads} attention "
                            f"heads of llm {llm.spec.name} (Megatron splits heads over TP)")
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
        llm=llm, llm_plan=plan, recompute=recompute,
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
        raise UnknownNameError("optimus config", name, builtin_config_names())
    return parse_config(yaml.safe_load(target.read_text(encoding="utf-8")), f"{name}.yaml")
