"""Load the Triton kernels in Triton's CPU interpreter, inside any process.

``triton.jit`` decides between compiling and interpreting when a kernel is *decorated*, from
``TRITON_INTERPRET``. Rather than setting that variable for a whole process (which must happen
before anything imports the kernels, and would change every other Triton user in it), this
loads a separate copy of :mod:`kernels.triton_norm` with the variable set only while the copy
executes. The copy's kernels run on CPU tensors; the normal module is untouched, so a CUDA
machine can test both in one ``pytest`` run.

Example::

    tn = load_interpreted_triton_norm()
    y = tn.cond_instance_norm(x_cpu, gamma, beta, idx, act="leaky")
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

_NAME = "kernels._triton_norm_interpreted"


@functools.lru_cache(maxsize=1)
def load_interpreted_triton_norm() -> ModuleType:
    """A copy of :mod:`kernels.triton_norm` whose kernels run in the Triton interpreter."""
    path = Path(__file__).with_name("triton_norm.py")
    spec = importlib.util.spec_from_file_location(_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        sys.modules[_NAME] = module  # triton resolves globals of jitted functions through the module
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(_NAME, None)
        raise
    finally:
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old
    return module
