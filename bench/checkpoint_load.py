"""Load time and peak memory of a Codon-NT-size checkpoint (random weights) in each layout.

    python bench/checkpoint_load.py

Writes the checkpoints into a temporary folder (HF safetensors; HF pytorch_model.bin if torch
is installed; InstaDeep's JAX joblib layout if joblib is installed), then loads each in a fresh
process. Peak memory is the growth of the process's peak resident set (VmHWM, reset just
before) over its resident set once jax and the package are imported and the CPU backend is
up (Linux).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

from _common import add_out_argument, environment, results_dir, write_result


def _status_bytes(field: str) -> int:
    """VmRSS (current) or VmHWM (peak) of this process, from /proc (Linux)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def load_one(path: str) -> dict:
    import jax
    import jax.numpy as jnp

    from codonnt_eqx import from_pretrained

    jax.block_until_ready(jnp.zeros(1) + 1)  # bring the backend up before the baseline
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to now
    baseline = _status_bytes("VmRSS")
    start = time.perf_counter()
    model, _ = from_pretrained(path)
    jax.block_until_ready(model)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_growth_bytes": _status_bytes("VmHWM") - baseline}


def write_checkpoints(folder: pathlib.Path) -> tuple[dict[str, pathlib.Path], int]:
    import jax
    import numpy as np

    sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "tests"))
    from codonnt_eqx import KmerTokenizer, NucleotideTransformer, preset, save_pretrained

    model = NucleotideTransformer(preset("codon_nt"), key=jax.random.key(0))
    tok = KmerTokenizer(3)
    weights = model.num_parameters() * 4
    layouts = {"hf-safetensors": folder / "hf"}
    save_pretrained(model, tok, layouts["hf-safetensors"])
    try:
        import torch
        from safetensors.numpy import load_file

        bin_dir = folder / "hf-bin"
        save_pretrained(model, tok, bin_dir)
        tensors = load_file(bin_dir / "model.safetensors")
        torch.save(
            {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()},
            bin_dir / "pytorch_model.bin",
        )
        (bin_dir / "model.safetensors").unlink()
        layouts["hf-pytorch-bin"] = bin_dir
    except ImportError:
        print("torch not installed: skipping pytorch_model.bin")
    try:
        from helpers import write_jax_layout

        write_jax_layout(model, folder / "jax")
        layouts["jax-joblib"] = folder / "jax"
    except ImportError:
        print("joblib not installed: skipping the JAX layout")
    return layouts, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    add_out_argument(parser, "checkpoint_load")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(load_one(args.one)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        layouts, weights = write_checkpoints(pathlib.Path(tmp))
        for name, path in layouts.items():
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(path)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = {"layout": name, **json.loads(out.strip().splitlines()[-1])}
            row["peak_over_weights"] = row["peak_growth_bytes"] / weights
            rows.append(row)
            print(
                f"{name:>15}: {row['seconds']:.2f} s, peak growth "
                f"{row['peak_growth_bytes'] / 2**20:,.0f} MiB = "
                f"{row['peak_over_weights']:.2f} x weights"
            )
    env = environment()
    result = {
        "command": " ".join(["python bench/checkpoint_load.py", *sys.argv[1:]]),
        "weights_bytes": weights,
        "rows": rows,
        "environment": env,
    }
    lines = [
        f"# Loading a Codon-NT-size checkpoint ({weights / 2**20:,.0f} MiB of float32 weights)",
        "",
        f"`{result['command']}`",
        "",
        "| layout | load s | peak memory growth MiB | x weights |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['layout']} | {r['seconds']:.2f} | {r['peak_growth_bytes'] / 2**20:,.0f} | "
        f"{r['peak_over_weights']:.2f} |"
        for r in rows
    ]
    lines += ["", f"Environment: `{env}`", ""]
    folder = results_dir(args.out, "checkpoint_load")
    print(f"wrote {write_result('checkpoint_load_cpu', result, chr(10).join(lines), folder)}")


if __name__ == "__main__":
    main()
