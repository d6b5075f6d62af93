"""Shared test set-up: headless Qt, deterministic torch, small thread counts on 2-core CI."""

import os

import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never touch the user's data, cache or settings: caches of measured CPU engines, user style packs.
_home = tempfile.mkdtemp(prefix="stylecam-test-home-")
for _var, _sub in (("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config")):
    os.environ[_var] = os.path.join(_home, _sub)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
