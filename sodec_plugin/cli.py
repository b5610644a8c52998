"""The `sodec` command line: compress, decompress, info, eval, train."""

from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    from .train.trainer import train

    train(args.config, args.data, args.out, stage=args.stage, max_steps=args.max_steps, resume=args.resume,
          recipe=args.recipe, device=args.device, init_from=args.init_from)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sodec", description="SODEC learned image codec")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model (rate-annealing stages 1-3)")
    t.add_argument("--config", required=True, help="built-in config name (tiny, sodec-lite, sodec-sd21) or config.json")
    t.add_argument("--data", required=True, help="folder of training images")
    t.add_argument("--out", required=True, help="output folder (checkpoints, logs, model)")
    t.add_argument("--stage", type=int, choices=(1, 2, 3), default=1)
    t.add_argument("--max-steps", type=int, default=None, help="stop after this global step (resume later)")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("--recipe", default=None, help="built-in recipe name or recipe JSON (default: by config)")
    t.add_argument("--device", default=None)
    t.add_argument("--init-from", default=None, help="model folder to start from (default: previous stage in --out)")
    t.set_defaults(func=_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
