"""Command line: ``instructfast score``, ``instructfast indicators``, ``instructfast rules``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from ._native import IMPL_REASON
from .errors import InstructfastError, InstructfastWarning
from .io import FORMATS


def _parse_map(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        if "=" not in part:
            msg = f"--columns expects KEY=COLUMN pairs separated by commas, got {part!r}"
            raise SystemExit(msg)
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _parse_options(items: list[str] | None) -> dict[str, object]:
    """``KEY=VALUE`` pairs; values that parse as int/float become numbers."""
    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            msg = f"--option expects KEY=VALUE, got {item!r}"
            raise SystemExit(msg)
        k, v = item.split("=", 1)
        val: object = v
        for conv in (int, float):
            try:
                val = conv(v)
                break
            except ValueError:
                pass
        out[k.strip()] = val
    return out


def _parse_list(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _cmd_score(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .pipeline import score_file

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = tqdm(unit=" rows", unit_scale=True, desc="scoring", disable=not show, dynamic_ncols=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InstructfastWarning)
        try:
            res = score_file(
                args.input,
                args.output,
                indicators=_parse_list(args.indicators),
                rule=args.rule,
                columns=_parse_map(args.columns),
                input_format=args.input_format,
                output_format=args.output_format,
                models=_parse_map(args.models),
                threads=args.threads,
                batch_rows=args.batch_rows,
                mtld_threshold=args.mtld_threshold,
                device=args.device,
                options=_parse_options(args.option),
                checkpoint_rows=args.checkpoint_rows,
                restart=args.restart,
                on_progress=bar.update,
            )
        finally:
            bar.close()
    dt = time.perf_counter() - t0
    rep = res.report
    print(f"scored {res.rows} rows in {dt:.2f} s ({(res.rows - res.resumed_rows) / max(dt, 1e-9):,.0f} rows/s)"
          + (f", resumed after {res.resumed_rows} rows" if res.resumed_rows else ""))
    print(f"input layout: {rep.layout}; text core: {rep.impl}")
    if rep.kept_from_input:
        print(f"kept from input (not recomputed): {', '.join(rep.kept_from_input)}")
    if rep.unavailable:
        print("not computed:")
        for name, why in rep.unavailable.items():
            print(f"  {name}: {why}")
    print(res.summary.format(rep.nulls))
    for col, what in rep.notes.items():  # caveats such as approximate kNN search and its measured recall
        print(f"note {col}: " + "; ".join(f"{k}: {v}" for k, v in what.items()))
    print(f"wrote {res.output}")
    for w in caught:
        if not issubclass(w.category, InstructfastWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return 0


def _cmd_indicators(args: argparse.Namespace) -> int:
    from .indicators import describe
    from .indicators.base import ScoreOptions

    print(f"text core: {IMPL_REASON}")
    for info in describe(ScoreOptions(models=_parse_map(args.models) or {})):
        state = "available" if info.availability.ok else f"unavailable: {info.availability.explain()}"
        models = ", ".join(info.models) or "none"
        print(f"{info.name:<11} columns: {', '.join(info.columns)}")
        print(f"{'':<11} models: {models}; scope: {info.scope}; {state}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import SLOTS, ModelNotFound, cache_dir, resolve

    models = _parse_map(args.models) or {}
    print(f"cache: {cache_dir()}")
    for slot in SLOTS.values():
        try:
            state = "present: " + resolve(slot.name, models).describe()
        except ModelNotFound:
            state = "missing: not found in any of those places"
        print(f"{slot.name:<9} {slot.description}")
        print(f"{'':<9} paper: {slot.paper_model}; looked in: models=/--models {slot.name}=..., env {slot.env}"
              + (f", packaged default ({slot.offline_default})" if slot.offline_default else ""))
        print(f"{'':<9} {state}")
        print(f"{'':<9} to get it: {slot.how_to_get}")
    return 0


def _cmd_index_build(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .io import scan_file
    from .pool_index import build_pool

    if args.output.exists() and not args.overwrite:  # before the (long) embedding pass
        msg = f"instructfast: error: {args.output} already exists; pass --overwrite to replace it"
        raise SystemExit(msg)
    src = scan_file(args.input, format=args.input_format, batch_rows=args.batch_rows)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=src.num_rows, unit=" rows", unit_scale=True, desc="embedding", disable=not show)
    t0 = time.perf_counter()
    try:
        pool = build_pool(
            src.reader(),
            columns=_parse_map(args.columns),
            vectors_column=args.vectors,
            models=_parse_map(args.models),
            device=args.device,
            threads=args.threads,
            batch_rows=args.batch_rows,
            exact_max=args.exact_max,
            nlist=args.nlist,
            source=str(Path(args.input).resolve()),
            progress=bar.update,
        )
    finally:
        bar.close()
    out = pool.save(args.output, overwrite=args.overwrite)
    m = pool.manifest
    left = m["source"]["left_out"]
    print(f"pool of {pool.count} vectors (dim {pool.dim}, {m['index']['type']} index) from {m['source']['rows']} rows "
          f"in {time.perf_counter() - t0:.1f} s; vectors: {m['vectors']}")
    if left:
        print("left out: " + "; ".join(f"{r}: {n}" for r, n in left.items()))
    print(f"wrote {out}  (score against it with --option knn_pool={out})")
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from .rules import RULES

    for r in RULES.values():
        terms = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):g}*{k}" for k, c in r.coefficients.items())
        print(f"{r.name}: {r.intercept:g} {terms}")
        print(f"  {r.provenance}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instructfast", description="Score and select instruction-tuning data.")
    p.add_argument("--version", action="version", version=f"instructfast {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="score a record file (JSON, JSONL, Parquet, Arrow IPC, CSV)")
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", type=Path, required=True, help="output file; format from extension")
    s.add_argument("-i", "--indicators", help="comma-separated indicators or columns (default: all available)")
    s.add_argument("-r", "--rule", help="rule preset name or rule JSON file; adds predicted_log_loss")
    s.add_argument("--columns", help="explicit column map, e.g. instruction=question,output=answer")
    s.add_argument("--models", help="model slots, e.g. lm=/models/llama,reward=/models/rm")
    s.add_argument("--input-format", choices=FORMATS)
    s.add_argument("--output-format", choices=FORMATS)
    s.add_argument("-t", "--threads", type=int, default=None, help="native threads (default: all cores)")
    s.add_argument("--batch-rows", type=int, default=65_536)
    s.add_argument("--mtld-threshold", type=float, default=0.72)
    s.add_argument("--device", default=None, help="cpu, cuda or cuda:N for model indicators (default: auto)")
    s.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="indicator option, repeatable: prompt_template=alpaca|plain|FORMAT, on_overflow=null|truncate, "
        "lm_token_budget=N, lm_max_length=N, lm_pad_slack=F, lm_dtype=float32|bfloat16, "
        "knn_vectors=COLUMN, knn_pool=DIR, knn_table_in_pool=true, knn_exact_max=N, knn_recall_target=F",
    )
    s.add_argument("--checkpoint-rows", type=int, default=100_000, help="rows per checkpoint part")
    s.add_argument("--restart", action="store_true", help="discard a partial earlier run instead of resuming it")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None)
    g.add_argument("--no-progress", dest="progress", action="store_false")
    s.set_defaults(func=_cmd_score)

    i = sub.add_parser("indicators", help="list indicators, their columns, models and availability")
    i.add_argument("--models", help="model slots to check, e.g. lm=/models/llama")
    i.set_defaults(func=_cmd_indicators)

    m = sub.add_parser("models", help="list model slots, where each is looked for, and how to get it")
    m.add_argument("--models", help="model slots to check, e.g. lm=/models/llama")
    m.set_defaults(func=_cmd_models)

    r = sub.add_parser("rules", help="list rule presets")
    r.set_defaults(func=_cmd_rules)

    ix = sub.add_parser("index", help="reference pools for knn_<i>")
    ixs = ix.add_subparsers(dest="index_command", required=True)
    b = ixs.add_parser("build", help="embed a record file into a reference pool folder (vectors, index, manifest)")
    b.add_argument("input", type=Path)
    b.add_argument("-o", "--output", type=Path, required=True, help="pool folder to write")
    b.add_argument("--columns", help="explicit column map, e.g. instruction=question,output=answer")
    b.add_argument("--vectors", metavar="COLUMN", help="use this column's embeddings instead of the embedder")
    b.add_argument("--models", help="embedder slot, e.g. embedder=/models/minilm")
    b.add_argument("--input-format", choices=FORMATS)
    b.add_argument("-t", "--threads", type=int, default=None)
    b.add_argument("--batch-rows", type=int, default=65_536)
    b.add_argument("--device", default=None, help="cpu, cuda or cuda:N for the embedder (default: auto)")
    b.add_argument("--exact-max", type=int, default=200_000, help="larger pools also get an IVF index")
    b.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4*sqrt(count))")
    b.add_argument("--overwrite", action="store_true", help="replace an existing pool folder")
    bg = b.add_mutually_exclusive_group()
    bg.add_argument("--progress", dest="progress", action="store_true", default=None)
    bg.add_argument("--no-progress", dest="progress", action="store_false")
    b.set_defaults(func=_cmd_index_build)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (InstructfastError, ValueError, TypeError) as e:
        print(f"instructfast: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "output", None)
        hint = f"; finished parts are kept in {out}.partial/ and the same command resumes" if out else ""
        print(f"instructfast: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
