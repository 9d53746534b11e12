"""Typed hardware catalogue loaded from TOML.

Every simulator in mlsyskit (serving cost model, Optimus, Cora) takes its device numbers from here,
so a number is written once, with its source, and a user can add their own devices with
``--hardware FILE`` instead of editing code.

File format: one table per device, keyed by kind and name::

    [gpu.t4]
    display_name = "NVIDIA T4"
    memory_gib = 16
    ...
    [gpu.t4.sources]
    memory_gib = "NVIDIA T4 datasheet"

Each numeric field must carry a source in the ``sources`` sub-table.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

from mlsyskit.errors import HardwareCatalogueError, UnknownNameError

GIB = 1024**3
GB = 1e9


@dataclass(frozen=True)
class Device:
    """Fields every catalogue entry has."""

    kind: ClassVar[str] = "device"
    name: str
    display_name: str
    sources: Mapping[str, str] = field(default_factory=dict, repr=False)

    def numbers(self) -> dict[str, float]:
        """The numeric fields of this entry, by name."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), int | float)
            and not isinstance(getattr(self, f.name), bool)
        }


@dataclass(frozen=True)
class GPU(Device):
    """An accelerator: memory capacity, memory bandwidth and dense fp16/bf16 tensor peak."""

    kind: ClassVar[str] = "gpu"
    memory_gib: float = 0.0
    mem_bw_gbs: float = 0.0
    fp16_tflops: float = 0.0
    host_link: str = ""

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def mem_bw_bytes_per_s(self) -> float:
        return self.mem_bw_gbs * GB

    @property
    def fp16_flops_per_s(self) -> float:
        return self.fp16_tflops * 1e12


@dataclass(frozen=True)
class HostCPU(Device):
    """A host machine's CPU side: cores, memory and peak memory bandwidth."""

    kind: ClassVar[str] = "cpu"
    cpu_model: str = ""
    num_cores: int = 0
    num_vcpus: int = 0
    memory_gib: float = 0.0
    mem_bw_gbs: float = 0.0

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def mem_bw_bytes_per_s(self) -> float:
        return self.mem_bw_gbs * GB


@dataclass(frozen=True)
class Link(Device):
    """An interconnect: bandwidth per direction and one-way latency."""

    kind: ClassVar[str] = "link"
    bandwidth_gbs: float = 0.0
    latency_us: float = 0.0

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_gbs * GB


@dataclass(frozen=True)
class SmartNIC(Device):
    """A programmable NIC: on-board cores, threads, clock, memory and port speed."""

    kind: ClassVar[str] = "smartnic"
    num_cores: int = 0
    threads_per_core: int = 0
    clock_ghz: float = 0.0
    memory_gib: float = 0.0
    port_gbps: float = 0.0
    num_ports: int = 0


DEVICE_TYPES: dict[str, type[Device]] = {t.kind: t for t in (GPU, HostCPU, Link, SmartNIC)}


@dataclass(frozen=True)
class Catalogue:
    """All known devices, by kind then name."""

    devices: Mapping[str, Mapping[str, Device]]

    def names(self, kind: str | None = None) -> list[str]:
        kinds = [kind] if kind else list(self.devices)
        return sorted(n for k in kinds for n in self.devices.get(k, {}))

    def __iter__(self) -> Iterator[Device]:
        for by_name in self.devices.values():
            yield from by_name.values()

    def get(self, name: str, kind: str | None = None) -> Device:
        """Look a device up by name (any kind unless ``kind`` is given).

        Raises
        ------
        UnknownNameError
            The name is not in the catalogue; the message lists the known names.
        """
        kinds = [kind] if kind else list(self.devices)
        for k in kinds:
            if name in self.devices.get(k, {}):
                return self.devices[k][name]
        raise UnknownNameError(kind or "device", name, self.names(kind))

    def gpu(self, name: str) -> GPU:
        dev = self.get(name, "gpu")
        assert isinstance(dev, GPU)
        return dev

    def cpu(self, name: str) -> HostCPU:
        dev = self.get(name, "cpu")
        assert isinstance(dev, HostCPU)
        return dev

    def link(self, name: str) -> Link:
        dev = self.get(name, "link")
        assert isinstance(dev, Link)
        return dev

    def smartnic(self, name: str) -> SmartNIC:
        dev = self.get(name, "smartnic")
        assert isinstance(dev, SmartNIC)
        return dev


def _check_value(where: str, field_name: str, expected: Any, value: Any) -> Any:
    if expected is str:
        if not isinstance(value, str):
            raise HardwareCatalogueError(f"{where}: field {field_name!r} must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HardwareCatalogueError(
            f"{where}: field {field_name!r} must be a number, got {value!r}"
        )
    if value <= 0:
        raise HardwareCatalogueError(f"{where}: field {field_name!r} must be > 0, got {value}")
    if expected is int:
        if int(value) != value:
            raise HardwareCatalogueError(
                f"{where}: field {field_name!r} must be an integer, got {value}"
            )
        return int(value)
    return float(value)


def _parse_entry(origin: str, kind: str, name: str, table: Any) -> Device:
    where = f"{origin}: [{kind}.{name}]"
    if not isinstance(table, dict):
        raise HardwareCatalogueError(f"{where} must be a table")
    cls = DEVICE_TYPES[kind]
    hints = get_type_hints(cls)
    allowed = {f.name for f in dataclasses.fields(cls)} - {"name"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise HardwareCatalogueError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    sources = table.get("sources", {})
    if not isinstance(sources, dict):
        raise HardwareCatalogueError(f"{where}: 'sources' must be a table")
    values: dict[str, Any] = {"name": name, "sources": dict(sources)}
    for f in dataclasses.fields(cls):
        if f.name in ("name", "sources"):
            continue
        if f.name not in table:
            raise HardwareCatalogueError(f"{where}: missing field {f.name!r}")
        expected = hints[f.name]
        values[f.name] = _check_value(where, f.name, expected, table[f.name])
        if expected is not str and f.name not in sources:
            raise HardwareCatalogueError(
                f"{where}: field {f.name!r} has no source; add it under [{kind}.{name}.sources]"
            )
    return cls(**values)


def parse_catalogue_text(text: str, origin: str) -> dict[str, dict[str, Device]]:
    """Parse one TOML document into devices by kind and name."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HardwareCatalogueError(f"{origin}: not valid TOML: {exc}") from exc
    out: dict[str, dict[str, Device]] = {}
    for kind, entries in doc.items():
        if kind not in DEVICE_TYPES:
            raise HardwareCatalogueError(
                f"{origin}: unknown device kind {kind!r}; known kinds: {', '.join(DEVICE_TYPES)}"
            )
        if not isinstance(entries, dict):
            raise HardwareCatalogueError(f"{origin}: [{kind}] must hold named tables")
        for name, table in entries.items():
            out.setdefault(kind, {})[name] = _parse_entry(origin, kind, name, table)
    return out


def _builtin_texts() -> Iterable[tuple[str, str]]:
    data = resources.files("mlsyskit.hardware") / "data"
    for entry in sorted(data.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            yield f"mlsyskit/hardware/data/{entry.name}", entry.read_text(encoding="utf-8")


def load_catalogue(extra_files: Sequence[Path] = ()) -> Catalogue:
    """Load the built-in catalogue, then the user's files (which may override entries by name).

    Raises
    ------
    HardwareCatalogueError
        A file is missing, not TOML, or an entry has an unknown, missing or ill-typed field.
    """
    merged: dict[str, dict[str, Device]] = {}
    texts = list(_builtin_texts())
    for path in extra_files:
        try:
            texts.append((str(path), Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise HardwareCatalogueError(f"cannot read hardware file {path}: {exc}") from exc
    for origin, text in texts:
        for kind, by_name in parse_catalogue_text(text, origin).items():
            merged.setdefault(kind, {}).update(by_name)
    for gpu in merged.get("gpu", {}).values():
        assert isinstance(gpu, GPU)
        if gpu.host_link not in merged.get("link", {}):
            raise HardwareCatalogueError(
                f"[gpu.{gpu.name}]: host_link {gpu.host_link!r} is not a known link; "
                f"known: {', '.join(sorted(merged.get('link', {})))}"
            )
    return Catalogue(devices=merged)


_user_files: list[Path] = []
_cached: Catalogue | None = None


def use_hardware_files(paths: Sequence[Path]) -> None:
    """Make :func:`get_catalogue` include these user files (the CLI's ``--hardware``)."""
    global _cached
    _user_files[:] = list(paths)
    _cached = None


def get_catalogue() -> Catalogue:
    """The catalogue in use: built-in entries plus any files given to :func:`use_hardware_files`."""
    global _cached
    if _cached is None:
        _cached = load_catalogue(_user_files)
    return _cached
