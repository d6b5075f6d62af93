"""Command-line flags shared by ``stylecam live``, ``render`` and ``bench``, and their parsing."""

from __future__ import annotations

import argparse

from realtime.composite import PRESETS, Treatment
from realtime.errors import InputError
from realtime.sizes import parse_size  # noqa: F401  (re-exported for the commands)


def add_global_flags(parser: argparse.ArgumentParser, in_command: bool = False) -> None:
    """Flags that go before or after the command (``stylecam -v live`` = ``stylecam live -v``).

    Add them to the main parser, then with ``in_command=True`` to each command's parser: there the default is
    SUPPRESS, so leaving the flag out after the command keeps the value given before it.
    """
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS if in_command else False,
                        help="log what happens (backend, engines)")


def add_pipeline_arguments(p, live: bool = False) -> None:
    """Flags that shape the pipeline. ``live``: strength and mirror default to the saved settings."""
    p.add_argument("--style", metavar="NAME", help="style to use (id, name or pack/id); default: the first available")
    p.add_argument("--styles", action="append", default=[], metavar="DIR",
                   help="extra style pack, or folder of packs (repeatable)")
    p.add_argument("--person", default=None, metavar="T",
                   help="person treatment: original | style[:NAME] | blur[:SIGMA] | image:PATH | color:#RRGGBB")
    p.add_argument("--background", default=None, metavar="T", help="background treatment (same forms as --person)")
    p.add_argument("--preset", choices=list(PRESETS), help="region preset (--person/--background win over it)")
    p.add_argument("--strength", type=float, default=None if live else 1.0, metavar="0..1",
                   help="mix with the original, 0–1 (default: " + ("last used, else 1)" if live else "1)"))
    p.add_argument("--mirror", action="store_true", default=None if live else False,
                   help="flip horizontally, like a selfie view")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs; auto picks cuda when it works and says which one runs")
    p.add_argument("--cpu-engine", choices=("auto", "eager", "compile", "onnxruntime"), default="auto",
                   help="how the student runs on the CPU (default: the fastest measured here)")
    p.add_argument("--internal-size", metavar="WxH", help="resolution the student runs at (default: the pack's)")
    p.add_argument("--split-precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="precision of the background's style when a frame has two (split); auto: bf16 on CPUs "
                        "with native bfloat16 when --cpu-engine is auto")
    p.add_argument("--no-segmentation", action="store_true", help="treat the whole frame as the person")
    p.add_argument("--seg-model", choices=("landscape", "square"), default="landscape",
                   help="MediaPipe selfie segmentation model")
    p.add_argument("--mask-smoothing", type=float, default=0.5, metavar="F",
                   help="temporal smoothing of the person mask, 0–0.95")
    p.add_argument("--guide-every", type=float, default=None, metavar="MS",
                   help="guided styles: run the teacher on a keyframe every MS milliseconds (default: the "
                        "style's cadence, slowed so the teacher uses at most a quarter of one core)")


def pipeline_config(args: argparse.Namespace):
    """The ``PipelineConfig`` the flags describe (bad values raise :class:`InputError`)."""
    from realtime.pipeline import PipelineConfig

    person, background = PRESETS[args.preset] if args.preset else PRESETS["all"]
    if args.person:
        person = Treatment.parse(args.person, "--person")
    if args.background:
        background = Treatment.parse(args.background, "--background")
    strength = 1.0 if args.strength is None else args.strength
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"--strength {args.strength}: expected a number from 0 to 1")
    if not 0.0 <= args.mask_smoothing <= 0.95:
        raise InputError(f"--mask-smoothing {args.mask_smoothing}: expected a number from 0 to 0.95")
    every = getattr(args, "guide_every", None)
    if every is not None and not every > 0:
        raise InputError(f"--guide-every {every:g}: expected a positive number of milliseconds")
    return PipelineConfig(
        style=args.style, styles_dirs=[str(d) for d in args.styles], person=person, background=background,
        strength=strength, backend=args.backend, cpu_engine=args.cpu_engine,
        internal_size=parse_size(args.internal_size, "--internal-size") if args.internal_size else None,
        segmentation=not args.no_segmentation, seg_model=args.seg_model,
        mask_smoothing=args.mask_smoothing, mirror=bool(args.mirror), guide_every_ms=every,
        split_precision=getattr(args, "split_precision", "auto"))
