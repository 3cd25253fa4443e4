"""The GPU catalog, the ``--gpus`` grammar, and ``simreplay hardware list``."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from simulator.cli.catalog import hardware_app
from simulator.errors import SimreplayError
from simulator.hardware import GPUS, get_gpu, parse_gpus

GIB = 2**30

REQUIRED_GPUS = {
    "A100-40GB-SXM",
    "A100-80GB-SXM",
    "A100-40GB-PCIe",
    "A100-80GB-PCIe",
    "H100-SXM",
    "H100-PCIe",
    "H200",
    "B200",
    "L40S",
    "L4",
    "A10G",
    "A40",
    "RTX-4090",
    "RTX-PRO-6000",
    "MI300X",
}


@pytest.mark.parametrize(
    ("text", "count", "name"),
    [
        ("4xA100", 4, "A100-80GB-SXM"),
        ("8xH100", 8, "H100-SXM"),
        ("2xl40s", 2, "L40S"),
        ("4 x A100", 4, "A100-80GB-SXM"),
        ("4X a100", 4, "A100-80GB-SXM"),
        ("16*H200", 16, "H200"),
        ("H200", 1, "H200"),
        ("1xA100-40GB", 1, "A100-40GB-SXM"),
        ("2xa100_80gb", 2, "A100-80GB-SXM"),
        ("2xA100-80GB-PCIe", 2, "A100-80GB-PCIe"),
        ("8xb200", 8, "B200"),
        ("l4", 1, "L4"),
        ("3xA10G", 3, "A10G"),
        ("2xA40", 2, "A40"),
        ("4090", 1, "RTX-4090"),
        ("2x4090", 2, "RTX-4090"),
        ("2xRTX4090", 2, "RTX-4090"),
        ("RTX PRO 6000", 1, "RTX-PRO-6000"),
        ("4xrtxpro6000", 4, "RTX-PRO-6000"),
        ("8xMI300X", 8, "MI300X"),
        ("mi300x", 1, "MI300X"),
        ("  4xH100-PCIe  ", 4, "H100-PCIe"),
    ],
)
def test_parse_gpus_accepts_counts_aliases_and_any_case(text, count, name):
    assert parse_gpus(text) == (count, GPUS[name])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0xA100", "at least 1"),
        ("-2xA100", "at least 1"),
        ("2.5xA100", "whole number"),
        ("xA100", "missing GPU count"),
        ("4x", "missing GPU name"),
        ("", "empty"),
        ("   ", "empty"),
        ("4xV100", "unknown GPU 'V100'"),
        ("4 A100", "unknown GPU"),
        # A QA pass: both were called an unknown GPU.
        ("1e3xH100", "GPU count '1e3': write it in digits (1000)"),
        ("H100x2", "the GPU count goes first: did you mean '2xH100'?"),
        ("V100x2", "unknown GPU 'V100x2'"),
    ],
)
def test_parse_gpus_errors_are_one_line_naming_the_flag_text_and_form(text, reason):
    with pytest.raises(SimreplayError) as info:
        parse_gpus(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--gpus {text!r}: ")
    assert reason in message
    assert message.endswith("(expected NxNAME, e.g. 4xA100)")


def test_unknown_gpu_lists_every_canonical_name():
    with pytest.raises(SimreplayError) as info:
        get_gpu("V100")
    message = str(info.value)
    assert message.startswith("unknown GPU 'V100'; known: ")
    for name in GPUS:
        assert name in message


def test_get_gpu_ignores_case_hyphens_underscores_and_spaces():
    expected = GPUS["H100-SXM"]
    for text in ("H100-SXM", "h100_sxm", "h100 sxm", "H100SXM", "h100"):
        assert get_gpu(text) is expected


def test_catalog_covers_the_required_gpus():
    assert REQUIRED_GPUS <= set(GPUS)


@pytest.mark.parametrize("gpu", list(GPUS.values()), ids=list(GPUS))
def test_every_gpu_has_positive_figures_and_a_source(gpu):
    assert gpu.peak_bf16_flops > 1e13
    assert gpu.peak_fp8_flops is None or gpu.peak_fp8_flops >= 1.9 * gpu.peak_bf16_flops
    assert gpu.hbm_bytes >= 16 * GIB
    assert gpu.hbm_bytes_per_s > 1e11
    assert gpu.link_bytes_per_s > 1e10
    assert 0 < gpu.usd_per_hour < 20
    assert any(word in gpu.source.lower() for word in ("datasheet", "data sheet", "whitepaper"))
    assert "indicative" in gpu.source and "2025" in gpu.source
    for alias in (gpu.name, *gpu.aliases):
        assert get_gpu(alias) is gpu


@pytest.mark.parametrize(
    ("name", "bf16_tflops", "fp8_tflops", "memory_gib", "hbm_tb_per_s", "link_gb_per_s"),
    [
        ("A100-80GB-SXM", 312, None, 80, 2.039, 300),
        ("A100-40GB-SXM", 312, None, 40, 1.555, 300),
        ("A100-80GB-PCIe", 312, None, 80, 1.935, 32),
        ("H100-SXM", 989, 1979, 80, 3.35, 450),
        ("H200", 989, 1979, 141, 4.8, 450),
        ("B200", 2250, 4500, 180, 8.0, 900),
        ("L40S", 362.05, 733, 48, 0.864, 32),
        ("MI300X", 1307.4, 2614.9, 192, 5.3, 448),
    ],
)
def test_datasheet_figures(name, bf16_tflops, fp8_tflops, memory_gib, hbm_tb_per_s, link_gb_per_s):
    gpu = GPUS[name]
    assert gpu.peak_bf16_flops == pytest.approx(bf16_tflops * 1e12)
    if fp8_tflops is None:
        assert gpu.peak_fp8_flops is None
    else:
        assert gpu.peak_fp8_flops == pytest.approx(fp8_tflops * 1e12)
    assert gpu.hbm_bytes == memory_gib * GIB
    assert gpu.hbm_bytes_per_s == pytest.approx(hbm_tb_per_s * 1e12)
    assert gpu.link_bytes_per_s == pytest.approx(link_gb_per_s * 1e9)


runner = CliRunner()


def test_hardware_list_prints_an_aligned_table():
    result = runner.invoke(hardware_app, ["list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["name", "aliases"]
    assert "$/h" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == list(GPUS)


def test_hardware_list_json_parses():
    result = runner.invoke(hardware_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)["gpus"]
    assert [r["name"] for r in records] == list(GPUS)
    a100 = records[[r["name"] for r in records].index("A100-80GB-SXM")]
    assert a100["peak_bf16_tflops"] == 312
    assert a100["peak_fp8_tflops"] is None
    assert a100["memory_gib"] == 80
    assert "A100" in a100["aliases"]


def test_hardware_list_through_a_parent_app():
    app = typer.Typer()
    app.add_typer(hardware_app, name="hardware")
    result = runner.invoke(app, ["hardware", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["gpus"]) == len(GPUS)
