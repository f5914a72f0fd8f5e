"""``convscope evaluate``: score methods with faithfulness metrics, as a table (and CSV/JSON)."""

from __future__ import annotations

import argparse
from typing import Any

COLUMNS = (
    # key, header, format
    ("method", "method", "{}"),
    ("deletion_auc", "deletion AUC", "{:.4f}"),
    ("insertion_auc", "insertion AUC", "{:.4f}"),
    ("average_drop", "avg drop %", "{:.2f}"),
    ("increase_in_confidence", "incr. conf. %", "{:.1f}"),
    ("seconds", "time s", "{:.3f}"),
)

LEGEND = "\n".join(
    (
        "deletion AUC: lower is better, insertion AUC: higher is better (RISE, Petsiuk et al. 2018)",
        "avg drop %: lower is better, incr. conf. %: higher is better (Grad-CAM++, Chattopadhay "
        "et al. 2018)",
        "time s: wall time of the method's explain call",
    )
)

CSV_FIELDS = (
    "method",
    "layer",
    "n_images",
    "deletion_auc",
    "insertion_auc",
    "average_drop",
    "increase_in_confidence",
    "seconds",
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (methods x metrics), numbers right-aligned."""
    cells = [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    heads = [head for _, head, _ in COLUMNS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]

    def line(values: list[str]) -> str:
        first = values[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(values[1:], widths[1:]))])

    out = [line(heads), "-" * len(line(heads))]
    out += [line(c) for c in cells]
    return "\n".join(out)


def _csv(rows: list[dict[str, Any]]) -> bytes:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})
    return buf.getvalue().encode()


def _methods(text: str) -> tuple[list[str], bool]:
    """(method names, whether "all" was asked, anywhere in the list); unknown names raise
    MethodError here, before any model is loaded."""
    from convscope.cli.explain import parse_methods

    return parse_methods(text, "--methods")


def run(args: argparse.Namespace) -> int:
    import json

    from convscope.cli.explain import parse_options, parse_target
    from convscope.core.perturbed_batches import check_batch_size
    from convscope.errors import ConvscopeError

    if args.steps < 1:
        raise ConvscopeError("--steps must be at least 1")
    check_batch_size(args.batch_size, "--batch-size")
    names, every = _methods(args.methods)
    options = parse_options(args.option, names)
    targets = [parse_target(t) for t in (args.target or ["top1"])]
    if len(targets) == 1:
        target = targets[0]
    elif len(targets) == len(args.images):
        target = targets
    else:
        raise ConvscopeError(
            f"{len(targets)} --target values for {len(args.images)} images; give one, or one per image"
        )

    import convscope
    from convscope.cli.explain import parse_output
    from convscope.data.inputs import prepare_inputs
    from convscope.metrics import evaluate_comparison

    bundle = convscope.load_model(args.model, output=parse_output(args.output))
    x, _, labels = prepare_inputs(bundle, list(args.images))
    comparison = convscope.compare(
        bundle,
        x,
        names,
        target,
        args.layer,
        batch_size=args.batch_size,
        progress=True,
        options=options,
        skip=every,  # methods named one by one must apply
    )
    rows = evaluate_comparison(bundle, x, comparison, steps=args.steps, batch_size=args.batch_size)
    skipped = [(name, " ".join(why.split())) for name, why in comparison.skipped.items()]
    if not rows:
        raise ConvscopeError("no method could be applied to this model")

    shown = target if not isinstance(target, list) else "one per image"
    print(
        f"{bundle.name} on {len(labels)} image(s) ({', '.join(labels)}), target {shown}, "
        f"{args.steps} steps"
    )
    print(format_table(rows))
    print(LEGEND)
    for name, why in skipped:
        print(f"note: skipped {name}: {why}")
    if args.out:
        from convscope.fileio import write_all

        meta = {
            "model": bundle.name,
            "images": list(args.images),
            "labels": labels,
            "target": target,
            "layer": args.layer,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "options": options,
            "deletion_baseline": "constant (black image)",
            "insertion_baseline": "blur (sigma 5, 11 x 11)",
            "skipped": [{"method": n, "reason": why} for n, why in skipped],
            "rows": rows,
        }
        files = {
            "metrics.csv": _csv(rows),
            "metrics.json": (json.dumps(meta, indent=2) + "\n").encode(),
        }
        for path in write_all(args.out, files):
            print(f"wrote {path}")
    return 0
