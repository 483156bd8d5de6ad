"""The accelerators we compile for without having them: names, topologies, device memory."""

from __future__ import annotations

import dataclasses
import importlib.resources
import importlib.util
import os
from typing import Literal

from jax.experimental import topologies

Platform = Literal["cuda", "tpu"]

# XLA's H100 SXM device description (openxla/xla, Apache-2.0; see the file's header).
_H100_SPEC = "h100_sxm.txtpb"
_GIB = 1 << 30


class AcceleratorUnavailableError(RuntimeError):
    """The compiler for a target is not installed here (its message says what to install)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A machine to compile for.

    - `name`: what users type (`TARGETS` keys).
    - `platform`: `"cuda"` or `"tpu"`, the lowering platform.
    - `topology`: the topology string of `jax.experimental.topologies.get_topology_desc`.
    - `memory_bytes`: memory of one device (HBM).
    - `usable_fraction`: the share of it a JAX process can use by default: 0.75 on GPUs, where
      JAX preallocates 75% of device memory (`XLA_PYTHON_CLIENT_MEM_FRACTION`, raise it to
      use more); the whole HBM on TPUs, whose compiler itself refuses a program that does not
      fit.
    """

    name: str
    platform: Platform
    topology: str
    memory_bytes: int
    usable_fraction: float
    description: str

    @property
    def usable_bytes(self) -> int:
        return int(self.memory_bytes * self.usable_fraction)

    @property
    def num_devices(self) -> int:
        shape = self.topology.rpartition(":")[2]
        count = 1
        for n in shape.split("x"):
            count *= int(n)
        return count


_H100_BYTES = 84_942_979_072  # device_memory_size of the H100 SXM description: 79.1 GiB
_V5E_BYTES = 16 * _GIB

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("h100", "cuda", "1x1x1", _H100_BYTES, 0.75, "one H100 SXM 80 GB"),
        Target("h100x8", "cuda", "1x2x4", _H100_BYTES, 0.75, "8 H100 SXM 80 GB, 2 hosts of 4"),
        Target("v5e", "tpu", "v5e:1x1", _V5E_BYTES, 1.0, "one TPU v5e chip (16 GiB)"),
        Target("v5e-4", "tpu", "v5e:2x2", _V5E_BYTES, 1.0, "TPU v5e 2x2 slice (4 chips)"),
        Target("v5e-8", "tpu", "v5e:2x4", _V5E_BYTES, 1.0, "TPU v5e 2x4 slice (8 chips)"),
    )
}

_INSTALL = {
    "cuda": "pip install 'codonnt-eqx[accelerators]' (jax-cuda12-plugin, jax-cuda12-pjrt and "
    "nvidia-cuda-nvcc-cu12 of the installed jax version)",
    "tpu": "pip install 'codonnt-eqx[accelerators]' (libtpu)",
}
_PLUGIN = {"cuda": "jax_plugins.xla_cuda12", "tpu": "libtpu"}


def target(name: str | Target) -> Target:
    """A `Target` by name (`TARGETS`), or the one given."""
    if isinstance(name, Target):
        return name
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; choose from {sorted(TARGETS)}") from None


def compiler_available(platform: Platform) -> bool:
    """Whether the compiler for `platform` is installed (without importing it)."""
    module = _PLUGIN[platform]
    parent = module.partition(".")[0]
    return importlib.util.find_spec(parent) is not None and (
        parent == module or importlib.util.find_spec(module) is not None
    )


def prepare_environment() -> None:
    """Settings a deviceless compile needs, set unless the caller set them: the CUDA plugin
    registers without a driver, and several JAX processes may load libtpu at once (they
    otherwise collide on its lock file). Only effective before JAX starts its backends."""
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def devices(name: str | Target) -> list:
    """The devices of `target`, described but absent, for `jax.ShapeDtypeStruct` shardings
    and meshes; `AcceleratorUnavailableError` if its compiler is not installed."""
    t = target(name)
    if not compiler_available(t.platform):
        raise AcceleratorUnavailableError(
            f"compiling for {t.name} needs the {t.platform} compiler: {_INSTALL[t.platform]}"
        )
    prepare_environment()
    if t.platform == "cuda":
        spec = (
            importlib.resources.files(__package__ or "codonnt_eqx.accelerators")
            .joinpath("specs", _H100_SPEC)
            .read_text()
        )
        topo = topologies.get_topology_desc("h100", "cuda", target_config=spec, topology=t.topology)
    else:
        topo = topologies.get_topology_desc(topology_name=t.topology, platform="tpu")
    found = list(topo.devices)
    if len(found) != t.num_devices:
        raise AcceleratorUnavailableError(
            f"{t.name}: expected {t.num_devices} devices, the compiler describes {len(found)}"
        )
    return found


def lowering_platform(device) -> Platform:
    return "tpu" if device.platform == "tpu" else "cuda"
