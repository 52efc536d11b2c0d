"""``fraudstream models list | show | verify | promote | retire``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from services import settings as cfg
from services.core.topics import MODEL_UPDATES
from services.registry import loader
from services.registry.errors import RegistryError
from services.registry.store import Registry
from services.runtime import configure_logging, run_command

PROG = "fraudstream models"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and manage the model registry. Models are named NAME@ALIAS "
        "(champion, challenger) or NAME@VERSION.",
    )
    cfg.add_flags(parser, cfg.ModelsSettings)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list models, versions, status and aliases")
    ls.add_argument("name", nargs="?", help="only this model name")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    show = sub.add_parser("show", help="show a model's manifest")
    show.add_argument("ref", help="NAME@ALIAS or NAME@VERSION")
    show.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    verify = sub.add_parser("verify", help="verify sha256, feature fingerprint and model text")
    verify.add_argument("ref", help="NAME@ALIAS or NAME@VERSION")
    promote = sub.add_parser("promote", help="make a version champion (rollback: an old one)")
    promote.add_argument("ref", help="NAME@VERSION or NAME@challenger")
    promote.add_argument(
        "--publish", action="store_true", help="also announce it on the models.updates topic (Kafka flags)"
    )
    cfg.add_flags(promote, cfg.KafkaSettings)
    retire = sub.add_parser("retire", help="retire a version (kept on disk)")
    retire.add_argument("ref", help="NAME@VERSION")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        settings = cfg.load(cfg.ModelsSettings, args)
        configure_logging(settings.log_level)
        registry = Registry(settings.registry)
        try:
            return ACTIONS[args.action](registry, args)
        except RegistryError as exc:
            print(f"{PROG} {args.action}: {exc}", file=sys.stderr)
            return 1

    return run_command(PROG, body)


def _list(registry: Registry, args: argparse.Namespace) -> int:
    names = [args.name] if args.name else registry.names()
    rows = [
        {
            "name": mv.name,
            "version": mv.version,
            "status": mv.status,
            "aliases": list(mv.aliases),
            "created_at": mv.created_at,
        }
        for name in names
        for mv in registry.versions(name)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no models in {registry.root}")
        return 0
    print(f"{'MODEL':<24} {'STATUS':<9} {'ALIASES':<20} CREATED")
    for row in rows:
        ref = f"{row['name']}@{row['version']}"
        print(f"{ref:<24} {row['status']:<9} {','.join(row['aliases']) or '-':<20} {row['created_at']}")
    return 0


def _show(registry: Registry, args: argparse.Namespace) -> int:
    mv = registry.resolve(args.ref)
    manifest = loader.read_manifest(mv)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    print(f"model      {mv.name}@{mv.version} ({mv.status}; {','.join(mv.aliases) or 'no alias'})")
    print(f"created    {manifest['created_at']}  code {str(manifest.get('code_version'))[:12]}")
    print(f"sha256     {manifest['model_sha256']}")
    print(f"features   {len(manifest['feature_names'])} ({manifest['feature_set_fingerprint'][:12]}…)")
    print(f"thresholds {json.dumps(manifest['thresholds'])}")
    window = manifest.get("training_window", {})
    drift = manifest.get("dataset", {}).get("drift", [])
    print(f"trained on {window.get('start', '?')} .. {window.get('end', '?')}  drift scenarios {drift}")
    test = manifest.get("metrics", {}).get("test", {})
    for basis in ("label_based", "truth_based"):
        figures = test.get(basis, {})
        if figures:
            print(f"test {basis.replace('_', '-')}:")
        for key, value in sorted(figures.items()):
            if isinstance(value, int | float):
                print(f"  {key:<28} {value:.4f}")
    return 0


def _verify(registry: Registry, args: argparse.Namespace) -> int:
    mv = registry.resolve(args.ref)
    loaded = loader.load(mv)
    print(f"{loaded.label} ok (sha256 {loaded.sha256[:12]}…)")
    return 0


def _promote(registry: Registry, args: argparse.Namespace) -> int:
    target = registry.resolve(args.ref)
    loader.load(target)  # never promote a model that would not load
    kafka = cfg.load(cfg.KafkaSettings, args) if args.publish else None
    previous = registry.aliases(target.name).get("champion")
    mv = registry.promote(args.ref)
    print(f"{mv.name}@{mv.version} is now champion")
    if kafka is not None and previous != mv.version:
        from services.trainer.lineage import PublishError, announce_manual_promotion

        try:
            update = announce_manual_promotion(kafka, mv, previous)
        except PublishError as exc:
            print(f"{PROG} promote: promoted, but not announced: {exc}", file=sys.stderr)
            return 1
        print(f"announced {update['action']} on {kafka.topic(MODEL_UPDATES)}")
    return 0


def _retire(registry: Registry, args: argparse.Namespace) -> int:
    mv = registry.retire(args.ref)
    print(f"{mv.name}@{mv.version} retired")
    return 0


ACTIONS = {
    "list": _list,
    "show": _show,
    "verify": _verify,
    "promote": _promote,
    "retire": _retire,
}
