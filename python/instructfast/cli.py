"""Command line: ``instructfast score``, ``select``, ``report``, ``indicators``, ``rules`` and the rest."""

from __future__ import annotations

import argparse
import sys
import time
import typing
import warnings
from pathlib import Path
from typing import Any

from ._native import IMPL_REASON
from ._typing import Precision
from ._version import __version__
from .errors import InstructfastError, InstructfastWarning, SchemaError
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
    """``KEY=VALUE`` pairs; values stay strings, each option parses its own by its type."""
    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            msg = f"--option expects KEY=VALUE, got {item!r}"
            raise SystemExit(msg)
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# Dedicated flags that set an option: --on-invalid-utf8=replace is --option on_invalid_utf8=replace.
_OPTION_FLAGS = ("on_invalid_utf8", "verify_models", "precision")


def _score_options(args: argparse.Namespace) -> dict[str, object]:
    out = _parse_options(args.option)
    for key in _OPTION_FLAGS:
        value = getattr(args, key, None)
        if value is None:
            continue
        if key in out and out[key] != value:
            msg = f"--{key.replace('_', '-')}={value} and --option {key}={out[key]} disagree"
            raise SystemExit(msg)
        out[key] = value
    return out


def _parse_list(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _cmd_score(args: argparse.Namespace) -> int:
    import logging

    from tqdm.auto import tqdm

    from .pipeline import score_file, score_files
    from .shards import is_many

    many = is_many(args.input)
    opts = _score_options(args)
    for key, value in (("knn_scope", args.knn_scope), ("knn_embedding_dtype", args.embedding_dtype)):
        if value is not None:
            opts[key] = value
    common = {
        "indicators": _parse_list(args.indicators),
        "rule": args.rule,
        "columns": _parse_map(args.columns),
        "input_format": args.input_format,
        "models": _parse_map(args.models),
        "threads": args.threads,
        "batch_rows": args.batch_rows,
        "mtld_threshold": args.mtld_threshold,
        "device": args.device,
        "options": opts,
        "checkpoint_rows": args.checkpoint_rows,
        "restart": args.restart,
        "sidecar": args.sidecar,
        "id_column": args.id_column,
        "keep_embeddings": args.keep_embeddings,
    }
    if args.engine == "ray":
        from .ray import RayEngine

        engine = RayEngine(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker)
        common["row_runner"] = engine.row_runner()
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = tqdm(unit=" rows", unit_scale=True, desc="scoring", disable=not show, dynamic_ncols=True)
    handler = logging.StreamHandler(sys.stderr)  # what a resumed run reused, shard by shard
    handler.setFormatter(logging.Formatter("instructfast: %(message)s"))
    logger = logging.getLogger("instructfast")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InstructfastWarning)
        try:
            if many:
                res: Any = score_files(
                    args.input, args.output, output_format=args.output_format or "parquet", on_progress=bar.update,
                    **common,
                )  # fmt: skip
            else:
                res = score_file(
                    args.input, args.output, output_format=args.output_format, on_progress=bar.update, **common
                )
        finally:
            bar.close()
            logger.removeHandler(handler)
    dt = time.perf_counter() - t0
    rep = res.report
    if many:
        done = [s for s in res.shards if s.status != "skipped"]
        resumed = sum(s.resumed_rows for s in res.shards)
        print(
            f"scored {res.rows} rows in {len(res.shards)} shard(s) in {dt:.2f} s "
            f"({len(done)} written, {len(res.shards) - len(done)} already done"
            + (f", {resumed} rows resumed from checkpoints" if resumed else "")
            + ")"
        )
    else:
        print(
            f"scored {res.rows} rows in {dt:.2f} s ({(res.rows - res.resumed_rows) / max(dt, 1e-9):,.0f} rows/s)"
            + (f", resumed after {res.resumed_rows} rows" if res.resumed_rows else "")
        )
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
    print(f"wrote {res.output}" + (f" (manifest {res.manifest.name})" if many else ""))
    for w in caught:
        if not issubclass(w.category, InstructfastWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import require, run
    from .serve.app import ServeConfig

    require()
    opts = _score_options(args)
    flags = {
        "mtld_threshold": args.mtld_threshold,
        "serve_max_body_mb": args.max_body_mb,
        "serve_max_wait_ms": args.max_wait_ms,
        "serve_max_batch_rows": args.max_batch_rows,
        "serve_max_queue_rows": args.max_queue_rows,
        "serve_on_full": args.on_full,
    }
    opts.update({k: v for k, v in flags.items() if v is not None})
    config = ServeConfig(
        indicators=_parse_list(args.indicators),
        rule=args.rule,
        columns=_parse_map(args.columns),
        models=_parse_map(args.models),
        options=opts,
        threads=args.threads,
        device=args.device,
    )
    # every setting is checked here, before any worker starts or model loads: a typo fails at once
    config.scorer(load=False).close()
    run(
        config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        graceful_timeout=args.graceful_timeout,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


def _cmd_join(args: argparse.Namespace) -> int:
    from .shards import join_files

    written = join_files(
        args.data, args.scores, args.output, id_column=args.id_column, columns=_parse_map(args.columns),
        output_format=args.output_format,
    )  # fmt: skip
    rows = sum(n for _, n in written)
    print(f"joined {rows} rows of {len(written)} file(s); wrote {args.output}")
    return 0


def _cmd_indicators(args: argparse.Namespace) -> int:
    from .indicators import describe
    from .options import ScoreOptions

    print(f"text core: {IMPL_REASON}")
    for info in describe(ScoreOptions(models=_parse_map(args.models) or {})):
        state = "available" if info.availability.ok else f"unavailable: {info.availability.explain()}"
        models = ", ".join(info.models) or "none"
        print(f"{info.name:<11} columns: {', '.join(info.columns)}")
        print(f"{'':<11} models: {models}; scope: {info.scope}; {state}")
    return 0


def _cmd_options(args: argparse.Namespace) -> int:
    from .options import describe_options

    group = None
    for row in describe_options():
        if row["group"] != group:
            group = row["group"]
            print(f"{group}:")
        default = "unset" if row["default"] is None else repr(row["default"])
        print(f"  {row['key']:<24} {row['type']:<22} default {default}")
        print(f"  {'':<24} {row['doc']}")
    print("pass any of them as --option KEY=VALUE (score), or options={KEY: VALUE} in Python")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .errors import ModelNotFoundError
    from .models.registry import SLOTS, cache_dir, resolve

    if args.rehash:
        from .models.verify import rehash

        for path in args.rehash:
            if not Path(path).exists():
                msg = f"instructfast: error: {path}: no such file or folder"
                raise SystemExit(msg)
            print(f"recorded the sha256 of {rehash(path)} files of {path} (later loads are checked against them)")
        return 0
    models = _parse_map(args.models) or {}
    print(f"cache: {cache_dir()}")
    for slot in SLOTS.values():
        try:
            state = "present: " + resolve(slot.name, models).describe()
        except ModelNotFoundError:
            state = "missing: not found in any of those places"
        print(f"{slot.name:<9} {slot.description}")
        print(
            f"{'':<9} paper: {slot.paper_model}; looked in: models=/--models {slot.name}=..., env {slot.env}"
            + (f", packaged default ({slot.offline_default})" if slot.offline_default else "")
        )
        print(f"{'':<9} {state}")
        print(f"{'':<9} to get it: {slot.how_to_get}")
        for cmd in slot.export_commands:
            print(f"{'':<9} export: {cmd}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import json
    import os

    from .models.export import export

    if Path(str(args.src)).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
    t0 = time.perf_counter()
    dest = export(
        args.kind,
        args.src,
        args.dest,
        max_length=args.max_length,
        opset=args.opset,
        revision=args.revision,
        overwrite=args.overwrite,
        fuse=args.fuse,
        packed=args.packed,
    )
    m = json.loads((dest / "manifest.json").read_text())
    v = m.get("verification", {})
    print(
        f"exported {args.kind} from {args.src} to {dest} in {time.perf_counter() - t0:.1f} s "
        f"(opset {m['opset']}, max length {m['max_length']}); ONNX Runtime vs torch max |diff| "
        f"{max(v.get('max_abs_diff_alone', 0), v.get('max_abs_diff_batched', 0)):.2g} (tolerance {v.get('tolerance')})"
    )
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
            ivf_storage=args.ivf_storage,
            source=str(Path(args.input).resolve()),
            progress=bar.update,
        )
    finally:
        bar.close()
    out = pool.save(args.output, overwrite=args.overwrite)
    m = pool.manifest
    left = m["source"]["left_out"]
    print(
        f"pool of {pool.count} vectors (dim {pool.dim}, {m['index']['type']} index) from {m['source']['rows']} rows "
        f"in {time.perf_counter() - t0:.1f} s; vectors: {m['vectors']}"
    )
    if left:
        print("left out: " + "; ".join(f"{r}: {n}" for r, n in left.items()))
    print(f"wrote {out}  (score against it with --option knn_pool={out})")
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    import numpy as np
    import pyarrow as pa

    from .io import read_table, write_table
    from .selection import select

    table = read_table(args.input, format=args.input_format)
    seeds = None
    if args.already_selected is not None:
        st = read_table(args.already_selected)
        if "position" not in st.column_names:
            msg = f"{args.already_selected}: expected a `position` column (as --positions writes); found {st.column_names}"
            raise SchemaError(msg)
        seeds = st.column("position").to_numpy(zero_copy_only=False)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    t0 = time.perf_counter()
    res = select(
        table,
        k=args.top,
        fraction=args.fraction,
        method=args.method,
        seed=args.seed,
        rule=args.rule,
        score_column=args.score_column,
        embeddings=args.embeddings,
        already_selected=seeds,
        clusters=args.clusters,
        columns=_parse_map(args.columns),
        models=_parse_map(args.models),
        device=args.device,
        threads=args.threads,
        progress=show,
    )
    write_table(res.table, args.output, format=args.output_format)
    print(res.summary() + f" in {time.perf_counter() - t0:.2f} s")
    print(f"wrote {args.output}")
    if args.positions is not None:
        cols = {"position": pa.array(res.positions, pa.int64())}
        if res.clusters is not None:
            cols["cluster"] = pa.array(np.asarray(res.clusters), pa.int64())
        write_table(pa.table(cols), args.positions)
        print(f"wrote {args.positions}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    res = report(
        args.inputs,
        output=args.output,
        selected=args.selected,
        by=args.by,
        labels=_parse_list(args.labels),
        indicators=_parse_list(args.indicators),
        rule=args.rule,
        embeddings=args.embeddings,
        embed=args.embed,
        columns=_parse_map(args.columns),
        title=args.title,
        bins=args.bins,
        sample_rows=args.sample_rows,
        projection_rows=args.projection_rows,
        examples=args.examples,
        max_chars=args.max_chars,
        max_groups=args.max_groups,
        seed=args.seed,
        models=_parse_map(args.models),
        device=args.device,
        threads=args.threads,
    )
    sample = "all rows" if res.exact else f"a sample of {res.sample_rows:,} rows"
    print(
        f"report of {res.rows:,} rows ({len(res.columns)} columns; quantiles and correlations on {sample}"
        + (f"; {res.selected:,} selected rows" if args.selected is not None else "")
        + (f"; projection of {res.projection_rows:,} rows" if res.projection_rows else "")
        + f") in {res.seconds:.2f} s, {res.bytes / 2**20:.2f} MiB"
    )
    print(f"wrote {res.path}")
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from .rules import RULES

    for r in RULES.values():
        terms = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):g}*{k}" for k, c in r.coefficients.items())
        print(f"{r.name}: {r.intercept:g} {terms}")
        print(f"  {r.provenance}")
    return 0


def _scoring_arguments(p: argparse.ArgumentParser, option_examples: str) -> None:
    """What `score` and `serve` share, so the service is configured as a file run is: indicators, models, options."""
    p.add_argument("-i", "--indicators", help="comma-separated indicators or columns (default: all available)")
    p.add_argument("-r", "--rule", help="rule preset name or rule JSON file; adds predicted_log_loss")
    p.add_argument("--columns", help="explicit column map, e.g. instruction=question,output=answer")
    p.add_argument("--models", help="model slots, e.g. lm=/models/llama,reward=/models/rm")
    p.add_argument("-t", "--threads", type=int, default=None, help="native threads (default: all cores)")
    p.add_argument("--mtld-threshold", type=float, default=None, help="MTLD factor threshold (default 0.72)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N for model indicators (default: auto)")
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help=f"an option, repeatable, e.g. {option_examples}; `instructfast options` lists every key with its type "
        "and default",
    )
    p.add_argument(
        "--on-invalid-utf8",
        choices=("error", "replace"),
        default=None,
        help="invalid UTF-8 or a lone surrogate in the input: an error naming file, line and column (default), "
        "or replace it with U+FFFD (rows counted; the one case where a text column of the output differs)",
    )
    p.add_argument(
        "--precision",
        choices=typing.get_args(Precision),
        default=None,
        help="numeric precision of the model slots that have it: bf16/fp16 the torch LM, int8 the ONNX models, "
        "auto the fastest this machine runs (else fp32, with a note); per slot: --option lm_precision=... "
        "(default fp32; the LM on CUDA bf16)",
    )
    p.add_argument(
        "--verify-models",
        choices=("cached", "full"),
        default=None,
        help="model file hashes: re-hashed when size or mtime change (default, hashes cached) or at every load",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instructfast", description="Score and select instruction-tuning data.")
    p.add_argument("--version", action="version", version=f"instructfast {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "score", help="score a record file, a folder of shards or a glob (JSON, JSONL, Parquet, Arrow IPC, CSV)"
    )
    s.add_argument("input", help="a file, a folder (every record file under it) or a glob such as 'data/*.jsonl'")
    s.add_argument(
        "-o", "--output", type=Path, required=True,
        help="output file (format from extension) or, for a folder or glob, a folder: one output per shard",
    )  # fmt: skip
    s.add_argument("--input-format", choices=FORMATS)
    s.add_argument("--output-format", choices=FORMATS)
    s.add_argument("--batch-rows", type=int, default=65_536)
    _scoring_arguments(s, "prompt_template=plain, on_overflow=truncate, lm_token_budget=4096, knn_pool=DIR")
    s.add_argument("--checkpoint-rows", type=int, default=100_000, help="rows per checkpoint part")
    s.add_argument("--restart", action="store_true", help="discard a partial earlier run instead of resuming it")
    s.add_argument(
        "--sidecar",
        action="store_true",
        help="write only a join key and the indicator columns (join back with `instructfast join`)",
    )
    s.add_argument("--id-column", help="the sidecar's key column (default: shard path and row position)")
    s.add_argument(
        "--knn-scope",
        choices=("union", "shard"),
        default=None,
        help="knn_<i> pool of a folder run: every shard together (default) or each shard alone",
    )
    s.add_argument(
        "--embedding-dtype",
        choices=("float32", "float16"),
        default=None,
        help="how embedding checkpoints are stored (float16 halves the disk)",
    )
    s.add_argument(
        "--keep-embeddings",
        action="store_true",
        help="add the knn embeddings as an `embedding` column (for select --embeddings, index build --vectors)",
    )
    s.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where the per-row work runs: this process, or a Ray cluster (pip install 'instructfast[ray]')",
    )
    s.add_argument("--address", default=None, help="--engine ray: the cluster to join (default: start a local one)")
    s.add_argument("--workers", type=int, default=None, help="--engine ray: scoring actors (default: one per CPU)")
    s.add_argument("--gpus-per-worker", type=float, default=0.0, help="--engine ray: GPUs each actor holds")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None)
    g.add_argument("--no-progress", dest="progress", action="store_false")
    s.set_defaults(func=_cmd_score)

    sv = sub.add_parser(
        "serve",
        help="score records over HTTP (POST /score), concurrent requests merged into shared batches "
        "(pip install 'instructfast[serve]')",
    )
    _scoring_arguments(sv, "knn_pool=DIR (serves knn_<i> against a reference pool), serve_max_wait_ms=10")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one, logged)")
    sv.add_argument("--workers", type=int, default=1, help="processes, each loading the models and batching its own")
    sv.add_argument("--max-body-mb", type=float, default=None, help="larger request bodies get 413 (default 16)")
    sv.add_argument("--max-wait-ms", type=float, default=None, help="how long a request waits for others (default 5)")
    sv.add_argument("--max-batch-rows", type=int, default=None, help="rows per merged batch at most (default 256)")
    sv.add_argument("--max-queue-rows", type=int, default=None, help="rows waiting at most, then 503 (default 4096)")
    sv.add_argument(
        "--on-full", choices=("reject", "wait"), default=None, help="a full queue: 503 with Retry-After, or wait"
    )
    sv.add_argument(
        "--graceful-timeout", type=float, default=30.0, help="seconds in-flight requests get to finish on SIGTERM"
    )
    sv.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    sv.add_argument("--no-access-log", dest="access_log", action="store_false", help="no log line per HTTP request")
    sv.set_defaults(func=_cmd_serve)

    j = sub.add_parser("join", help="attach sidecar scores back onto their data (file to file, or folder to folder)")
    j.add_argument("data", type=Path, help="the data that was scored: a file or a folder of shards")
    j.add_argument("scores", type=Path, help="its sidecar output: a file or a folder written by score --sidecar")
    j.add_argument("-o", "--output", type=Path, required=True, help="joined output: a file or a folder")
    j.add_argument("--id-column", help="the key column the sidecar was written with (--id-column)")
    j.add_argument("--columns", help="the column map used when scoring, e.g. instruction=q,output=a")
    j.add_argument("--output-format", choices=FORMATS, help="folder output's format (default: the sidecars')")
    j.set_defaults(func=_cmd_join)

    o = sub.add_parser("options", help="list every --option key with its type, default and meaning")
    o.set_defaults(func=_cmd_options)

    i = sub.add_parser("indicators", help="list indicators, their columns, models and availability")
    i.add_argument("--models", help="model slots to check, e.g. lm=/models/llama")
    i.set_defaults(func=_cmd_indicators)

    m = sub.add_parser("models", help="list model slots, where each is looked for, and how to get it")
    m.add_argument("--models", help="model slots to check, e.g. lm=/models/llama")
    m.add_argument(
        "--rehash",
        action="append",
        metavar="PATH",
        help="record the current content of a model folder or file as its reference (after replacing it on "
        "purpose); models without a manifest are checked against the hashes recorded at their first use",
    )
    m.set_defaults(func=_cmd_models)

    e = sub.add_parser("export", help="export a Hugging Face model to an ONNX folder (reward, UniEval, embedder)")
    e.add_argument("kind", choices=("reward-pair", "reward-oasst", "unieval", "embedder"))
    e.add_argument("--from", dest="src", required=True, help="local Hugging Face folder or hub id")
    e.add_argument("--to", dest="dest", type=Path, required=True, help="output folder")
    e.add_argument("--max-length", type=int, default=None, help="token window (default: the model's)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    e.add_argument("--revision", default=None, help="hub revision")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty --to folder")
    e.add_argument("--no-fuse", dest="fuse", action="store_false", help="keep the plain graph (no ORT kernel fusion)")
    e.add_argument(
        "--padded",
        dest="packed",
        action="store_false",
        help="embedder: export the padded graph even for a BERT body (default: packed, no compute on padding)",
    )
    e.set_defaults(func=_cmd_export)

    sel = sub.add_parser(
        "select", help="select a subset of a (scored) record file: rule top-k, k-center, 0.5%% coreset, random"
    )
    sel.add_argument("input", type=Path, help="record file, usually one written by `instructfast score`")
    sel.add_argument("-o", "--output", type=Path, required=True, help="selected records; format from extension")
    budget = sel.add_mutually_exclusive_group(required=True)
    budget.add_argument("--top", type=int, metavar="K", help="select K rows")
    budget.add_argument("--fraction", type=float, metavar="F", help="select round(F * available rows), 0 < F <= 1")
    sel.add_argument(
        "--method",
        choices=("rule", "kcenter", "kmeans-kcenter", "random"),
        default="rule",
        help="rule: ascending predicted_log_loss (default); kcenter: farthest-first on embeddings; "
        "kmeans-kcenter: K-means then k-center per cluster (the 0.5%% paper); random",
    )
    sel.add_argument("--seed", type=int, default=0)
    sel.add_argument("-r", "--rule", help="rule preset or JSON file to score with first (rule method, no score column)")
    sel.add_argument(
        "--score-column", default="predicted_log_loss", help="column the rule method ranks by (lower first)"
    )
    sel.add_argument("--embeddings", metavar="COLUMN", help="list column of vectors (default: embed with the embedder)")
    sel.add_argument("--clusters", type=int, default=None, help="kmeans-kcenter clusters (default ceil(sqrt(budget)))")
    sel.add_argument(
        "--already-selected",
        type=Path,
        metavar="FILE",
        help="kcenter: file with a `position` column of rows already chosen",
    )
    sel.add_argument(
        "--positions",
        type=Path,
        metavar="FILE",
        help="also write the selected row positions (and clusters) to FILE, format from extension",
    )
    sel.add_argument("--columns", help="explicit column map, e.g. instruction=question,output=answer")
    sel.add_argument("--models", help="model slots, e.g. embedder=/models/minilm")
    sel.add_argument("--input-format", choices=FORMATS)
    sel.add_argument("--output-format", choices=FORMATS)
    sel.add_argument("-t", "--threads", type=int, default=None)
    sel.add_argument("--device", default=None, help="cpu, cuda or cuda:N (embedder and k-center; default: auto)")
    sg = sel.add_mutually_exclusive_group()
    sg.add_argument("--progress", dest="progress", action="store_true", default=None)
    sg.add_argument("--no-progress", dest="progress", action="store_false")
    sel.set_defaults(func=_cmd_select)

    rp = sub.add_parser("report", help="write one self-contained HTML page of scored file(s): charts, records, rule")
    rp.add_argument("inputs", type=Path, nargs="+", metavar="SCORED", help="scored file(s), any supported format")
    rp.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    rp.add_argument(
        "--selected",
        type=Path,
        metavar="FILE",
        help="selected rows: a positions file (select --positions) or the selected records (matched by text)",
    )
    rp.add_argument("--by", metavar="COLUMN", help="compare groups of rows by this column's values")
    rp.add_argument("--labels", help="comma-separated names for the inputs (default: file names)")
    rp.add_argument("-i", "--indicators", help="comma-separated numeric columns to chart (default: all)")
    rp.add_argument("-r", "--rule", help="rule preset or JSON whose terms to show (default: the scoring run's)")
    rp.add_argument("--embeddings", metavar="COLUMN", help="vector column for the projection (default: first found)")
    rp.add_argument(
        "--embed", action="store_true", help="with --selected: embed the projection sample when no vector column exists"
    )
    rp.add_argument("--columns", help="explicit text column map, e.g. instruction=question,output=answer")
    rp.add_argument("--title", help="page title")
    rp.add_argument("--bins", type=int, default=40, help="histogram bins (default 40)")
    rp.add_argument("--sample-rows", type=int, default=100_000, help="row sample for quantiles and correlations")
    rp.add_argument("--projection-rows", type=int, default=2_000, help="pool rows in the projection")
    rp.add_argument("--examples", type=int, default=5, help="records shown at each end of every column")
    rp.add_argument("--max-chars", type=int, default=3_000, help="characters of a text shown before it is cut")
    rp.add_argument("--max-groups", type=int, default=12, help="most groups compared (at most 12)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--models", help="embedder slot for --embed, e.g. embedder=/models/minilm")
    rp.add_argument("--device", default=None, help="device for --embed (default: auto)")
    rp.add_argument("-t", "--threads", type=int, default=None)
    rp.set_defaults(func=_cmd_report)

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
    b.add_argument(
        "--ivf-storage", choices=["sq8", "flat"], default="sq8",
        help="IVF codes: sq8 (a quarter of the memory; candidates re-ranked exactly) or flat",
    )  # fmt: skip
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
    except (InstructfastError, OSError) as e:  # anything else is a bug: let its traceback show
        print(f"instructfast: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "output", None)
        hint = f"; finished parts are kept in {out}.partial/ and the same command resumes" if out else ""
        print(f"instructfast: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
