from __future__ import annotations

from pathlib import Path

import pytest

from mlsyskit.errors import HardwareCatalogueError, UnknownNameError
from mlsyskit.hardware import GPU, load_catalogue, parse_catalogue_text

REQUIRED = {
    "gpu": ["t4", "a10g", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200"],
    "cpu": ["g4dn-4xlarge", "g5-2xlarge", "g5-4xlarge", "g5-8xlarge", "g5-16xlarge",
            "epyc-7313-x2"],
    "link": ["pcie-gen3-x16", "pcie-gen4-x16", "pcie-gen5-x16", "nvlink3", "nvlink4", "ib-hdr",
             "ib-ndr"],
    "smartnic": ["agilio-cx", "bluefield-2"],
}


def test_builtin_catalogue_has_every_device_the_papers_use() -> None:
    cat = load_catalogue()
    for kind, names in REQUIRED.items():
        assert set(names) <= set(cat.names(kind)), kind


def test_every_number_has_a_source() -> None:
    for device in load_catalogue():
        for field_name in device.numbers():
            assert device.sources.get(field_name), f"{device.name}.{field_name}"


def test_typed_accessors_and_units() -> None:
    cat = load_catalogue()
    t4 = cat.gpu("t4")
    assert isinstance(t4, GPU)
    assert t4.mem_bw_bytes_per_s == pytest.approx(320e9)
    assert t4.memory_bytes == 16 * 1024**3
    assert cat.link(t4.host_link).bandwidth_gbs == pytest.approx(15.75)
    assert cat.cpu("g5-16xlarge").num_cores == 32
    assert cat.smartnic("agilio-cx").num_cores * cat.smartnic("agilio-cx").threads_per_core == 384


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_catalogue().gpu("v100")
    assert "v100" in str(info.value) and "t4" in str(info.value)


GOOD_GPU = """
[gpu.mygpu]
display_name = "My GPU"
memory_gib = 48
mem_bw_gbs = 900
fp16_tflops = 150
host_link = "pcie-gen4-x16"
[gpu.mygpu.sources]
memory_gib = "mine"
mem_bw_gbs = "mine"
fp16_tflops = "mine"
"""


def test_user_file_adds_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(GOOD_GPU + GOOD_GPU.replace("mygpu", "t4").replace("My GPU", "Fast T4"))
    cat = load_catalogue([path])
    assert cat.gpu("mygpu").mem_bw_gbs == 900
    assert cat.gpu("t4").display_name == "Fast T4"
    assert cat.gpu("a10g").memory_gib == 24  # built-ins kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_GPU.replace("memory_gib = 48\n", ""), "missing field 'memory_gib'"),
        (
            GOOD_GPU.replace("mem_bw_gbs = 900", 'mem_bw_gbs = "fast"'),
            "'mem_bw_gbs' must be a number",
        ),
        (GOOD_GPU.replace("mem_bw_gbs = 900", "mem_bw_gbs = -1"), "'mem_bw_gbs' must be > 0"),
        (GOOD_GPU.replace('fp16_tflops = "mine"', ""), "'fp16_tflops' has no source"),
        (
            GOOD_GPU.replace("memory_gib = 48", "memory_gib = 48\ncolour = 1"),
            "unknown field(s) colour",
        ),
        (GOOD_GPU.replace("[gpu.", "[tpu."), "unknown device kind 'tpu'"),
        ("this is = not toml [", "not valid TOML"),
        (GOOD_GPU.replace("pcie-gen4-x16", "pcie-gen9"), "host_link 'pcie-gen9'"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(HardwareCatalogueError) as info:
        load_catalogue([path])
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HardwareCatalogueError, match="cannot read hardware file"):
        load_catalogue([tmp_path / "absent.toml"])


def test_parse_names_origin() -> None:
    with pytest.raises(HardwareCatalogueError, match=r"^here.toml: \[gpu.x\]"):
        parse_catalogue_text('[gpu.x]\ndisplay_name = "x"\n', "here.toml")
