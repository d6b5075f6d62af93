import os

# PyTorch's OpenMP threads spin while they wait for work. On a 2-core machine that also runs
# segmentation, capture, encoding (and, on a shared machine, other programs), spinning threads take the
# cores that work needs, and every parallel region then waits for whichever of its threads lost its core:
# under load a torch.compile student call took 13 ms instead of 367 ms once its threads waited
# passively (see ARCHITECTURE.md). libgomp reads this when it loads, with torch, which the realtime modules import after
# this line; a value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
