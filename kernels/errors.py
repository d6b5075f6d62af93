"""Errors raised by the kernel launchers and references.

``kernels`` sits below ``realtime`` and does not import it; callers that face users catch
:class:`KernelInputError` (a ``ValueError``) and re-raise their own error type if they need to.
"""

from __future__ import annotations


class KernelInputError(ValueError):
    """A tensor argument has the wrong dtype, device or shape, or a scalar is out of range.

    The message names the argument and what was expected, on one line.
    """
