"""The ``stylecam`` command line: a thin argparse layer over ``realtime`` (and ``training``).

``stylecam`` alone starts the desktop app (``stylecam live``). Errors a user can cause are
printed as one line (``stylecam: error: …``) with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from realtime.errors import InputError, StylecamError
from ui.args import add_pipeline_arguments, parse_size, pipeline_config

log = logging.getLogger("stylecam")

SUBCOMMANDS = ("live", "render", "bench", "styles", "distill", "evaluate", "export-onnx", "train-teacher")


# ---- render -------------------------------------------------------------------------------
def cmd_render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from realtime.render import render

    cfg = pipeline_config(args)
    size = parse_size(args.size) if args.size else None
    bar = None

    def on_frame(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="frame", desc="render", dynamic_ncols=True, disable=args.quiet)
        bar.update(1)

    try:
        res = render(args.input, args.output, cfg, size=size, max_frames=args.frames, on_frame=on_frame)
    finally:
        if bar is not None:
            bar.close()
    for w in res.warnings:
        print(f"stylecam: warning: {w}", file=sys.stderr)
    note = " (interrupted; the video written so far is finalized)" if res.interrupted else ""
    print(f"wrote {res.output}: {res.frames} frame(s) in {res.seconds:.1f} s ({res.fps:.1f} fps){note}")
    if res.interrupted:
        return 128 + (res.signal or signal.SIGINT)  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM
    return 0


# ---- bench --------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from realtime.benchmarks.pipeline import run_bench

    if not (args.preset or args.person or args.background):
        args.preset = "blur"  # the live default case: segmentation on, styled person, blurred background
    cfg = pipeline_config(args)
    untrained = None
    if not args.style and not _styles_installed(cfg):
        # Speed does not depend on the weights: time an untrained student of the default architecture.
        from realtime.student import DEFAULT_ARCH

        untrained = _untrained_pack()
        cfg.styles_dirs = [str(untrained)]
        print(f"no styles installed: timing an untrained {DEFAULT_ARCH} student (speed does not depend on "
              "its weights)", file=sys.stderr)
    size = parse_size(args.size)
    if args.frames < 10:
        raise InputError(f"--frames {args.frames}: expected at least 10")
    out = Path(args.json) if args.json else None
    if out is not None and not (out.parent.is_dir() if str(out.parent) else True):
        raise InputError(f"--json {out}: directory {out.parent} does not exist")
    baselines = {}
    for path in args.baseline:
        from training.teachers import load_teacher

        baselines[Path(path).name] = load_teacher(path)
    res = run_bench(cfg, args.source, size, frames=args.frames, warmup=args.warmup,
                    compare_engines=not args.no_engine_compare, baselines=baselines,
                    progress=lambda m: print(m, file=sys.stderr))
    res["student"] = "untrained (no style installed)" if untrained else "style pack"
    text = json.dumps(res, indent=2)
    if out is not None:
        out.write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    print(text)
    return 0


def _styles_installed(cfg) -> bool:
    from realtime.styles import StyleRegistry

    return len(StyleRegistry(cfg.styles_dirs)) > 0


def _untrained_pack():
    import tempfile

    from realtime.student import DEFAULT_ARCH, build_student
    from realtime.styles import save_pack

    path = Path(tempfile.mkdtemp(prefix="stylecam-bench-")) / "untrained"
    net = build_student(DEFAULT_ARCH, 16, 1)
    return save_pack(path, net, {"name": "untrained", "description": "untrained student for timing only",
                                 "license": "none", "resolution": [320, 240],
                                 "styles": [{"id": "untrained", "name": "Untrained"}]})


# ---- styles -------------------------------------------------------------------------------
def cmd_styles(args: argparse.Namespace) -> int:
    from realtime.styles import StyleRegistry

    reg = StyleRegistry(args.styles)
    if args.json:
        print(json.dumps([s.to_json() for s in reg.styles], indent=2))
        return 0
    if not reg.styles:
        print("no styles installed (add packs with --styles DIR, or to the user data directory)")
    for s in reg.styles:
        m = s.metrics
        extra = f"  fidelity {m['fidelity_gain']:.2f}" if isinstance(m.get("fidelity_gain"), (int, float)) else ""
        print(f"{s.hotkey or ' '}  {s.key:32s} {s.name}{extra}")
    for w in reg.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


# ---- live (the desktop app) ---------------------------------------------------------------
def _register_live(sub) -> None:
    from ui.app import add_live_arguments  # argparse only; Qt is imported when the app starts

    p = sub.add_parser("live", help="the desktop app (default)")
    add_live_arguments(p)
    p.set_defaults(func=cmd_live)


def cmd_live(args: argparse.Namespace) -> int:
    from ui.app import run_live

    return run_live(args)


def _add_global_flags(parser: argparse.ArgumentParser, in_command: bool = False) -> None:
    """Flags that go before or after the command (``stylecam -v live`` = ``stylecam live -v``).

    In a command, the default is SUPPRESS so that leaving the flag out there keeps the value given before it.
    """
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS if in_command else False,
                        help="log what happens (backend, engines)")


def build_parser() -> argparse.ArgumentParser:
    # The training commands register with the rest: they import torch and training code only when run, so an
    # ImportError here is a bug to show, not an optional part to hide.
    from ui.cli_training import register as register_training

    parser = argparse.ArgumentParser(prog="stylecam", description="Real-time webcam stylization.")
    _add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_live(sub)

    p = sub.add_parser("render", help="stylize a video or image file")
    p.add_argument("input", help="video file, image file or camera index")
    p.add_argument("-o", "--output", required=True, help="output .mkv/.mp4/.mov video, or .png/.jpg image")
    p.add_argument("--size", metavar="WxH", help="render size (default: the input's)")
    p.add_argument("--frames", type=int, help="stop after N frames")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_pipeline_arguments(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("bench", help="benchmark the live pipeline, print JSON")
    p.add_argument("--source", required=True, help="video file, image or camera index")
    p.add_argument("--size", default="640x480", metavar="WxH")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--json", metavar="OUT", help="also write the JSON here")
    p.add_argument("--baseline", action="append", default=[], metavar="TEACHER",
                   help="also time this teacher model on the same frames (repeatable)")
    p.add_argument("--no-engine-compare", action="store_true", help="skip the CPU engine comparison")
    add_pipeline_arguments(p)
    p.set_defaults(preset=None)  # bench defaults to --preset blur (segmentation on), see cmd_bench
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("styles", help="list the installed styles")
    p.add_argument("--styles", action="append", default=[], metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_styles)

    register_training(sub)
    for command in sub.choices.values():
        _add_global_flags(command, in_command=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "-v", "--verbose")) \
            or (argv[0] in ("-v", "--verbose") and (len(argv) == 1 or argv[1] not in SUBCOMMANDS)):
        # `stylecam [live flags]` means `stylecam live [live flags]`
        verbose = [a for a in argv[:1] if a in ("-v", "--verbose")]
        argv = verbose + ["live"] + argv[len(verbose):]
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="stylecam: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StylecamError as e:
        print(f"stylecam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stylecam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
