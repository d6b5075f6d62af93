"""Teacher loaders: any supported image-to-image model as one callable on ``[N, 3, H, W]`` in [0, 1].

Formats, recognised from the file:

- CycleGAN ``ResnetGenerator`` state dicts (the pytorch-CycleGAN-and-pix2pix layout,
  ``latest_net_G_A.pth``; keys ``model.10.conv_block.1.weight``). The architecture is read from
  the keys: any width ``ngf``, any number of residual blocks and down/up stages, instance norm
  with or without affine parameters (old checkpoints' running-stat keys are dropped), other
  block key names (``model.10.block.1.weight``), dropout inside blocks, transposed-conv or
  upsample+conv decoders, a ``module.`` (DataParallel) prefix, and checkpoints that wrap the
  state dict one level deep (``{"state_dict": ...}``, ``{"G_A": ...}``).
- ONNX image-to-image models through onnxruntime (NCHW or NHWC; value range detected or set;
  fixed-size inputs handled by resizing or tiling; extra inputs such as a style-weights vector set
  with ``inputs={"style_weights": "onehot:7"}``).
- TorchScript modules.

Loading is always safe: ``torch.load(weights_only=True)``; a pickle that needs code is refused.
"""

from __future__ import annotations

import hashlib
import io
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

__all__ = ["Teacher", "TeacherError", "load_teacher", "sha256_file", "parse_value_range",
           "parse_input_value", "CycleGANGenerator", "TEACHER_OPTIONS"]

#: Options ``load_teacher`` understands (also the keys ``--style NAME:KEY=VALUE`` accepts).
TEACHER_OPTIONS = ("range", "layout", "fixed", "tile", "inputs", "norm", "decoder", "key",
                   "pad_multiple", "device", "scale")


class TeacherError(InputError):
    """A teacher file is missing, corrupt, unsafe or of an architecture we do not recognise."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (the teacher's identity in caches and pack provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def parse_value_range(value: str | tuple | list | None) -> tuple[float, float] | None:
    """``"0,1"`` / ``"-1,1"`` / ``"0,255"`` / ``(lo, hi)`` / ``"auto"`` → ``(lo, hi)`` or ``None`` (auto)."""
    if value is None or value == "auto":
        return None
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,:]|\.\.", value.strip()) if p != ""]
        if len(parts) != 2:
            raise TeacherError(f"--teacher-range {value!r}: expected LO,HI such as 0,1 or -1,1")
        try:
            lo, hi = float(parts[0]), float(parts[1])
        except ValueError:
            raise TeacherError(f"--teacher-range {value!r}: expected two numbers such as 0,1 or -1,1") from None
    else:
        lo, hi = (float(v) for v in value)
    if not hi > lo:
        raise TeacherError(f"--teacher-range {value!r}: the upper bound must exceed the lower")
    return lo, hi


def parse_input_value(name: str, value: Any, shape: list | tuple | None = None) -> np.ndarray:
    """Turn an ``--teacher-input NAME=VALUE`` value into an array for that input.

    Accepted: ``onehot:K`` (a one-hot vector of the input's length), ``mix:3=0.5;12=0.5`` (normalised
    weights), a comma-separated list of numbers, one number (filled to the input's shape), a ``.npy``
    file, or a list/array.
    """
    length = None
    if shape:
        fixed = [d for d in shape if isinstance(d, int) and d > 0]
        length = int(np.prod(fixed)) if len(fixed) == len(shape) else (fixed[-1] if fixed else None)
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value, dtype=np.float32)
    elif isinstance(value, (int, float)):
        arr = np.full([d if isinstance(d, int) and d > 0 else 1 for d in (shape or [1])], float(value),
                      dtype=np.float32)
    else:
        text = str(value).strip()
        if text.startswith(("onehot:", "mix:")):
            if length is None:
                raise TeacherError(f"--teacher-input {name}={text}: input {name} has no fixed length for {text}")
            arr = np.zeros(length, dtype=np.float32)
            pairs = [(text[7:], "1")] if text.startswith("onehot:") else \
                [p.split("=", 1) if "=" in p else (p, "1") for p in text[4:].split(";") if p]
            try:
                for k, w in pairs:
                    k = int(k)
                    if not 0 <= k < length:
                        raise ValueError
                    arr[k] += float(w)
            except ValueError:
                raise TeacherError(f"--teacher-input {name}={text}: indices must be 0..{length - 1}") from None
            if arr.sum() <= 0:
                raise TeacherError(f"--teacher-input {name}={text}: weights must have a positive sum")
            arr /= arr.sum()
        elif text.endswith(".npy"):
            try:
                arr = np.load(text, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError) as e:
                raise TeacherError(f"--teacher-input {name}={text}: cannot read ({e})") from None
        else:
            try:
                nums = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
            except ValueError:
                raise TeacherError(f"--teacher-input {name}={text}: expected onehot:K, mix:I=W;..., numbers "
                                   f"or a .npy file") from None
            if not nums:
                raise TeacherError(f"--teacher-input {name}: empty value")
            if len(nums) == 1 and length and length > 1:
                arr = np.full(length, nums[0], dtype=np.float32)
            else:
                arr = np.asarray(nums, dtype=np.float32)
    if shape and all(isinstance(d, int) and d > 0 for d in shape):
        if arr.size != int(np.prod(shape)):
            raise TeacherError(f"--teacher-input {name}: got {arr.size} values, the input needs shape {list(shape)}")
        arr = arr.reshape(shape)
    elif length is not None and arr.ndim == 1 and arr.size != length:
        raise TeacherError(f"--teacher-input {name}: got {arr.size} values, expected {length}")
    return arr


@dataclass
class Teacher:
    """A loaded teacher: call it on ``[N, 3, H, W]`` float RGB in [0, 1]; it returns the same shape in [0, 1].

    Attributes:
        name: file name the teacher came from.
        path: the file.
        sha256: hex digest of the file.
        kind: ``cyclegan``, ``onnx`` or ``torchscript``.
        options: resolved options (JSON-friendly), recorded in packs and cache keys.
        module: the ``nn.Module`` for PyTorch teachers (feature matching hooks it), else ``None``.
        describe: what was recognised, for logs and errors.
    """

    name: str
    path: Path
    sha256: str
    kind: str
    options: dict
    fn: Callable[[torch.Tensor], torch.Tensor]
    module: nn.Module | None = None
    describe: str = ""
    feature_layer: str | None = None  # name of the module whose output is the teacher's "feature"
    extra: dict = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the teacher.

        Shape:
            x: ``[N, 3, H, W]`` float in [0, 1]; returns ``[N, 3, H, W]`` float in [0, 1] on ``x``'s device.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"teacher input must be [N, 3, H, W], got {list(x.shape)}")
        with torch.no_grad():  # not inference_mode: callers may reuse the result in autograd code
            y = self.fn(x.float())
        return y.to(x.device).float().clamp(0.0, 1.0)

    @property
    def scale(self) -> float:
        """How much larger than the student's the teacher's preferred input scale is (default 2)."""
        return float(self.options.get("scale", 2.0))

    def macs(self, height: int, width: int) -> int | None:
        """Conv multiply–accumulates of one ``[1, 3, height, width]`` pass (PyTorch teachers), else ``None``."""
        if self.module is None:
            return None
        return count_conv_macs(self.module, lambda: self(torch.zeros(1, 3, height, width)))


def count_conv_macs(module: nn.Module, run: Callable[[], Any]) -> int:
    """Multiply–accumulates of every ``Conv2d``/``ConvTranspose2d`` in ``module`` during ``run()``."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):
            macs += inp[0].numel() // inp[0].shape[0] * (mod.out_channels // mod.groups) * k
        else:
            macs += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * k

    hs = [m.register_forward_hook(hook) for m in module.modules()
          if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        run()
    finally:
        for h in hs:
            h.remove()
    return macs


# --------------------------------------------------------------------------------------------
# CycleGAN ResnetGenerator, rebuilt from its keys
# --------------------------------------------------------------------------------------------

_RUNNING = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class _Layer:
    """One parameterised top-level layer of ``model`` (a conv, a norm or a residual block)."""

    index: int
    kind: str  # conv | convT | norm | block
    params: dict  # sub-key -> tensor


class _Block(nn.Module):
    """A residual block whose sub-module indices follow the checkpoint (``conv_block.1``, ``block.5``…)."""

    def __init__(self, attr: str, dim: int, conv_idx: list[int], norm_idx: list[int | None],
                 conv_bias: bool, padding: str):
        super().__init__()
        self.attr, self.padding = attr, padding
        size = max(conv_idx + [i for i in norm_idx if i is not None]) + 1
        mods: list[nn.Module] = [nn.Identity() for _ in range(size)]
        for i in conv_idx:
            mods[i] = nn.Conv2d(dim, dim, 3, 1, 0, bias=conv_bias)
        for i in norm_idx:
            if i is not None:
                mods[i] = nn.InstanceNorm2d(dim, affine=True)
        setattr(self, attr, nn.Sequential(*mods))
        self.conv_idx, self.norm_idx = conv_idx, norm_idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = getattr(self, self.attr)
        y = x
        for n, (ci, ni) in enumerate(zip(self.conv_idx, self.norm_idx)):
            y = seq[ci](F.pad(y, (1, 1, 1, 1), mode=self.padding))
            y = seq[ni](y) if ni is not None else F.instance_norm(y)
            if n + 1 < len(self.conv_idx):
                y = F.relu(y)
        return x + y


class CycleGANGenerator(nn.Module):
    """A ``ResnetGenerator`` laid out like the checkpoint it was recognised from.

    ``self.model`` is an ``nn.Sequential`` whose parameterised entries sit at the checkpoint's
    indices (paramless entries are ``Identity`` placeholders), so ``load_state_dict(strict=True)``
    checks every key; ``forward`` follows a plan built from the keys.

    Shape:
        x: ``[N, 3, H, W]`` in [-1, 1] (H, W multiples of 4 for exact shapes); output likewise.
    """

    def __init__(self, plan: list[tuple], size: int, modules: dict[int, nn.Module]):
        super().__init__()
        mods: list[nn.Module] = [nn.Identity() for _ in range(size)]
        for i, m in modules.items():
            mods[i] = m
        self.model = nn.Sequential(*mods)
        self.plan = plan
        self.trunk_index = max((p[1] for p in plan if p[0] == "block"), default=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        for op in self.plan:
            kind = op[0]
            if kind == "conv":
                _, i, stride, pad, pad_mode = op
                # zero padding lives in the conv itself; reflect padding is applied here
                x = m[i](F.pad(x, (pad,) * 4, mode="reflect") if pad and pad_mode == "reflect" else x)
            elif kind == "convT":
                x = m[op[1]](x)
            elif kind == "up":
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            elif kind == "norm":
                x = m[op[1]](x) if op[1] is not None else F.instance_norm(x)
            elif kind == "relu":
                x = F.relu(x)
            elif kind == "block":
                x = m[op[1]](x)
            elif kind == "tanh":
                x = torch.tanh(x)
        return x


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "netG.", "generator.", "G."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    if sd and not any(k.startswith("model.") for k in sd) and all(re.match(r"\d+\.", k) for k in sd):
        sd = {"model." + k: v for k, v in sd.items()}
    return sd


def _build_cyclegan(sd: dict[str, torch.Tensor], path: Path, options: dict) -> tuple[CycleGANGenerator, str]:
    sd = _strip_prefix(sd)
    dropped = [k for k in sd if k.rsplit(".", 1)[-1] in _RUNNING]
    norm_kind = options.get("norm", "instance")
    if norm_kind == "instance":
        sd = {k: v for k, v in sd.items() if k not in dropped}  # old PyTorch saved InstanceNorm stats
    top = _top_level_groups(sd, path)
    layers = [_Layer(i, _layer_kind(top[i], i, path), top[i]) for i in sorted(top)]
    planner = _CycleGANPlanner(path, layers, norm_kind, options.get("decoder", "auto"),
                               options.get("padding", "reflect"))
    planner.walk()
    net = CycleGANGenerator(planner.plan, max(top) + 1, planner.modules)
    _load_exactly(net, sd, path)
    affine = any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    desc = (f"CycleGAN ResnetGenerator: ngf={first.out_channels}, {planner.n_down} down, {planner.n_blocks} blocks, "
            f"{planner.n_up} up ({'transposed conv' if any(p[0] == 'convT' for p in planner.plan) else 'upsample+conv'}), "
            f"instance norm {'with' if affine else 'without'} affine"
            + (f", dropped {len(dropped)} running-stat keys" if dropped and norm_kind == "instance" else ""))
    return net.eval(), desc


def _top_level_groups(sd: dict[str, torch.Tensor], path: Path) -> dict[int, dict[str, torch.Tensor]]:
    """``model.N.rest`` keys grouped by N: ``{N: {rest: tensor}}``.

    Raises:
        TeacherError: No ``model.N`` keys, or keys outside ``model.``.
    """
    top: dict[int, dict[str, torch.Tensor]] = {}
    other = []
    for k, v in sd.items():
        mt = re.match(r"model\.(\d+)\.(.+)$", k)
        if not mt:
            other.append(k)
            continue
        top.setdefault(int(mt.group(1)), {})[mt.group(2)] = v
    if not top:
        raise TeacherError(f"teacher {path}: no 'model.N.*' keys; not a CycleGAN ResnetGenerator state dict "
                           f"(first keys: {list(sd)[:5]})")
    if other:
        raise TeacherError(f"teacher {path}: unexpected keys outside 'model.': {other[:5]}")
    return top


def _layer_kind(params: dict[str, torch.Tensor], index: int, path: Path) -> str:
    """``conv4d`` or ``norm`` for a layer of only weight (+ bias), else ``block`` (a residual block)."""
    if set(params) <= {"weight", "bias"}:
        w = params.get("weight")
        if w is None:
            raise TeacherError(f"teacher {path}: model.{index} has a bias but no weight")
        return "conv4d" if w.ndim == 4 else "norm"
    return "block"


class _CycleGANPlanner:
    """Turns the layers of a ResnetGenerator state dict into a :class:`CycleGANGenerator` plan and modules.

    It walks the layers in order, tracking the channel count to tell a conv from a transposed conv and
    the stage (encoder, residual trunk, decoder) to tell a strided conv from an upsample+conv.
    """

    def __init__(self, path: Path, layers: list[_Layer], norm_kind: str, decoder: str, padding: str):
        self.path, self.layers, self.norm_kind, self.decoder, self.padding = path, layers, norm_kind, decoder, padding
        self.plan: list[tuple] = []
        self.modules: dict[int, nn.Module] = {}
        self.ch: int | None = None
        self.n_blocks = self.n_down = self.n_up = 0
        self.stage = "enc"
        self.convs_seen = 0
        self.last_conv = max(l.index for l in layers if l.kind == "conv4d")

    def walk(self) -> None:
        for n, layer in enumerate(self.layers):
            if layer.kind == "conv4d":
                nxt = self.layers[n + 1] if n + 1 < len(self.layers) else None
                self._conv(layer, nxt)
            elif layer.kind == "norm":
                self._norm(layer)
            else:
                self._block(layer)
        if self.n_blocks == 0:
            raise TeacherError(f"teacher {self.path}: recognised {self.convs_seen} convs but no residual blocks; "
                               f"not a ResnetGenerator")

    def _conv(self, layer: _Layer, nxt: _Layer | None) -> None:
        p, ch = layer.params, self.ch
        w, b = p["weight"], p.get("bias")
        k = w.shape[-1]
        if ch is None:
            ch = w.shape[1]
        if self.n_blocks:
            self.stage = "dec"
        is_last = layer.index == self.last_conv
        transposed = (self.stage == "dec" and not is_last and w.shape[0] == ch
                      and (w.shape[1] != ch or self.decoder == "transpose") and self.decoder != "upsample")
        if transposed:
            out = w.shape[1]
            self.modules[layer.index] = nn.ConvTranspose2d(ch, out, k, 2, k // 2, output_padding=1,
                                                           bias=b is not None)
            self.plan.append(("convT", layer.index))
            self.n_up += 1
        elif w.shape[1] == ch:
            out = w.shape[0]
            if is_last or self.convs_seen == 0:
                pad, stride, mode = k // 2, 1, "reflect"
            elif self.stage == "enc":
                pad, stride, mode = k // 2, 2, "zeros"
                self.n_down += 1
            else:  # an upsample+conv decoder stage
                self.plan.append(("up",))
                pad, stride, mode = k // 2, 1, "reflect"
                self.n_up += 1
            self.modules[layer.index] = nn.Conv2d(ch, out, k, stride, 0 if mode == "reflect" else pad,
                                                  bias=b is not None)
            self.plan.append(("conv", layer.index, stride, pad, mode))
        else:
            raise TeacherError(f"teacher {self.path}: model.{layer.index}.weight has shape {list(w.shape)}, "
                               f"which does not follow a layer with {ch} channels")
        self.convs_seen += 1
        self.ch = out
        if is_last:
            self.plan.append(("tanh",))
        elif nxt is None or nxt.kind != "norm":  # else the norm adds itself, then the ReLU
            self.plan.append(("norm", None))
            self.plan.append(("relu",))

    def _norm(self, layer: _Layer) -> None:
        ch = self.ch
        if layer.params["weight"].shape[0] != ch:
            raise TeacherError(f"teacher {self.path}: norm model.{layer.index} has {layer.params['weight'].shape[0]} "
                               f"channels after a {ch}-channel conv")
        if self.norm_kind == "batch" and "running_mean" in layer.params:
            self.modules[layer.index] = nn.BatchNorm2d(ch)
        else:
            self.modules[layer.index] = nn.InstanceNorm2d(ch, affine=True)
        self.plan.append(("norm", layer.index))
        self.plan.append(("relu",))

    def _block(self, layer: _Layer) -> None:
        if self.stage == "enc":
            self.stage = "trunk"
        self.modules[layer.index] = _block_module(layer, self.ch, self.path, self.padding)
        self.plan.append(("block", layer.index))
        self.n_blocks += 1


def _block_module(layer: _Layer, ch: int | None, path: Path, padding: str) -> _Block:
    """The residual block of ``layer`` (``model.N.<attr>.<i>.weight|bias``): two convs, each maybe normed."""
    p = layer.params
    names = {k.split(".")[0] for k in p}
    if len(names) != 1:
        raise TeacherError(f"teacher {path}: block model.{layer.index} has several sub-modules {sorted(names)}")
    attr = names.pop()
    subs: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in p.items():
        mt = re.match(rf"{re.escape(attr)}\.(\d+)\.(weight|bias)$", k)
        if not mt:
            raise TeacherError(f"teacher {path}: unrecognised block key model.{layer.index}.{k}")
        subs.setdefault(int(mt.group(1)), {})[mt.group(2)] = v
    conv_idx = [i for i in sorted(subs) if subs[i]["weight"].ndim == 4]
    if len(conv_idx) != 2:
        raise TeacherError(f"teacher {path}: block model.{layer.index} has {len(conv_idx)} convs, expected 2")
    norm_idx: list[int | None] = []
    for j, ci in enumerate(conv_idx):
        nxt_c = conv_idx[j + 1] if j + 1 < len(conv_idx) else 10 ** 9
        nis = [i for i in sorted(subs) if ci < i < nxt_c and subs[i]["weight"].ndim == 1]
        norm_idx.append(nis[0] if nis else None)
    if subs[conv_idx[0]]["weight"].shape[:2] != (ch, ch):
        raise TeacherError(f"teacher {path}: block model.{layer.index} is "
                           f"{list(subs[conv_idx[0]]['weight'].shape)}, expected {ch}x{ch} convs")
    return _Block(attr, ch, conv_idx, norm_idx, "bias" in subs[conv_idx[0]], padding)


def _load_exactly(net: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``sd`` into ``net``; every key must fit.

    Raises:
        TeacherError: A shape does not fit, or keys are missing or left over (names the first few).
    """
    try:
        res = net.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise TeacherError(f"teacher {path}: weights do not fit the recognised architecture: "
                           f"{str(e).splitlines()[-1].strip()}") from None
    missing, unexpected = list(res.missing_keys), list(res.unexpected_keys)
    if missing or unexpected:
        raise TeacherError(f"teacher {path}: missing keys {missing[:6]}, unexpected keys {unexpected[:6]}")


#: torch.save's older (non-zip) format starts with this number, pickled.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _checkpoint_format(path: Path) -> str:
    """``"zip"`` or ``"legacy"`` (the two torch.save formats), ``"pickle"`` (a plain Python pickle) or ``"other"``.

    Read from the first bytes without unpickling anything.
    """
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if not head.startswith(b"\x80"):  # PROTO: every pickle of protocol 2 or later, as torch.save writes
        return "other"
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(head)):
            if op.name in ("PROTO", "FRAME"):
                continue
            return "legacy" if op.name in ("LONG1", "LONG4") and arg == _TORCH_LEGACY_MAGIC else "pickle"
    except ValueError:  # not a pickle opcode: random bytes that happen to start like one
        pass
    return "other"


def _torch_load(path: Path) -> Any:
    fmt = _checkpoint_format(path)
    if fmt == "other":
        raise TeacherError(f"teacher {path}: not a PyTorch checkpoint (expected a state dict saved with torch.save, "
                           f"a TorchScript module or an ONNX model)")
    if fmt == "pickle":
        raise TeacherError(f"teacher {path}: a plain Python pickle, not a PyTorch checkpoint; save the generator's "
                           f"state_dict() with torch.save, or export it to TorchScript or ONNX")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it did not write itself; the error below says what matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        msg = str(e)
        if "Unsupported operand" in msg:  # the safe unpickler reads pickle protocol 2 only (legacy format)
            raise TeacherError(f"teacher {path}: an old-format torch.save file with a pickle protocol the safe "
                               f"loader cannot read; re-save it with torch.save's default (zip) format") from None
        if "Weights only load failed" in msg or "Unsupported global" in msg or "UnpicklingError" in type(e).__name__:
            m = re.search(r"GLOBAL ([\w.]+)", msg)
            what = f" (it needs {m.group(1)})" if m else ""
            raise TeacherError(f"teacher {path}: refused to unpickle code{what}; save the generator's "
                               f"state_dict() or export it to TorchScript or ONNX") from None
        raise TeacherError(f"teacher {path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                           f"{msg.splitlines()[0][:200] if msg else 'empty'})") from None


def _unwrap_state_dict(obj: Any, path: Path, key: str | None) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise TeacherError(f"teacher {path}: holds a {type(obj).__name__}, expected a state dict")
    if key:
        if key not in obj:
            raise TeacherError(f"teacher {path}: no entry {key!r} (entries: {sorted(map(str, obj))[:10]})")
        obj = obj[key]
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    nested = {k: v for k, v in obj.items() if isinstance(v, dict) and v
              and all(isinstance(t, torch.Tensor) for t in v.values())}
    for pref in ("state_dict", "model", "netG", "G_A", "G_A2B", "generator"):
        if pref in nested:
            return nested[pref]
    if len(nested) == 1:
        return next(iter(nested.values()))
    if nested:
        raise TeacherError(f"teacher {path}: holds several state dicts {sorted(nested)}; pick one with key=NAME")
    raise TeacherError(f"teacher {path}: holds no tensors (entries: {sorted(map(str, obj))[:10]})")


def _pad_to(x: torch.Tensor, mult: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % mult, (-w) % mult
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def _range_fns(rng: tuple[float, float]):
    lo, hi = rng
    return (lambda x: x * (hi - lo) + lo), (lambda y: (y - lo) / (hi - lo))


def _load_cyclegan(path: Path, options: dict) -> Teacher:
    sd = _unwrap_state_dict(_torch_load(path), path, options.get("key"))
    net, desc = _build_cyclegan(sd, path, options)
    device = torch.device(options.get("device", "cpu"))
    net = net.to(device)
    rng = parse_value_range(options.get("range", "-1,1")) or (-1.0, 1.0)
    to_in, from_out = _range_fns(rng)
    mult = int(options.get("pad_multiple", 4))

    def fn(x: torch.Tensor) -> torch.Tensor:
        xp, h, w = _pad_to(x.to(device), mult)
        return from_out(net(to_in(xp)))[..., :h, :w]

    opts = {"range": list(rng), **{k: v for k, v in options.items() if k not in ("range", "device")}}
    return Teacher(path.name, path, sha256_file(path), "cyclegan", opts, fn, net, desc,
                   feature_layer=f"model.{net.trunk_index}")


def _load_torchscript(path: Path, options: dict) -> Teacher:
    try:
        mod = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001
        raise TeacherError(f"teacher {path}: not a loadable TorchScript module ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200]})") from None
    device = torch.device(options.get("device", "cpu"))
    mod = mod.to(device)
    rng = parse_value_range(options.get("range", "0,1")) or (0.0, 1.0)
    to_in, from_out = _range_fns(rng)
    mult = int(options.get("pad_multiple", 1))

    def fn(x: torch.Tensor) -> torch.Tensor:
        xp, h, w = _pad_to(x.to(device), mult)
        y = mod(to_in(xp))
        if isinstance(y, (tuple, list)):
            y = y[0]
        if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[1] != 3:
            raise TeacherError(f"teacher {path}: the module returned {getattr(y, 'shape', type(y))}, "
                               f"expected an image [N, 3, H, W]")
        return from_out(y)[..., :h, :w]

    opts = {"range": list(rng), **{k: v for k, v in options.items() if k not in ("range", "device")}}
    return Teacher(path.name, path, sha256_file(path), "torchscript", opts, fn, mod, "TorchScript module")


class _OnnxRunner:
    """Wraps an onnxruntime session as an NCHW [0, 1] image function."""

    def __init__(self, path: Path, options: dict):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=_ort_providers(options.get("device", "cpu")))
        except Exception as e:  # noqa: BLE001
            raise TeacherError(f"teacher {path}: not a loadable ONNX model ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200]})") from None
        self.path = path
        ins = self.sess.get_inputs()
        images = [i for i in ins if len(i.shape) == 4 and (i.shape[1] == 3 or i.shape[3] == 3)]
        if not images:
            raise TeacherError(f"teacher {path}: no image input (expected a 4-D input with 3 channels; inputs: "
                               + ", ".join(f"{i.name}{list(i.shape)}" for i in ins) + ")")
        self.image = images[0]
        layout = options.get("layout", "auto")
        if layout == "auto":
            layout = "nchw" if self.image.shape[1] == 3 else "nhwc"
        if layout not in ("nchw", "nhwc"):
            raise TeacherError(f"teacher option layout={layout!r}: expected nchw, nhwc or auto")
        self.layout = layout
        self.dtype = np.float16 if "float16" in self.image.type else np.float32
        hw = self.image.shape[2:4] if layout == "nchw" else self.image.shape[1:3]
        self.fixed = tuple(int(d) for d in hw) if all(isinstance(d, int) and d > 0 for d in hw) else None
        self.batch_fixed = isinstance(self.image.shape[0], int)
        given = dict(options.get("inputs") or {})
        self.extra: dict[str, np.ndarray] = {}
        for i in ins:
            if i.name == self.image.name:
                continue
            if i.name not in given:
                raise TeacherError(f"teacher {path}: input {i.name!r} {list(i.shape)} needs a value; set it with "
                                   f"--teacher-input {i.name}=VALUE (e.g. onehot:0)")
            self.extra[i.name] = parse_input_value(i.name, given.pop(i.name), list(i.shape))
        if given:
            raise TeacherError(f"teacher {path}: has no input(s) {sorted(given)}; inputs: "
                               + ", ".join(i.name for i in ins))
        self.fixed_mode = options.get("fixed", "resize")
        if self.fixed_mode not in ("resize", "tile"):
            raise TeacherError(f"teacher option fixed={self.fixed_mode!r}: expected resize or tile")
        self.pad_multiple = int(options.get("pad_multiple", 4))
        self.range = parse_value_range(options.get("range", "auto"))
        if self.range is None:
            self.range = self._detect_range()

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        """One forward in the model's own value range; x is ``[N, 3, H, W]`` (H, W as the model needs)."""
        outs = []
        for xi in (x.split(1) if self.batch_fixed else [x]):
            arr = xi.cpu().numpy()
            if self.layout == "nhwc":
                arr = arr.transpose(0, 2, 3, 1)
            feeds = {self.image.name: np.ascontiguousarray(arr.astype(self.dtype)), **self.extra}
            try:
                y = self.sess.run(None, feeds)[0]
            except Exception as e:  # noqa: BLE001
                raise TeacherError(f"teacher {self.path}: inference failed on input {list(arr.shape)} "
                                   f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
            y = np.asarray(y, dtype=np.float32)
            if y.ndim == 3:
                y = y[None]
            if self.layout == "nhwc" or (y.shape[-1] == 3 and y.shape[1] != 3):
                y = y.transpose(0, 3, 1, 2)
            outs.append(torch.from_numpy(np.ascontiguousarray(y)))
        return torch.cat(outs)

    def _detect_range(self) -> tuple[float, float]:
        """Feed a smooth probe in [0, 1] and read the output's range: [-1, 1] and [0, 255] models show it."""
        h, w = self.fixed or (64, 64)
        yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        probe = torch.stack([xx, yy, (xx + yy) / 2])[None]
        y = self._raw(probe)
        lo, hi = float(y.min()), float(y.max())
        if lo < -0.1:
            return (-1.0, 1.0)
        if hi > 2.0:
            return (0.0, 255.0)
        return (0.0, 1.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        to_in, from_out = _range_fns(self.range)
        x = x.cpu()
        h, w = x.shape[-2:]
        if self.fixed is None:
            xp, _, _ = _pad_to(x, self.pad_multiple)
            y = self._raw(to_in(xp))
            return from_out(y)[..., :h, :w]
        fh, fw = self.fixed
        if self.fixed_mode == "resize" or (h <= fh and w <= fw):
            xr = F.interpolate(x, size=(fh, fw), mode="bilinear", align_corners=False, antialias=True)
            y = from_out(self._raw(to_in(xr)))
            return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return from_out(_tiled(lambda t: self._raw(to_in(t)), x, fh, fw))


def _tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, th: int, tw: int,
           overlap: float = 0.25) -> torch.Tensor:
    """Run ``fn`` on overlapping ``th×tw`` tiles and blend them with a raised-cosine window.

    Shape:
        x: ``[N, C, H, W]`` with ``H >= th`` or ``W >= tw`` (smaller sides are reflect-padded).
    """
    n, c, h, w = x.shape
    ph, pw = max(0, th - h), max(0, tw - w)
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
    hh, ww = xp.shape[-2:]

    def starts(size: int, tile: int) -> list[int]:
        step = max(1, int(tile * (1 - overlap)))
        s = list(range(0, max(1, size - tile + 1), step))
        if s[-1] != size - tile:
            s.append(size - tile)
        return s

    wy = torch.hann_window(th + 2, periodic=False)[1:-1]
    wx = torch.hann_window(tw + 2, periodic=False)[1:-1]
    win = (wy[:, None] * wx[None, :]).clamp_min(1e-3)
    out = torch.zeros(n, 3, hh, ww)
    acc = torch.zeros(1, 1, hh, ww)
    for y0 in starts(hh, th):
        for x0 in starts(ww, tw):
            out[..., y0:y0 + th, x0:x0 + tw] += fn(xp[..., y0:y0 + th, x0:x0 + tw]) * win
            acc[..., y0:y0 + th, x0:x0 + tw] += win
    return (out / acc)[..., :h, :w]


def _ort_providers(device: str) -> list[str]:
    import onnxruntime as ort

    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _load_onnx(path: Path, options: dict) -> Teacher:
    runner = _OnnxRunner(path, options)
    inputs = {k: v.reshape(-1).round(6).tolist() if v.size <= 64 else f"array{list(v.shape)}"
              for k, v in runner.extra.items()}
    opts = {"range": list(runner.range), "layout": runner.layout,
            **{k: v for k, v in options.items() if k not in ("range", "layout", "inputs", "device")}}
    if inputs:
        opts["inputs"] = dict(options.get("inputs") or {})
    desc = (f"ONNX {runner.layout.upper()} image model, input {runner.image.name}"
            f"{list(runner.image.shape)}, range {runner.range}"
            + (f", fixed size {runner.fixed} ({runner.fixed_mode})" if runner.fixed else "")
            + (f", extra inputs {inputs}" if inputs else ""))
    return Teacher(path.name, path, sha256_file(path), "onnx", opts, runner, None, desc)


def _sniff(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            raise TeacherError(f"teacher {path}: corrupt zip archive (truncated download?)") from None
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        return "state_dict"
    if suffix in (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".tar"):
        return "state_dict"
    # ONNX files are protobufs with no magic number; let onnxruntime judge unknown suffixes.
    return "onnx"


def load_teacher(path: str | Path, **options: Any) -> Teacher:
    """Load a teacher model as a callable on float RGB NCHW in [0, 1].

    Args:
        path: a CycleGAN state dict (``.pth``), an ONNX model or a TorchScript module.
        **options: ``range`` (``"0,1"``/``"-1,1"``/``"0,255"``/``"auto"``; the model's value range),
            ``layout`` (``nchw``/``nhwc``/``auto``; ONNX), ``fixed`` (``resize``/``tile``; ONNX
            models with a fixed input size), ``inputs`` (``{name: value}`` for extra ONNX inputs, see
            :func:`parse_input_value`), ``norm`` (``instance``/``batch``; CycleGAN), ``decoder``
            (``auto``/``transpose``/``upsample``), ``key`` (which state dict in a wrapped
            checkpoint), ``pad_multiple``, ``device``, ``scale`` (teacher input scale relative to the
            student's; used by distillation, recorded here).

    Returns:
        A :class:`Teacher`.

    Raises:
        TeacherError: missing or corrupt file, unsafe pickle, unknown architecture, key mismatch.
    """
    path = Path(path)
    unknown = sorted(set(options) - set(TEACHER_OPTIONS) - {"padding"})
    if unknown:
        raise TeacherError(f"teacher {path}: unknown option(s) {unknown}; known: {', '.join(TEACHER_OPTIONS)}")
    if not path.exists():
        raise TeacherError(f"teacher {path}: no such file")
    if not path.is_file():
        raise TeacherError(f"teacher {path}: not a file")
    if path.stat().st_size == 0:
        raise TeacherError(f"teacher {path}: the file is empty")
    if "scale" in options:
        try:
            options["scale"] = float(options["scale"])
        except (TypeError, ValueError):
            raise TeacherError(f"teacher option scale={options['scale']!r}: expected a number") from None
        if not 0.1 <= options["scale"] <= 8:
            raise TeacherError(f"teacher option scale={options['scale']}: expected 0.1..8")
    kind = _sniff(path)
    if kind == "onnx":
        return _load_onnx(path, options)
    if kind == "torchscript":
        return _load_torchscript(path, options)
    return _load_cyclegan(path, options)
