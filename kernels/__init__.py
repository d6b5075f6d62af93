"""Fused GPU kernels for stylecam, each with a torch reference that is its spec and CPU path.

* :mod:`kernels.reference` — the definitions: conditional instance norm, ``prepare``,
  ``composite``, ``masked_blur``, ``lut_delta`` (plain torch, any device).
* :mod:`kernels.triton_norm` — fused conditional instance norm in Triton.
* ``kernels/composite.cu`` — CUDA C frame kernels (compositing, a 3D LUT look's change); :mod:`kernels.cupy_ops` launches them
  with CuPy, :mod:`kernels.emu` runs the same source on the CPU (g++) for verification.
* :mod:`kernels.dispatch` — what the app calls: GPU kernels when they work, references otherwise,
  and a one-line reason saying which.
* :mod:`kernels.benchmarks` — timings and counted bytes moved; :mod:`kernels.check` — ``make kernels-check``.
* :mod:`kernels.provenance` — machine, versions and commit, recorded by every benchmark of the project.

This package knows nothing about frame sources, styles or Qt; importing it imports neither
Triton nor CuPy (those load on first use).
"""
