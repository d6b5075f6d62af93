"""Benchmarks of the live pipeline and its parts; each prints JSON with :func:`kernels.provenance.provenance`.

* :mod:`realtime.benchmarks.pipeline` — end to end (``stylecam bench``, ``make bench``);
* :mod:`realtime.benchmarks.sources` — frame decoding and the latest-frame hand-off;
* :mod:`realtime.benchmarks.recorder` — colour conversion, encoding and muxing;
* :mod:`realtime.benchmarks.segmentation` — segmentation per frame and its parts.

The live modules never import this package (``tests/test_layering.py`` checks it).
"""
