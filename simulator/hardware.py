"""GPU catalog: peak FLOP/s, memory, bandwidths and an indicative price for each accelerator.

Sources (vendor documents; every figure below is a published peak, not a measurement)
------------------------------------------------------------------------------------
- NVIDIA A100 Tensor Core GPU datasheet (2021) and "NVIDIA A100 Tensor Core GPU
  Architecture" whitepaper (2020): A100 40GB/80GB, SXM4 and PCIe.
- NVIDIA H100 Tensor Core GPU datasheet (2022/2023) and "NVIDIA H100 Tensor Core GPU
  Architecture" whitepaper: H100 SXM5 and H100 PCIe.
- NVIDIA H200 Tensor Core GPU datasheet (2024): H200 SXM.
- NVIDIA DGX B200 datasheet and HGX B200 specifications (2024/2025): B200 as shipped in
  8-GPU HGX/DGX boards (1,440 GB and 64 TB/s per 8 GPUs, 1,000 W).
- NVIDIA GB200 NVL72 datasheet (2024/2025): the Blackwell GPUs of GB200 superchips, 72 to
  a rack on one NVLink domain (1,200 W).
- NVIDIA L40S datasheet (2023), NVIDIA L4 datasheet (2023), NVIDIA A40 datasheet (2021).
- NVIDIA Ada Lovelace GPU architecture whitepaper (v1.1): GeForce RTX 4090.
- NVIDIA RTX PRO 6000 Blackwell Server Edition product page and datasheet (2025).
- AMD Instinct MI300X data sheet (2023) and AMD CDNA 3 architecture whitepaper.
- A10G: an AWS-only part with no NVIDIA datasheet; figures from the Amazon EC2 G5 instance
  documentation and NVIDIA's A10 datasheet (same GA102 memory system).
- L2 size, SM count and boost clock (``l2_bytes``, ``sm_count``, ``boost_clock_hz``; used
  only by the calibration transfer, ``calibration.profile.transfer_scale``): the documents
  above and NVIDIA's Ampere GA102 and Ada Lovelace whitepapers, as each entry's comment
  says; a figure no source at hand gives is left None (B200's L2 and clock, GB200,
  A10G's clock, MI300X), and third-party spec listings (TechPowerUp) are named where used.

Conventions
-----------
- FLOP/s are dense tensor-core peaks. Datasheets usually headline the 2:4-sparsity figure;
  every number here is that figure halved where the datasheet gives only the sparse one.
  BF16 means BF16 inputs with FP32 accumulation, the mode vLLM's GEMMs use (this halves the
  GeForce RTX 4090 and the A10G relative to FP16 accumulation).
- Memory capacity is binary: an "80 GB" HBM part carries 80 x 2**30 bytes, which is what
  the driver reports (to within about 1 %) and what vLLM multiplies by
  ``gpu_memory_utilization``. GDDR parts with ECC enabled report a few percent less.
- Nodes: every GPU here but the GB200 (an NVL72 rack: 72 GPUs on one NVLink fabric) comes
  in servers of 8 (``gpus_per_node``) joined by a network of
  ``network_bytes_per_s`` per GPU and direction, the figures of NVIDIA AIConfigurator's
  system files (``../shared/calibration-data/aiconfigurator/systems/*.yaml``,
  ``num_gpus_per_node`` and ``inter_node_bw``) where it has one, else as each entry says.
- Bandwidths are decimal (1 TB/s = 1e12 bytes/s). ``link_bytes_per_s`` is per direction:
  NVLink's and Infinity Fabric's advertised totals are bidirectional and are halved here;
  GPUs without a switched fabric use PCIe x16 (Gen4: 32 GB/s, Gen5: 64 GB/s per direction),
  because NVLink bridges on PCIe cards join only pairs of GPUs.
- $/GPU-hour is indicative only: public cloud on-demand list prices seen in 2025, per GPU,
  from the providers named in each entry. Prices vary by provider, region and commitment;
  pass your own for real cost studies.
"""

from __future__ import annotations

import re

from simulator.errors import SimreplayError
from simulator.specs import GPUSpec

TERA = 1e12
GIGA = 1e9
GIB = float(2**30)
MIB = float(2**20)
MEGA = 1e6

_PRICE = "price indicative: public cloud on-demand list prices, 2025"

#: L2, SMs and boost clock of every A100 part: "NVIDIA A100 Tensor Core GPU Architecture"
#: whitepaper (2020): 40 MB L2, 108 SMs, 1,410 MHz (also NVIDIA's ISSCC 2021 A100 paper;
#: CUDA's deviceQuery reports 41,943,040 bytes of L2).
_GA100_CACHE = {"l2_bytes": 40 * MIB, "sm_count": 108, "boost_clock_hz": 1410 * MEGA}

#: Canonical name -> spec. Plain dict registry; order is the order of ``hardware list``.
GPUS: dict[str, GPUSpec] = {
    spec.name: spec
    for spec in (
        GPUSpec(
            name="A100-40GB-SXM",
            peak_bf16_flops=312 * TERA,
            peak_fp8_flops=None,
            hbm_bytes=40 * GIB,
            hbm_bytes_per_s=1555 * GIGA,
            link_bytes_per_s=300 * GIGA,  # NVLink 3: 600 GB/s bidirectional
            # AIConfigurator a100_sxm.yaml: one 200 Gb/s ConnectX-6 per GPU
            network_bytes_per_s=25 * GIGA,
            usd_per_hour=1.29,
            aliases=("A100-40GB", "A100-SXM-40GB", "A100-SXM4-40GB"),
            **_GA100_CACHE,
            source="NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, "
            "40 GB HBM2 at 1,555 GB/s, NVLink 600 GB/s; "
            f"{_PRICE} (Lambda, Google Cloud a2-highgpu)",
        ),
        GPUSpec(
            name="A100-80GB-SXM",
            peak_bf16_flops=312 * TERA,
            peak_fp8_flops=None,
            hbm_bytes=80 * GIB,
            hbm_bytes_per_s=2039 * GIGA,
            link_bytes_per_s=300 * GIGA,
            # AIConfigurator a100_sxm.yaml: one 200 Gb/s ConnectX-6 per GPU
            network_bytes_per_s=25 * GIGA,
            usd_per_hour=1.79,
            aliases=("A100", "A100-80GB", "A100-SXM", "A100-SXM-80GB", "A100-SXM4-80GB"),
            **_GA100_CACHE,
            source="NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, "
            "80 GB HBM2e at 2,039 GB/s, NVLink 600 GB/s; "
            f"{_PRICE} (Lambda, RunPod; hyperscalers list about 2-3x more)",
        ),
        GPUSpec(
            name="A100-40GB-PCIe",
            peak_bf16_flops=312 * TERA,
            peak_fp8_flops=None,
            hbm_bytes=40 * GIB,
            hbm_bytes_per_s=1555 * GIGA,
            link_bytes_per_s=32 * GIGA,  # PCIe Gen4 x16: 64 GB/s bidirectional
            network_bytes_per_s=25 * GIGA,  # AIConfigurator a100_pcie.yaml: 1:1 200 Gb/s fabric
            usd_per_hour=1.29,
            aliases=("A100-PCIe-40GB",),
            **_GA100_CACHE,
            source="NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, "
            "40 GB HBM2 at 1,555 GB/s, PCIe Gen4 64 GB/s (NVLink bridge joins pairs only); "
            f"{_PRICE} (Lambda)",
        ),
        GPUSpec(
            name="A100-80GB-PCIe",
            peak_bf16_flops=312 * TERA,
            peak_fp8_flops=None,
            hbm_bytes=80 * GIB,
            hbm_bytes_per_s=1935 * GIGA,
            link_bytes_per_s=32 * GIGA,
            network_bytes_per_s=25 * GIGA,  # AIConfigurator a100_pcie.yaml: 1:1 200 Gb/s fabric
            usd_per_hour=1.64,
            aliases=("A100-PCIe", "A100-PCIe-80GB"),
            **_GA100_CACHE,
            source="NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, "
            "80 GB HBM2e at 1,935 GB/s, PCIe Gen4 64 GB/s (NVLink bridge joins pairs only); "
            f"{_PRICE} (RunPod, Azure NC A100 v4)",
        ),
        GPUSpec(
            name="H100-SXM",
            peak_bf16_flops=989 * TERA,
            peak_fp8_flops=1979 * TERA,
            hbm_bytes=80 * GIB,
            hbm_bytes_per_s=3350 * GIGA,
            link_bytes_per_s=450 * GIGA,  # NVLink 4: 900 GB/s bidirectional
            # AIConfigurator h100_sxm.yaml: one 400 Gb/s ConnectX-7 NDR per GPU
            network_bytes_per_s=50 * GIGA,
            usd_per_hour=2.99,
            aliases=("H100", "H100-80GB", "H100-SXM5", "H100-SXM-80GB"),
            # L2, SMs: NVIDIA H100 datasheet / Hopper whitepaper: 50 MB L2, 132 SMs (SXM5).
            # Clock: 1,830 MHz, the one its 989 TFLOPS dense BF16 is counted at (132 SMs x
            # 4,096 FLOP per clock; 1.98 GHz is the maximum boost for other work)
            l2_bytes=50 * MIB,
            sm_count=132,
            boost_clock_hz=1830 * MEGA,
            source="NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 / FP8 3,958 TFLOPS with "
            "sparsity (989 / 1,979 dense), 80 GB HBM3 at 3.35 TB/s, NVLink 900 GB/s; "
            f"{_PRICE} (Lambda, RunPod; AWS p5 and Google a3 list more)",
        ),
        GPUSpec(
            name="H100-PCIe",
            peak_bf16_flops=756 * TERA,
            peak_fp8_flops=1513 * TERA,
            hbm_bytes=80 * GIB,
            hbm_bytes_per_s=2000 * GIGA,
            link_bytes_per_s=64 * GIGA,  # PCIe Gen5 x16: 128 GB/s bidirectional
            network_bytes_per_s=50 * GIGA,  # AIConfigurator h100_pcie.yaml: 1:1 400 Gb/s fabric
            usd_per_hour=2.49,
            aliases=("H100-PCIe-80GB",),
            # L2, SMs: NVIDIA H100 datasheet / Hopper whitepaper (H100 PCIe): 50 MB L2, 114 SMs.
            # Clock: 1,620 MHz, the one its 756 TFLOPS dense BF16 is counted at (114 SMs x
            # 4,096 FLOP per clock; Chips and Cheese saw a 1,755 MHz maximum in nvidia-smi)
            l2_bytes=50 * MIB,
            sm_count=114,
            boost_clock_hz=1620 * MEGA,
            source="NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe): BF16 1,513 / FP8 3,026 "
            "TFLOPS with sparsity (756 / 1,513 dense), 80 GB HBM2e at 2.0 TB/s, PCIe Gen5 "
            f"128 GB/s (NVLink bridge joins pairs only); {_PRICE} (Lambda)",
        ),
        GPUSpec(
            name="H200",
            peak_bf16_flops=989 * TERA,
            peak_fp8_flops=1979 * TERA,
            hbm_bytes=141 * GIB,
            hbm_bytes_per_s=4800 * GIGA,
            link_bytes_per_s=450 * GIGA,
            # AIConfigurator h200_sxm.yaml: one 400 Gb/s ConnectX-7 NDR per GPU
            network_bytes_per_s=50 * GIGA,
            usd_per_hour=3.79,
            aliases=("H200-SXM", "H200-141GB"),
            # L2, SMs, clock: the H100 SXM's (one GH100 configuration with HBM3e; the H200
            # datasheet gives the same compute peaks but no L2 or SM count)
            l2_bytes=50 * MIB,
            sm_count=132,
            boost_clock_hz=1830 * MEGA,
            source="NVIDIA H200 Tensor Core GPU datasheet (H200 SXM): same compute as H100 SXM "
            "(BF16 989 / FP8 1,979 TFLOPS dense), 141 GB HBM3e at 4.8 TB/s, NVLink 900 GB/s; "
            f"{_PRICE} (RunPod, Nebius, CoreWeave)",
        ),
        GPUSpec(
            name="B200",
            peak_bf16_flops=2250 * TERA,
            peak_fp8_flops=4500 * TERA,
            hbm_bytes=180 * GIB,
            hbm_bytes_per_s=8000 * GIGA,
            link_bytes_per_s=900 * GIGA,  # NVLink 5: 1.8 TB/s bidirectional
            # AIConfigurator b200_sxm.yaml: one 800 Gb/s ConnectX-8 XDR per GPU
            network_bytes_per_s=100 * GIGA,
            usd_per_hour=4.99,
            aliases=("B200-SXM", "B200-180GB", "HGX-B200"),
            # SMs: 148 (2 dies of 74; Chips and Cheese, "Nvidia's B200", 2025). No NVIDIA
            # document at hand gives its L2 size or boost clock: left unknown, so transfers to
            # and from B200 price every byte at DRAM rate.
            sm_count=148,
            source="NVIDIA DGX B200 datasheet / HGX B200 specifications: 8 GPUs give 36 PFLOPS "
            "BF16 and 72 PFLOPS FP8 with sparsity (2.25 / 4.5 PFLOPS dense per GPU), 1,440 GB "
            "HBM3e at 64 TB/s (180 GB at 8 TB/s per GPU), NVLink 5 1.8 TB/s per GPU; "
            f"{_PRICE} (Lambda, RunPod)",
        ),
        GPUSpec(
            name="GB200",
            peak_bf16_flops=2500 * TERA,
            peak_fp8_flops=5000 * TERA,
            hbm_bytes=186 * GIB,
            hbm_bytes_per_s=8000 * GIGA,
            link_bytes_per_s=900 * GIGA,  # NVLink 5: 1.8 TB/s bidirectional
            # AIConfigurator gb200.yaml inter_rack_bw: one 800 Gb/s ConnectX-8 XDR per GPU
            network_bytes_per_s=100 * GIGA,
            # An NVL72 rack: 72 GPUs on one NVLink switch fabric (the "server" TP may span).
            gpus_per_node=72,
            usd_per_hour=10.50,
            aliases=("GB200-NVL72", "GB200-186GB"),
            source="NVIDIA GB200 NVL72 datasheet: per Blackwell GPU of a GB200 superchip, "
            "BF16 2.5 / FP8 5 PFLOPS dense, 186 GB HBM3e (13.4 TB per 72 GPUs) at 8 TB/s, "
            "NVLink 5 1.8 TB/s, 72 GPUs in one NVLink domain (AIConfigurator gb200.yaml: the "
            "same peaks, 189,471 MiB seen by nvidia-smi); price indicative: CoreWeave's "
            "GB200 NVL72 list price, $42.00/hour per 4-GPU instance (2025)",
        ),
        GPUSpec(
            name="L40S",
            peak_bf16_flops=362.05 * TERA,
            peak_fp8_flops=733 * TERA,
            hbm_bytes=48 * GIB,
            hbm_bytes_per_s=864 * GIGA,
            link_bytes_per_s=32 * GIGA,
            # AIConfigurator l40s.yaml: one 400 Gb/s ConnectX-7 per GPU
            network_bytes_per_s=50 * GIGA,
            usd_per_hour=0.86,
            aliases=("L40S-48GB",),
            # SMs, clock: NVIDIA L40S datasheet (18,176 CUDA cores, 142 RT cores: 142 SMs),
            # 2,520 MHz boost (TechPowerUp listing). L2: 96 MB, AD102's full L2 (Ada Lovelace
            # whitepaper: 98,304 KB); the datasheet omits it and a TechPowerUp listing says
            # 48 MB, which AIConfigurator's L40S data rules out (67 MB decode-attention reads
            # at 1.8 TB/s, twice the DRAM's 864 GB/s, are L2 reads)
            l2_bytes=96 * MIB,
            sm_count=142,
            boost_clock_hz=2520 * MEGA,
            source="NVIDIA L40S datasheet (2023): BF16 362.05 / FP8 733 TFLOPS dense (733 / "
            "1,466 with sparsity), 48 GB GDDR6 at 864 GB/s, PCIe Gen4 x16, no NVLink; "
            f"{_PRICE} (RunPod, AWS g6e)",
        ),
        GPUSpec(
            name="L4",
            peak_bf16_flops=121 * TERA,
            peak_fp8_flops=242.5 * TERA,
            hbm_bytes=24 * GIB,
            hbm_bytes_per_s=300 * GIGA,
            link_bytes_per_s=32 * GIGA,
            network_bytes_per_s=25 * GIGA,  # AIConfigurator l4.yaml: 1:1 200 Gb/s fabric
            usd_per_hour=0.55,
            aliases=("L4-24GB",),
            # SMs: NVIDIA L4 datasheet, 7,424 CUDA cores (58 SMs of 128). L2: AD104's 48 MB
            # (Ada Lovelace whitepaper). Clock: 2,040 MHz boost (TechPowerUp listing)
            l2_bytes=48 * MIB,
            sm_count=58,
            boost_clock_hz=2040 * MEGA,
            source="NVIDIA L4 Tensor Core GPU datasheet (2023): BF16 242 / FP8 485 TFLOPS with "
            "sparsity (121 / 242.5 dense), 24 GB GDDR6 at 300 GB/s, PCIe Gen4 x16; "
            f"{_PRICE} (Google Cloud g2, AWS g6, RunPod)",
        ),
        GPUSpec(
            name="A10G",
            peak_bf16_flops=70 * TERA,
            peak_fp8_flops=None,
            hbm_bytes=24 * GIB,
            hbm_bytes_per_s=600 * GIGA,
            link_bytes_per_s=32 * GIGA,
            network_bytes_per_s=1.5625 * GIGA,  # Amazon EC2 g5.48xlarge: 100 Gb/s for its 8 GPUs
            usd_per_hour=1.01,
            aliases=("A10G-24GB",),
            # L2: GA102's 6 MB (NVIDIA Ampere GA102 whitepaper: 12 x 512 KB); SMs: 80 (above).
            # No published boost clock for this AWS part: its L2 rate is left unknown, so
            # transfers to A10G price every byte at DRAM rate.
            l2_bytes=6 * MIB,
            sm_count=80,
            source="AWS-only GA102 part, no NVIDIA datasheet: Amazon EC2 G5 documentation and "
            "public A10 vs A10G comparisons give 80 SMs, BF16 about 70 TFLOPS dense with FP32 "
            "accumulate (uncertain), 24 GB GDDR6 at 600 GB/s as on the NVIDIA A10 datasheet, "
            f"PCIe Gen4 x16; {_PRICE} (AWS g5.xlarge on-demand, us-east-1)",
        ),
        GPUSpec(
            name="A40",
            peak_bf16_flops=149.7 * TERA,
            peak_fp8_flops=None,
            hbm_bytes=48 * GIB,
            hbm_bytes_per_s=696 * GIGA,
            link_bytes_per_s=32 * GIGA,
            # assumed: a 1:1 200 Gb/s fabric, as AIConfigurator's PCIe systems
            network_bytes_per_s=25 * GIGA,
            usd_per_hour=0.40,
            aliases=("A40-48GB",),
            # L2: GA102's 6 MB (NVIDIA Ampere GA102 whitepaper); SMs: 84 (A40 datasheet:
            # 10,752 CUDA cores, 84 RT cores); clock: 1,740 MHz boost (TechPowerUp listing)
            l2_bytes=6 * MIB,
            sm_count=84,
            boost_clock_hz=1740 * MEGA,
            source="NVIDIA A40 datasheet (2021): BF16 149.7 TFLOPS dense (299.4 with sparsity), "
            "48 GB GDDR6 at 696 GB/s, PCIe Gen4 64 GB/s (NVLink bridge 112.5 GB/s joins pairs "
            f"only); {_PRICE} (RunPod, Paperspace)",
        ),
        GPUSpec(
            name="RTX-4090",
            peak_bf16_flops=165.2 * TERA,
            peak_fp8_flops=330.3 * TERA,
            hbm_bytes=24 * GIB,
            hbm_bytes_per_s=1008 * GIGA,
            link_bytes_per_s=32 * GIGA,
            # assumed: a 1:1 200 Gb/s fabric, as AIConfigurator's PCIe systems
            network_bytes_per_s=25 * GIGA,
            usd_per_hour=0.69,
            aliases=("4090", "RTX4090", "GeForce-RTX-4090"),
            # L2, SMs, clock: NVIDIA Ada Lovelace whitepaper (v1.1), RTX 4090: 72 MB L2 (of
            # AD102's 96 MB), 128 SMs, 2,520 MHz boost
            l2_bytes=72 * MIB,
            sm_count=128,
            boost_clock_hz=2520 * MEGA,
            source="NVIDIA Ada Lovelace GPU architecture whitepaper (RTX 4090): BF16 165.2 / "
            "FP8 330.3 TFLOPS dense with FP32 accumulate, 24 GB GDDR6X at 1,008 GB/s, "
            f"PCIe Gen4 x16, no NVLink or peer-to-peer; {_PRICE} (RunPod, Vast.ai)",
        ),
        GPUSpec(
            name="RTX-PRO-6000",
            peak_bf16_flops=500 * TERA,
            peak_fp8_flops=1000 * TERA,
            hbm_bytes=96 * GIB,
            hbm_bytes_per_s=1597 * GIGA,
            link_bytes_per_s=64 * GIGA,
            # AIConfigurator rtx_pro_6000_server.yaml: 400 Gb/s per GPU
            network_bytes_per_s=50 * GIGA,
            usd_per_hour=1.79,
            aliases=("RTXPRO6000", "RTX-PRO-6000-Blackwell", "RTX-PRO-6000-BSE", "PRO6000"),
            # L2, SMs: NVIDIA RTX PRO 6000 Blackwell launch material (GTC 2025): GB202's full
            # 128 MB L2, 188 SMs (24,064 CUDA cores). Clock: NVIDIA publishes none; 2.6 GHz is
            # what its 125 TFLOPS FP32 over 2 x 24,064 FLOP per clock implies
            l2_bytes=128 * MIB,
            sm_count=188,
            boost_clock_hz=125 * TERA / (2 * 24064),
            source="NVIDIA RTX PRO 6000 Blackwell Server Edition product page and datasheet: "
            "FP16/BF16 1 PFLOPS and FP8 2 PFLOPS with sparsity (about 0.5 / 1.0 PFLOPS dense; "
            "NVIDIA publishes no dense BF16 figure), 96 GB GDDR7 at 1,597 GB/s, PCIe Gen5 x16; "
            f"{_PRICE} (RunPod, AWS g7e)",
        ),
        GPUSpec(
            name="MI300X",
            peak_bf16_flops=1307.4 * TERA,
            peak_fp8_flops=2614.9 * TERA,
            hbm_bytes=192 * GIB,
            hbm_bytes_per_s=5300 * GIGA,
            # 7 Infinity Fabric links x 64 GB/s per direction, all used by an 8-GPU ring;
            # a single pair of GPUs shares one link (64 GB/s).
            link_bytes_per_s=448 * GIGA,
            # assumed: one 400 Gb/s NIC per GPU, as AIConfigurator's H100 systems
            network_bytes_per_s=50 * GIGA,
            usd_per_hour=2.49,
            vendor="AMD",
            aliases=("Instinct-MI300X", "AMD-MI300X"),
            # No L2 figures: CDNA 3's caches (4 MB L2 per XCD, 256 MB Infinity Cache; AMD CDNA 3
            # whitepaper) are not priced by the NVIDIA per-SM L2 rate the transfer uses, so
            # transfers to MI300X price every byte at DRAM rate.
            source="AMD Instinct MI300X data sheet (2023): BF16 1,307.4 / FP8 2,614.9 TFLOPS "
            "dense, 192 GB HBM3 at 5.3 TB/s, 7 Infinity Fabric links of 128 GB/s "
            "(896 GB/s peer aggregate, bidirectional); "
            f"{_PRICE} (RunPod, Vultr, TensorWave)",
        ),
    )
}


def _key(name: str) -> str:
    """Lookup key: case, hyphens, underscores and spaces do not matter."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def _build_lookup(gpus: dict[str, GPUSpec]) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for spec in gpus.values():
        for name in (spec.name, *spec.aliases):
            key = _key(name)
            if lookup.setdefault(key, spec.name) != spec.name:
                raise ValueError(f"GPU alias {name!r} names both {lookup[key]} and {spec.name}")
    return lookup


_LOOKUP = _build_lookup(GPUS)

_GPUS_FORM = "expected NxNAME, e.g. 4xA100"
_GPUS_PATTERN = re.compile(
    r"\s*([+-]?[0-9][0-9.]*(?:e[+-]?[0-9]+)?)\s*[x×*]\s*(.*?)\s*", re.IGNORECASE
)
#: ``H100x2``: the count after the name.
_COUNT_LAST = re.compile(r"\s*(.*?\S)\s*[x×*]\s*([0-9]+)\s*", re.IGNORECASE)
_MISSING_COUNT = re.compile(r"\s*[x×*]\s*\S.*", re.IGNORECASE)


def known_gpu_names() -> str:
    """The canonical names, comma-separated, for error messages."""
    return ", ".join(GPUS)


def canonical_spelling(name: str) -> str:
    """``name`` as the catalog writes it (``l40s`` -> ``L40S``, ``h100-sxm`` -> ``H100-SXM``):
    the canonical name or alias it matches; ``SimreplayError`` for an unknown name."""
    gpu = get_gpu(name)
    for written in (gpu.name, *gpu.aliases):
        if _key(written) == _key(name):
            return written
    return gpu.name


def get_gpu(name: str) -> GPUSpec:
    """Look up a GPU by canonical name or alias, ignoring case, ``-``, ``_`` and spaces.

    Parameters
    ----------
    name : str
        E.g. ``"A100"``, ``"h100-sxm"``, ``"RTX PRO 6000"``.

    Returns
    -------
    GPUSpec

    Raises
    ------
    SimreplayError
        For an unknown name; the message lists the canonical names.
    """
    canonical = _LOOKUP.get(_key(name))
    if canonical is None:
        raise SimreplayError(f"unknown GPU {name.strip()!r}; known: {known_gpu_names()}")
    return GPUS[canonical]


#: The most GPUs a scenario may have: above the largest training clusters (~100k GPUs), and
#: what one machine can hold the engine state of (each replica keeps its own arrays).
MAX_GPUS = 100_000


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_gpus(text: str) -> tuple[int, GPUSpec]:
    """Parse the ``--gpus`` value ``NxNAME`` into a GPU count and a spec.

    ``4xA100``, ``8xH100``, ``2xl40s`` and ``4 x A100`` are accepted; ``NAME`` alone means one
    GPU. The separator may be ``x``, ``X``, ``*`` or ``×``.

    Parameters
    ----------
    text : str
        The option value as typed.

    Returns
    -------
    num_gpus : int
        At least 1.
    gpu : GPUSpec

    Raises
    ------
    SimreplayError
        One line naming ``--gpus``, the text and the expected form, for a count that is
        missing, not a whole number or below 1, a missing name, or an unknown name.
    """

    def fail(reason: str) -> SimreplayError:
        return SimreplayError(f"--gpus {text!r}: {reason} ({_GPUS_FORM})")

    if not text.strip():
        raise fail("empty value")
    if "," in text:  # "4xA100,2xH100" was read as the unknown GPU "A100,2xH100"
        raise fail("one fleet here; compare fleets with simreplay sweep --gpus A,B")
    match = _GPUS_PATTERN.fullmatch(text)
    if match is None:
        if _MISSING_COUNT.fullmatch(text):
            raise fail("missing GPU count before 'x'")
        count, name = 1, text.strip()
    else:
        count_text, name = match.groups()
        if not re.fullmatch(r"[+-]?\d+", count_text):
            value = _float_or_none(count_text)
            if value is not None and value.is_integer() and "e" in count_text.lower():
                raise fail(f"GPU count {count_text!r}: write it in digits ({int(value)})")
            raise fail(f"GPU count {count_text!r} is not a whole number")
        count = int(count_text)
        if count < 1:
            raise fail(f"GPU count must be at least 1, got {count}")
        if count > MAX_GPUS:
            raise fail(f"GPU count must be at most {MAX_GPUS:,}, got {count:,}")
        if not name:
            raise fail("missing GPU name after the count")
    try:
        gpu = get_gpu(name)
    except SimreplayError as exc:
        swapped = _COUNT_LAST.fullmatch(text) if match is None else None
        if swapped is not None and _key(swapped.group(1)) in _LOOKUP:
            # A user wrote the count last (H100x2): say the form, not "unknown GPU".
            hint = f"{int(swapped.group(2))}x{swapped.group(1)}"
            raise fail(f"the GPU count goes first: did you mean {hint!r}?") from None
        raise fail(str(exc)) from None
    return count, gpu
