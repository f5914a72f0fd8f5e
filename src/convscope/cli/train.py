"""``convscope train``: train a shapes-world model (checkpoints, resume, progress)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from convscope.train.trainer import train_model

    result = train_model(
        args.model,
        strategy=args.strategy,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        out=args.out,
        resume=args.resume,
        progress=True,
    )
    last = result.log["eval"][-1]
    acc = last["accuracy"]
    if isinstance(acc, dict):
        text = ", ".join(f"{task} {value:.1%}" for task, value in acc.items())
    else:
        text = f"{acc:.1%}"
    print(f"{result.name}: held-out accuracy after {last['step']} steps: {text}")
    for key in ("filters_init", "filters_trained"):
        if key in result.log:
            f = result.log[key]
            print(
                f"first-layer filters ({key.split('_')[1]}): {f['oriented_fraction']:.0%} with a "
                f"dominant orientation, {f['mean_low_frequency']:.0%} of their power at low frequencies"
            )
    for path in result.files:
        print(path)
    return 0
