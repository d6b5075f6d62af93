"""Distil fast student generators from big teacher GANs into style packs.

Modules: :mod:`~training.teachers` (load any teacher as a callable), :mod:`~training.data`
(pictures, views, teacher-output cache), :mod:`~training.losses`, :mod:`~training.distill`
(the training loop), :mod:`~training.evaluate` (metrics written into ``pack.json``),
:mod:`~training.export` (ONNX), :mod:`~training.teacher_train` (CycleGAN teachers).
The live app never imports this package.
"""
