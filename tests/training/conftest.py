"""Fixtures for training tests: tiny teachers built inside the tests (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.cyclegan import ResnetGenerator


def save_cyclegan(path: Path, ngf: int = 4, n_blocks: int = 2, affine: bool = False, seed: int = 0,
                  **kw) -> ResnetGenerator:
    """A random-weight CycleGAN generator saved in the standard key layout (``model.10.conv_block.1.weight``)."""
    torch.manual_seed(seed)
    g = ResnetGenerator(ngf, n_blocks, affine=affine, **kw).eval()
    torch.save(g.state_dict(), path)
    return g


@pytest.fixture
def cyclegan_teacher(tmp_path: Path) -> tuple[Path, ResnetGenerator]:
    p = tmp_path / "latest_net_G_A.pth"
    return p, save_cyclegan(p)


class ColourGrade(torch.nn.Module):
    """A smooth, learnable-by-a-student teacher: a fixed colour matrix plus a gentle vignette-free tone curve."""

    def __init__(self):
        super().__init__()
        self.register_buffer("m", torch.tensor([[0.9, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("ij,njhw->nihw", self.m, x)
        return (y ** 0.8).clamp(0, 1)


@pytest.fixture
def torchscript_teacher(tmp_path: Path) -> Path:
    p = tmp_path / "grade.pt"
    torch.jit.script(ColourGrade()).save(str(p))
    return p


@pytest.fixture(autouse=True)
def _one_thread():
    """Training tests run tiny tensors: one thread is faster and does not stall on a busy 2-core CI box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
