"""The ``convscope`` command line. Each command lives in its own module and is imported only when
it runs, so ``convscope --help`` starts without loading torch."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from convscope import __version__

DEFAULT_MODEL = "efficientnet_lite0"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="convscope",
        description="See what a convolutional network sees.",
        epilog="Run `convscope COMMAND --help` for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"convscope {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser("explain", help="explain a model's prediction on images (overlay PNGs)")
    e.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    e.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    e.add_argument(
        "--method",
        default="gradcam",
        help="method name (default gradcam; `convscope methods`); several, comma-separated, or "
        "all: one figure per image with the methods side by side",
    )
    e.add_argument(
        "--option",
        "-O",
        action="append",
        metavar="[METHOD:]KEY=VALUE",
        help="a method option, e.g. -O n_samples=10 or -O occlusion:window=32 (repeatable)",
    )
    e.add_argument(
        "--target",
        "-t",
        action="append",
        help="class index or name, or topK (default top1); once for all images or once per image",
    )
    e.add_argument("--layer", "-l", default="auto", help="layer for CAM methods (default auto)")
    e.add_argument("--out", "-o", default="convscope-out", help="output folder")
    e.add_argument("--raw", action="store_true", help="also save each raw map as float32 .npy")
    e.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="at most this many inputs per forward pass (default: the method's own)",
    )
    e.add_argument("--cmap", default="jet", help="matplotlib colormap for overlays")
    e.add_argument("--top", type=int, default=5, help="predictions to print per image")
    _model_output(e)
    _max_pixels(e)
    e.set_defaults(run="convscope.cli.explain:run")

    ev = sub.add_parser("evaluate", help="score methods with faithfulness metrics (a table)")
    ev.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    ev.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    ev.add_argument(
        "--methods", default="gradcam,saliency", help="comma-separated method names, or all"
    )
    ev.add_argument("--target", "-t", action="append", help="as for explain (default top1)")
    ev.add_argument("--layer", "-l", default="auto", help="layer for CAM methods (default auto)")
    ev.add_argument(
        "--option",
        "-O",
        action="append",
        metavar="[METHOD:]KEY=VALUE",
        help="a method option, as for explain (repeatable)",
    )
    ev.add_argument("--steps", type=int, default=28, help="steps for deletion/insertion curves")
    ev.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    ev.add_argument("--out", "-o", default=None, help="folder for metrics.csv and metrics.json")
    _model_output(ev)
    _max_pixels(ev)
    ev.set_defaults(run="convscope.cli.evaluate:run")

    fi = sub.add_parser("filters", help="a convolution's filters as a picture")
    fi.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    fi.add_argument(
        "--layer",
        "-l",
        default="first",
        help="a convolution (default: the first one the input meets)",
    )
    fi.add_argument(
        "--mode",
        choices=("auto", "rgb", "mean", "channels"),
        default="auto",
        help="rgb (3 input channels), mean over input channels, or a row per input channel "
        "(default: rgb for 3 input channels, else mean)",
    )
    fi.add_argument(
        "--order",
        choices=("index", "similarity", "norm"),
        default="index",
        help="filter order: by number, similar filters together (clustering), or largest first",
    )
    fi.add_argument(
        "--scale", choices=("layer", "filter"), default="layer", help="one scale or one per filter"
    )
    fi.add_argument("--cell", type=int, default=36, help="pixels per filter side (about)")
    fi.add_argument(
        "--similar", type=int, action="append", metavar="I", help="print the filters nearest to I"
    )
    fi.add_argument("-k", type=int, default=5, help="how many nearest filters --similar prints")
    fi.add_argument("--out", "-o", default="convscope-out", help="output folder")
    fi.set_defaults(run="convscope.cli.filters:run")

    ac = sub.add_parser("activations", help="feature maps of layers on images, as grids")
    ac.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    ac.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    ac.add_argument(
        "--layer",
        "-l",
        default="pipeline",
        help="comma-separated layers (default pipeline: the stages from stem to head)",
    )
    ac.add_argument(
        "--top",
        type=int,
        default=None,
        help="channels per grid, strongest first (default: all up to 64, else 16)",
    )
    ac.add_argument("--sort", choices=("mean", "max", "none"), default="mean", help="channel order")
    ac.add_argument(
        "--scale", choices=("layer", "channel"), default="layer", help="one scale or one per map"
    )
    ac.add_argument("--no-strip", action="store_true", help="no pipeline strip per image")
    ac.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    ac.add_argument("--out", "-o", default="convscope-out", help="output folder")
    ac.set_defaults(run="convscope.cli.activations:run")

    st = sub.add_parser("stats", help="per-layer activation statistics over images (a table)")
    st.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    st.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    st.add_argument(
        "--layers",
        default="all",
        help="all (every 4-D layer), blocks (block level) or comma-separated names",
    )
    st.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    st.add_argument("--out", "-o", default=None, help="folder for stats.csv, stats.json, stats.png")
    st.set_defaults(run="convscope.cli.stats:run")
    mi = sub.add_parser(
        "mine", help="top-k images and patches of every channel of a layer over a corpus"
    )
    from convscope.corpus.mine import add_arguments as add_mine_arguments

    add_mine_arguments(mi, DEFAULT_MODEL)
    mi.set_defaults(run="convscope.cli.mine:run")

    nb = sub.add_parser("neighbours", help="corpus images nearest to query images (features)")
    nb.add_argument("queries", nargs="+", metavar="QUERY", help="image files or sample:NAME")
    nb.add_argument(
        "--corpus", "-c", required=True, help="folder, samples, samples-crops[:N] or shapes[:N]"
    )
    nb.add_argument("--layer", "-l", required=True, help="layer whose pooled features are compared")
    nb.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help=f"model, or MODULE:FACTORY (default {DEFAULT_MODEL})",
    )
    nb.add_argument("--k", "-k", type=int, default=8, help="neighbours per query (default 8)")
    nb.add_argument("--metric", choices=("cosine", "l2"), default="cosine")
    nb.add_argument("--out", "-o", default=None, help="PNG of the neighbours figure")
    nb.add_argument(
        "--cache", default=None, help="feature cache folder (default ~/.cache/convscope)"
    )
    nb.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    nb.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding images")
    nb.set_defaults(run="convscope.cli.neighbours:run")

    em = sub.add_parser("embed", help="a corpus's images at the 2-D embedding of their features")
    em.add_argument("corpus", help="folder, samples, samples-crops[:N] or shapes[:N]")
    em.add_argument("--layer", "-l", required=True, help="layer whose pooled features are embedded")
    em.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help=f"model, or MODULE:FACTORY (default {DEFAULT_MODEL})",
    )
    em.add_argument("--method", choices=("tsne", "umap", "pca"), default="tsne")
    em.add_argument("--seed", type=int, default=0, help="random seed of the embedding")
    em.add_argument("--out", "-o", default="embedding.png", help="PNG of the map")
    em.add_argument("--cell", type=int, default=48, help="thumbnail size in pixels")
    em.add_argument(
        "--colour-by-class", action="store_true", help="frame each image by its predicted class"
    )
    em.add_argument(
        "--cache", default=None, help="feature cache folder (default ~/.cache/convscope)"
    )
    em.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    em.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding images")
    em.set_defaults(run="convscope.cli.embed:run")
    v = sub.add_parser(
        "visualize", help="images that maximize a class, a channel or a neuron (feature vis.)"
    )
    v.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    v.add_argument(
        "--objective",
        action="append",
        metavar="OBJ",
        help="class:NAME|INDEX, prob:NAME, channel:LAYER:K, neuron:LAYER:K[:I:J] (repeatable; "
        "all run as one batch)",
    )
    v.add_argument("--layer", "-l", default=None, help="with --channels: a whole layer's grid")
    v.add_argument("--channels", default=None, help="channels of --layer, e.g. 0-31 or 3,5,9")
    v.add_argument(
        "--preset",
        default="lucid",
        choices=["lucid", "simonyan", "yosinski", "fooling", "none"],
        help="the recipe (default lucid; none: options only)",
    )
    v.add_argument("--steps", type=int, default=None, help="optimization steps (default: preset's)")
    v.add_argument("--size", type=int, default=None, help="image size (default: the model's)")
    v.add_argument("--batch", type=int, default=None, help="images per objective (default 1)")
    v.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    v.add_argument(
        "--option",
        "-O",
        action="append",
        metavar="KEY=VALUE",
        help="an option, e.g. -O lr=0.1 -O param=pixels (repeatable)",
    )
    v.add_argument("--out", "-o", default="convscope-vis", help="output folder")
    v.set_defaults(run="convscope.cli.visualize:run")

    si = sub.add_parser("site", help="a static microscope site: pages per layer, unit and image")
    si.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help=f"model, or MODULE:FACTORY (default {DEFAULT_MODEL})",
    )
    si.add_argument(
        "--corpus", "-c", default="samples-crops:64", help="folder, samples or samples-crops[:N]"
    )
    si.add_argument(
        "--layers", "-l", default=None, help="comma-separated layers (default: the pipeline stages)"
    )
    si.add_argument(
        "--units", default=None, help="unit pages per layer: N strongest, or channels like 0-7,12"
    )
    si.add_argument("--images", type=int, default=None, help="image pages (default: every image)")
    si.add_argument("-k", type=int, default=9, help="top images per unit (default 9)")
    si.add_argument(
        "--methods",
        default="saliency,guided_backprop,gradcam,layercam",
        help="attribution methods on the image pages (comma-separated)",
    )
    si.add_argument(
        "--featurevis-steps", type=int, default=64, help="steps per unit visualization (0: none)"
    )
    si.add_argument("--featurevis-size", type=int, default=128, help="visualization size (px)")
    si.add_argument("--embedding", choices=("tsne", "pca", "umap"), default="tsne")
    si.add_argument(
        "--cache", default=None, help="feature cache folder (default ~/.cache/convscope)"
    )
    si.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    si.add_argument("--rebuild", action="store_true", help="recompute everything")
    si.add_argument("--no-progress", action="store_true", help="no progress bars")
    si.add_argument("--out", "-o", default="convscope-site", help="the site's folder")
    si.set_defaults(run="convscope.cli.site:run")

    sv = sub.add_parser("serve", help="the live explorer: a local web app over the model")
    sv.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help=f"model, or MODULE:FACTORY (default {DEFAULT_MODEL})",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1, loopback)")
    sv.add_argument("--port", "-p", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--site", default=None, help="a folder made by convscope site (top patches)")
    sv.add_argument(
        "--cache", default=None, help="uploads and maps (default ~/.cache/convscope/serve)"
    )
    sv.set_defaults(run="convscope.cli.serve:run")

    d = sub.add_parser("demo", help="build the demo page from the sample photos")
    d.add_argument("--out", "-o", default="convscope-demo", help="output folder")
    d.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    d.set_defaults(run="convscope.cli.demo:run")

    sh = sub.add_parser("shapes", help="a sheet of shapes-world samples with their masks")
    sh.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    sh.add_argument("--seed", type=int, default=0, help="the world's seed (default 0)")
    sh.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    sh.add_argument("--max-count", type=int, default=3, help="at most this many shapes (default 3)")
    sh.add_argument("--gray28", action="store_true", help="lecture 004's 28x28 grayscale setting")
    sh.add_argument("--out", "-o", default="convscope-shapes", help="output folder")
    sh.set_defaults(run="convscope.cli.shapes:run")

    tr = sub.add_parser("train", help="train a shapes-world model (shapes-cnn, mlp, ...)")
    tr.add_argument(
        "model", help="shapes-cnn, softmax-regression, mlp or multitask (with --strategy)"
    )
    tr.add_argument("--strategy", default=None, help="multitask only: accumulate, random or gated")
    tr.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the recipe's)"
    )
    tr.add_argument(
        "--seed", type=int, default=0, help="seed of the data and the weights (default 0)"
    )
    tr.add_argument(
        "--batch-size", type=int, default=None, help="examples per batch (default: the recipe's)"
    )
    tr.add_argument(
        "--out", "-o", default="convscope-train", help="folder for checkpoint, weights, log"
    )
    tr.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    tr.set_defaults(run="convscope.cli.train:run")

    rf = sub.add_parser(
        "rf", help="a layer's receptive field: its geometry, a unit's input box, its picture"
    )
    rf.add_argument("images", nargs="*", metavar="IMAGE", help="photo(s) to draw on / average")
    rf.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    rf.add_argument("--layer", "-l", required=True, help="layer name (_blocks.4, _swish@1)")
    rf.add_argument(
        "--unit", "-u", default=None, metavar="I,J", help="map position (default centre)"
    )
    rf.add_argument("--input-size", default=None, metavar="H[,W]", help="input size (default 224)")
    rf.add_argument("--erf", action="store_true", help="also the effective receptive field")
    rf.add_argument("--out", "-o", default=None, help="folder for rf.png (and erf.png)")
    rf.set_defaults(run="convscope.cli.rf:run")

    la = sub.add_parser("layers", help="list a model's layers with output shapes")
    la.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    la.add_argument("--input-size", type=int, default=None, help="input height/width (default 224)")
    la.set_defaults(run="convscope.cli.listing:layers")

    for name, helptext in (
        ("models", "list the registered models"),
        ("methods", "list the explanation methods"),
        ("samples", "list the sample photos (use as sample:NAME)"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.set_defaults(run=f"convscope.cli.listing:{name}")
    return p


def _model_output(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output",
        default=None,
        metavar="INDEX|KEY",
        help="for a model that returns a tuple or dict: which element is the logits (e.g. 0)",
    )


def _max_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="accept images of up to N pixels (default: Pillow's decompression-bomb limit, "
        "about 89 million); raise it only for files you trust",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    module, _, func = args.run.partition(":")
    if os.environ.get("CONVSCOPE_TUNE_MALLOC", "1") != "0":
        from convscope.core.allocator import tune_cpu_allocator

        tune_cpu_allocator()  # this process is ours: reuse large blocks (core/allocator.py)
    _notes_as_lines()
    try:
        if getattr(args, "max_pixels", None) is not None:
            _set_max_pixels(args.max_pixels)
        code = int(getattr(importlib.import_module(module), func)(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:
        print("convscope: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        from convscope.errors import ConvscopeError

        if isinstance(e, ConvscopeError):
            msg = str(e)
        else:
            msg = f"{type(e).__name__}: {e} (run with --debug for the traceback)"
        print(f"convscope: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2 if isinstance(e, ConvscopeError) else 1


def _set_max_pixels(n: int) -> None:
    """``--max-pixels``: Pillow's decompression-bomb limit for this process (ours, in the CLI)."""
    from convscope.errors import ConvscopeError

    if n < 1:
        raise ConvscopeError(f"--max-pixels must be at least 1, not {n}")
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = n


def _notes_as_lines() -> None:
    """Show convscope's warnings (what it chose for you, e.g. a class matched by a word of its name)
    as one ``convscope: note:`` line on stderr; other warnings as Python shows them."""
    import warnings

    from convscope.errors import ConvscopeWarning

    shown = warnings.showwarning
    if getattr(shown, "convscope_notes", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ConvscopeWarning):
            print(f"convscope: note: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    show.convscope_notes = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def _closed_pipe() -> int:
    """The reader of stdout went away (``convscope layers | head -3``): stop quietly, as a Unix tool
    killed by SIGPIPE does (status 128 + 13). stdout is pointed at /dev/null so that the
    interpreter's last flush does not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
