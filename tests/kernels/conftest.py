"""Where the Triton interpreter tests run.

Triton chooses between compiling and interpreting when it is *imported* (its standard library
is decorated then), so ``TRITON_INTERPRET=1`` must be set before anything in the process imports
triton. Setting it from a conftest is fragile (another test module, or torch itself, may have
imported triton first) and would change Triton for every other test. Instead:

* ``test_triton_norm.py`` holds the interpreter tests. It is collected only in a process that
  already has ``TRITON_INTERPRET=1`` (e.g. ``TRITON_INTERPRET=1 pytest -m interpreter``).
* ``test_interpreter_subprocess.py`` runs it in a child ``pytest`` with the variable set, and is
  collected only when the variable is *not* set, so a plain ``pytest`` (``make test``) runs the
  interpreter tests exactly once, on any machine, and nothing is skipped.
"""

import os

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    # test_triton_compile.py builds CUBINs from the compiled (not interpreted) kernels.
    collect_ignore = ["test_interpreter_subprocess.py", "test_triton_compile.py"]
else:
    collect_ignore = ["test_triton_norm.py"]
