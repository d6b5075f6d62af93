"""CycleGAN networks in the pytorch-CycleGAN-and-pix2pix module layout.

The generator's ``state_dict`` keys match ``latest_net_G_A.pth`` files of that project
(``model.1.weight``, ``model.10.conv_block.1.weight``, …), so checkpoints written by
:mod:`training.teacher_train` load with :func:`training.teachers.load_teacher`, and so do the
project's own published checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class ResnetBlock(nn.Module):
    """``x + conv_block(x)``; ``conv_block`` = pad, conv, norm, ReLU, [dropout], pad, conv, norm."""

    def __init__(self, dim: int, affine: bool = False, use_dropout: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=not affine),
                                   nn.InstanceNorm2d(dim, affine=affine), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=not affine), nn.InstanceNorm2d(dim, affine=affine)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN generator: c7s1-ngf, two stride-2 downs, ``n_blocks`` residual blocks, two transposed-conv ups.

    Shape:
        x: ``[N, 3, H, W]`` in [-1, 1] (H, W multiples of 4); output likewise (tanh).
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9, affine: bool = False, use_dropout: bool = False):
        super().__init__()
        bias = not affine  # the original uses conv biases exactly when the norm has no affine part
        model: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=bias),
                                  nn.InstanceNorm2d(ngf, affine=affine), nn.ReLU(True)]
        for i in range(2):
            m = 2 ** i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=bias),
                      nn.InstanceNorm2d(ngf * m * 2, affine=affine), nn.ReLU(True)]
        for _ in range(n_blocks):
            model.append(ResnetBlock(ngf * 4, affine, use_dropout))
        for i in range(2):
            m = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1, bias=bias),
                      nn.InstanceNorm2d(ngf * m // 2, affine=affine), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """70×70 PatchGAN (``n_layers`` = 3), instance norm, LeakyReLU 0.2 — the CycleGAN discriminator.

    Shape:
        x: ``[N, 3, H, W]`` in [-1, 1]; returns patch logits ``[N, 1, h, w]``.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=True), nn.InstanceNorm2d(ndf * mult),
                    nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=True), nn.InstanceNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
