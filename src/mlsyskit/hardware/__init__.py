"""Hardware catalogue: GPUs, host CPUs, links and SmartNICs, each number with its source."""

from mlsyskit.hardware.catalogue import (
    GPU,
    Catalogue,
    Device,
    HostCPU,
    Link,
    SmartNIC,
    get_catalogue,
    load_catalogue,
    parse_catalogue_text,
    use_hardware_files,
)

__all__ = [
    "GPU",
    "Catalogue",
    "Device",
    "HostCPU",
    "Link",
    "SmartNIC",
    "get_catalogue",
    "load_catalogue",
    "parse_catalogue_text",
    "use_hardware_files",
]
