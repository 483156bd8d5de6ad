import os

# Deviceless GPU/TPU compiles (tests/test_accelerator_compile.py): the CUDA plugin registers
# without a driver, and the test processes may all load libtpu (its lock file otherwise lets one
# in). Set before JAX starts any backend.
os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
# Nothing downloads in tests: a Hub id is read from a cache the test builds (or a stubbed hub).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hypothesis  # noqa: E402
import jax  # noqa: E402
import pytest  # noqa: E402

hypothesis.settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
hypothesis.settings.register_profile("dev", deadline=None, max_examples=40)
hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module. Every executable holds memory
    maps, and one process running the whole suite otherwise approaches the kernel's limit
    (vm.max_map_count, 65,530), where LLVM fails with "Cannot allocate memory"."""
    yield
    jax.clear_caches()
