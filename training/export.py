"""Export a style pack's student to ONNX for other runtimes.

The exported graph takes ``image`` ``[1, 3, H, W]`` float RGB in [0, 1] and ``style_weights``
``[S]`` (one-hot for one style, any non-negative weights summing to 1 for a blend) and returns
``stylized`` ``[1, 3, H, W]`` in [0, 1]. H and W are dynamic unless ``size`` fixes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from realtime.errors import InputError
from realtime.styles import load_pack


class ExportError(InputError):
    """The pack cannot be exported (bad output path, export failure)."""


class _OnnxWrapper(nn.Module):
    """Student with a ``[S]`` style vector input, as image-model runtimes expect."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        # Pad to a multiple of 4 with sizes computed in the graph (the student's own padding
        # would be frozen to the example's size by tracing).
        h, w = image.shape[-2], image.shape[-1]
        ph, pw = (4 - h % 4) % 4, (4 - w % 4) % 4
        x = F.pad(image, [0, pw, 0, ph], mode="replicate")
        y = self.net(x, style_weights[None].expand(image.shape[0], -1))
        return y[:, :, :h, :w]


def export_onnx(pack_dir: str | Path, file: str | Path, opset: int = 17,
                size: tuple[int, int] | None = None) -> Path:
    """Write the pack's student as an ONNX model.

    Args:
        pack_dir: a style pack.
        file: output ``.onnx`` path (its folder must exist).
        opset: ONNX opset.
        size: ``(w, h)`` to fix the input size; default: the pack's resolution as the example, with
            dynamic height and width.

    Returns:
        The written file.

    Raises:
        PackError: the pack is missing or corrupt. ExportError: the output cannot be written.
    """
    pack = load_pack(pack_dir)
    file = Path(file)
    if not file.parent.is_dir():
        raise ExportError(f"-o {file}: folder {file.parent} does not exist")
    net = pack.build()
    w, h = size or pack.resolution or (320, 240)
    model = _OnnxWrapper(net).eval()
    image = torch.rand(1, 3, h, w)
    sw = torch.zeros(net.num_styles)
    sw[0] = 1.0
    dyn = None if size else {"image": {2: "height", 3: "width"}, "stylized": {2: "height", 3: "width"}}
    tmp = file.with_name(file.name + ".tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about the student's Python-side shape checks
            torch.onnx.export(model, (image, sw), str(tmp), input_names=["image", "style_weights"],
                              output_names=["stylized"], opset_version=opset, dynamic_axes=dyn, dynamo=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types
        tmp.unlink(missing_ok=True)
        raise ExportError(f"export of {pack_dir} to ONNX failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    os.replace(tmp, file)
    return file
