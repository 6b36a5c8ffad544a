#!/usr/bin/env python
"""Push a `save_pretrained` / `save_for_hub` folder to the Hugging Face Hub, optionally (re)writing its model card.

    python scripts/push_to_hub.py outputs/student --repo-id me/evdistill-ddd17 --private \
        --method evdistill --teacher me/deeplab-image-teacher --dataset ddd17 \
        --metric mean_iou=0.5802 --metric pixel_accuracy=0.8843 --recipe hub_configs/recipes/evdistill.yaml

Any card option (--method, --metric, --metrics-json, --dataset, --teacher, --base-model, --recipe, --tag,
--description, --license, --write-card) writes README.md from the folder's config.json before the upload; without
them the folder is uploaded as it is. Authentication: --token, else HF_TOKEN / the saved login. HF_ENDPOINT selects
another Hub.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _metric(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--metric expects NAME=VALUE, got {text!r}")
    try:
        return name, float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--metric {name}: {value!r} is not a number") from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="save_pretrained folder (config.json + weights)")
    parser.add_argument("--repo-id", required=True, help="namespace/name of the target repo")
    parser.add_argument("--token", default=None, help="write token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--commit-message", default="Upload hf_crossdistill model", help="commit message")
    parser.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    parser.add_argument("--ignore", action="append", default=[], help="glob pattern not to upload (repeatable)")
    card = parser.add_argument_group("model card (any of these rewrites README.md)")
    card.add_argument("--write-card", action="store_true", help="write README.md even without other card options")
    card.add_argument("--method", choices=["evdistill", "unidistill"], default=None, help="distillation method")
    card.add_argument("--teacher", default=None, help="teacher checkpoint (Hub id or description)")
    card.add_argument("--base-model", action="append", default=[], help="Hub id the weights started from")
    card.add_argument("--dataset", action="append", default=[], help="dataset name / Hub id (repeatable)")
    card.add_argument("--eval-dataset", default=None, help="dataset the metrics were measured on")
    card.add_argument("--eval-split", default="validation", help="split the metrics were measured on")
    card.add_argument("--metric", action="append", type=_metric, default=[], help="NAME=VALUE (repeatable)")
    card.add_argument("--metrics-json", type=Path, default=None, help="JSON object of metrics (e.g. eval output)")
    card.add_argument("--recipe", type=Path, default=None, help="training recipe YAML / JSON to embed")
    card.add_argument("--tag", action="append", default=[], help="extra tag (repeatable)")
    card.add_argument("--license", default="apache-2.0", help="license id (default: apache-2.0)")
    card.add_argument("--description", default=None, help="paragraph under the title")
    return parser


def _card_requested(args: argparse.Namespace) -> bool:
    return bool(
        args.write_card
        or args.method
        or args.teacher
        or args.base_model
        or args.dataset
        or args.metric
        or args.metrics_json
        or args.recipe
        or args.tag
        or args.description
    )


def _metrics(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if args.metrics_json is not None:
        if not args.metrics_json.is_file():
            parser.error(f"--metrics-json {args.metrics_json} does not exist")
        try:
            loaded = json.loads(args.metrics_json.read_text())
        except json.JSONDecodeError as err:
            parser.error(f"--metrics-json {args.metrics_json} is not valid JSON: {err}")
        if not isinstance(loaded, dict):
            parser.error(f"--metrics-json {args.metrics_json} must hold a JSON object name -> number")
        # Trainer prefixes evaluation metrics with "eval_"; the card names them without it.
        metrics.update({k.removeprefix("eval_"): v for k, v in loaded.items() if isinstance(v, (int, float))})
    metrics.update(dict(args.metric))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"folder {args.folder} does not exist")
    if not (args.folder / "config.json").is_file():
        parser.error(f"{args.folder} has no config.json: write it with save_pretrained / save_for_hub first")

    from hf_crossdistill.hub import make_model_card, push_folder_to_hub

    if _card_requested(args):
        card = make_model_card(
            args.folder,
            repo_id=args.repo_id,
            method=args.method,
            teacher=args.teacher,
            base_model=args.base_model or None,
            datasets=args.dataset or None,
            metrics=_metrics(args, parser) or None,
            eval_dataset=args.eval_dataset,
            eval_split=args.eval_split,
            license=args.license,
            tags=args.tag or None,
            recipe=args.recipe,
            description=args.description,
        )
        card.save(args.folder / "README.md")
        print(f"wrote {args.folder / 'README.md'}")
    info = push_folder_to_hub(
        args.folder,
        args.repo_id,
        token=args.token,
        private=args.private,
        commit_message=args.commit_message,
        revision=args.revision,
        ignore_patterns=args.ignore or None,
    )
    print(f"pushed {args.folder} to {args.repo_id}: {info.commit_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
