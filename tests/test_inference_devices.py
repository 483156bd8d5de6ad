"""Embedding and scoring data parallel over several devices: the batch rows split evenly over
8 fake CPU devices (in a subprocess) give the one-device results; how rows are cut into
batches whose size the device count divides."""

import json
import os
import pathlib
import subprocess
import sys

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from codonnt_eqx.inference._batching import _split, data_mesh

WORKER = pathlib.Path(__file__).parent / "inference_worker.py"


@pytest.mark.slow
def test_eight_devices_embed_and_score_as_one_device_does(tmp_path):
    out = tmp_path / "results.npz"
    run = subprocess.run(
        [sys.executable, str(WORKER), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
        timeout=600,
        cwd=WORKER.parent,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["devices"] == 8
    # Every batch really was split: 8 shards on 8 devices, the same number of rows each.
    assert report["placed"]
    for rows, shards, devices, rows_per_shard in report["placed"]:
        assert (shards, devices, rows_per_shard) == (8, 8, [rows // 8]), (rows, rows_per_shard)
    r = np.load(out)
    assert r["one_num_devices"] == 1 and r["all_num_devices"] == 8
    assert all(r["all_rows"] % 8 == 0)
    # float32 throughout; the sharded batches have other shapes, so XLA may round differently.
    for name in ("pooled", "tokens"):
        np.testing.assert_allclose(r[f"all_{name}"], r[f"one_{name}"], atol=1e-5, rtol=1e-5)
    for name in ("pll", "variants"):
        np.testing.assert_allclose(r[f"all_{name}"], r[f"one_{name}"], atol=1e-5, rtol=1e-5)


@given(
    count=st.integers(0, 100),
    per_device=st.integers(1, 9),
    devices=st.sampled_from([1, 2, 3, 8]),
)
def test_batches_cover_every_row_once_padded_to_the_device_count(count, per_device, devices):
    members = np.arange(count) * 7
    full = per_device * devices
    parts = _split(members, full, devices)
    np.testing.assert_array_equal(np.concatenate([members[:0], *parts]), members)
    padded = [-(-len(p) // devices) * devices for p in parts]
    assert all(0 < len(p) <= full for p in parts)
    assert sum(padded) - count < devices  # fewer than one padding row per device
    for size in padded:  # full batches, or the device count times a power of two
        units = size // devices
        assert size == full or units & (units - 1) == 0
    if devices == 1:
        assert sum(padded) == count


def test_one_device_runs_unplaced_and_bad_device_counts_are_refused():
    import jax

    if jax.local_device_count() == 1:
        assert data_mesh(None) is None
    assert data_mesh(1) is None
    for bad in (0, jax.local_device_count() + 1, True, []):
        with pytest.raises(ValueError, match="devices"):
            data_mesh(bad)
