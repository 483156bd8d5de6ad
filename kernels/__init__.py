"""Attention kernels (Pallas, with a plain-JAX reference). Depends on jax alone."""
