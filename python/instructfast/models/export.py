"""``instructfast export``: a Hugging Face model to an ONNX folder the runtime loads directly.

``export(kind, src, dest)`` builds the torch wrapper for ``kind`` (see
:mod:`instructfast.models.graphs`), exports it with ``torch.onnx.export(dynamo=True)``
(dynamic batch and sequence axes; the legacy exporter produced wrong outputs for these
models), and writes into ``dest``:

* ``model.onnx`` (weights inside; external data only past ONNX's 2 GB protobuf limit);
* the fast tokenizer files (``tokenizer.json`` ...);
* ``manifest.json``: kind, source, revision (when known), opset, input and output names,
  max length, pad id, kind-specific entries (Yes/No ids, embedding size), sha256 of every
  file, and the verification result.

It then **verifies** the folder: the runtime's tokenizer must give the same ids as the
Hugging Face tokenizer, and ONNX Runtime's outputs (rows alone and in one padded batch)
must match the torch module's within tolerance; otherwise :class:`ExportVerificationError`
is raised and ``dest`` is left without a manifest, so nothing loads it by mistake.

SRC is a local folder or a hub id; hub ids go through the same ``from_pretrained`` path and
need hub access (with ``HF_HUB_OFFLINE=1`` they fail with transformers' own error).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from .._typing import VerifyModels
from ..errors import ArgumentError, ExportError, ExportVerificationError, MissingDependencyError, ModelError
from ..prompts import embedding_text, oasst_text, unieval_input
from .onnx_runtime import FORMAT, MANIFEST, OnnxModel, read_manifest
from .registry import ModelSource, build_once, cache_dir, sha256_file
from .verify import verify_first_use

DEFAULT_OPSET = 18
_TWO_GB = 2_000_000_000
# Past these the export is wrong, not just imprecise (fp32 ORT vs torch is ~1e-6 here).
TOLERANCE = {"reward-pair": 1e-4, "reward-oasst": 1e-4, "unieval": 1e-4, "embedder": 1e-5}

# Verification texts: several lengths, so one padded batch mixes short and long rows.
_SAMPLES = [
    "Hi.",
    "Give three tips for staying healthy.",
    "Explain why the sky is blue in two sentences, for a ten-year-old who likes football.",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "Yes",
]
_ANSWERS = [
    "Hello! How can I help?",
    "1. Eat a balanced diet. 2. Exercise regularly. 3. Get enough sleep.",
    "Sunlight is scattered by the air, and blue light is scattered the most, so we see blue everywhere.",
    "A pangram. " * 20,
    "No",
]


def _require_torch() -> None:
    import importlib.util

    for mod in ("torch", "transformers", "onnxscript", "onnx"):
        if importlib.util.find_spec(mod) is None:
            msg = f"`instructfast export` needs {mod}: pip install torch==2.13.0 first, then 'instructfast[models]'"
            raise MissingDependencyError(msg)


def sample_items(kind: str) -> list:
    """The texts (or pairs) the export is traced and verified on, as the runtime will build them."""
    pairs = list(zip(_SAMPLES, _ANSWERS, strict=True))
    if kind == "reward-pair":
        return pairs
    if kind == "reward-oasst":
        return [oasst_text(q, a) for q, a in pairs]
    if kind == "unieval":
        return [unieval_input("coherence", a, q) for q, a in pairs]
    return [embedding_text(q, None, a) for q, a in pairs] + [""]


def export(
    kind: str,
    src: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_length: int | None = None,
    opset: int | None = None,
    revision: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
    fuse: bool = True,
    packed: bool = True,
) -> Path:
    """Export a model for instructfast's ONNX runtime and verify it.

    Parameters
    ----------
    kind
        ``"reward-pair"``, ``"reward-oasst"``, ``"unieval"`` or ``"embedder"``.
    src
        A local Hugging Face folder, or a hub id (needs hub access).
    dest
        Output folder (created; must be empty or absent unless ``overwrite``).
    max_length
        Token window recorded for the runtime (default: the model's, 1024 for UniEval,
        ``max_seq_length`` of a sentence-transformers folder).
    opset
        ONNX opset (default 18).
    revision
        Hub revision to load (recorded in the manifest).
    verify
        Compare ONNX Runtime with torch after writing (on by default; leave it on).
    fuse
        Rewrite the graph to ONNX Runtime's fused transformer kernels (checked by the
        verification like the rest; a fused graph that fails it is replaced by the plain one).
    packed
        Embedders with a BERT body: export the packed graph (no compute on padding, see
        :mod:`instructfast.models.packed_bert`); ``False`` keeps the padded graph.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    ExportVerificationError
        When ONNX Runtime and torch disagree past tolerance, or the tokenizers disagree.
    """
    _require_torch()
    with _quiet():
        return _export(
            kind,
            src,
            dest,
            max_length=max_length,
            opset=opset,
            revision=revision,
            overwrite=overwrite,
            verify=verify,
            fuse=fuse,
            packed=packed,
        )


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress bars, per-op warnings and log lines (errors still raise)."""
    import logging

    import transformers

    prev = transformers.logging.get_verbosity()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(prev)
        transformers.logging.enable_progress_bar()
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _export(kind, src, dest, *, max_length, opset, revision, overwrite, verify, fuse, packed) -> Path:
    import torch

    from .graphs import BUILDERS

    if kind not in BUILDERS:
        msg = f"unknown export kind {kind!r}; kinds: {list(BUILDERS)}"
        raise ArgumentError(msg)
    dest = Path(dest)
    busy = dest.exists() and any(dest.iterdir())
    if busy and not overwrite:
        msg = f"{dest} exists and is not empty (pass overwrite=True / --overwrite to replace it)"
        raise ExportError(msg)
    opset = int(opset or DEFAULT_OPSET)
    src_s = str(src)
    t0 = time.perf_counter()
    try:
        options = {"packed": packed} if kind == "embedder" else {}
        graph = BUILDERS[kind](src_s, revision=revision, max_length=max_length, **options)
    except OSError as e:
        where = "local folder" if Path(src_s).exists() else "hub id (needs hub access; HF_HUB_OFFLINE must be unset)"
        msg = f"cannot load {src_s!r} as a {where} for a {kind} export: {e}"
        raise ExportError(msg) from e
    if busy:  # only once the source has loaded: a failed load leaves the old folder alone
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    graph.module.eval()

    tok = graph.tokenizer
    tok.save_pretrained(str(dest))
    if not (dest / "tokenizer.json").exists():
        msg = f"{src_s}: the tokenizer did not save a tokenizer.json"
        raise ExportVerificationError(msg)

    args, dyn = _trace_inputs(graph, tok)
    n_bytes = sum(p.numel() * p.element_size() for p in graph.module.parameters())
    context = graph.export_context() if graph.export_context else contextlib.nullcontext()
    with torch.no_grad(), context:
        program = torch.onnx.export(
            graph.module,
            args,
            dynamo=True,
            input_names=graph.input_names,
            output_names=graph.output_names,
            dynamic_shapes=dyn,
            opset_version=opset,
            custom_translation_table=graph.translations,
            verbose=False,
        )
    if program is None:  # typed optional for the legacy exporter; dynamo=True always returns a program
        msg = f"{src_s}: torch.onnx.export returned no ONNX program"
        raise ExportError(msg)
    external = n_bytes > _TWO_GB
    plain = dest / "model.unfused.onnx"
    program.save(str(plain), external_data=external)
    if graph.translations:  # the graph already holds ORT's fused kernels
        fusions = None
        written = _contrib_nodes(plain)
    else:
        fusions = _fuse_for_ort(plain, dest / "model.onnx", external) if fuse else None
        written = None
    if fusions is None:
        _move_model(plain, dest / "model.onnx")

    commit = None
    for m in graph.module.modules():
        commit = getattr(getattr(m, "config", None), "_commit_hash", None)
        if commit:
            break
    manifest = {
        "format": FORMAT,
        "version": 1,
        "kind": kind,
        "source": src_s if not Path(src_s).exists() else str(Path(src_s).resolve()),
        "revision": revision or commit,
        "opset": opset,
        "inputs": graph.input_names,
        "outputs": graph.output_names,
        "max_length": int(graph.max_length),
        "pad_id": int(tok.pad_token_id) if tok.pad_token_id is not None else 0,
        "layout": graph.layout,
        **({"session": graph.session} if graph.session else {}),
        **graph.extra,
        "exported_with": {
            "torch": torch.__version__,
            "transformers": _version("transformers"),
            "onnxruntime": _version("onnxruntime"),
            "exporter": "torch.onnx.export(dynamo=True)",
        },
        "graph_fusions": fusions or ({"written": written} if written else {}),
    }
    if verify:
        try:
            manifest["verification"] = verify_folder(dest, graph, manifest)
        except ExportVerificationError as e:
            if fusions is None:
                raise
            # the fused graph is wrong: fall back to the plain export (and say so)
            _move_model(plain, dest / "model.onnx")
            manifest["graph_fusions"] = {"rejected": str(e)}
            manifest["verification"] = verify_folder(dest, graph, manifest)
    for p in dest.glob("model.unfused.onnx*"):
        p.unlink()
    manifest["files"] = {p.name: sha256_file(p) for p in sorted(dest.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest["export_seconds"] = round(time.perf_counter() - t0, 1)
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return dest


def _trace_inputs(graph, tok) -> tuple[tuple, dict]:
    """Example inputs and dynamic axes for the exporter; no traced axis may be 1 (it would be
    specialised), and no two axes of a packed graph may be equal."""
    import torch

    if graph.example is not None:
        rows = [
            tok("hello world " * 8, truncation=True, max_length=16)["input_ids"],
            tok("a b c d e f g h")["input_ids"],
        ]
        return graph.example(rows), graph.dynamic_shapes
    enc = tok(["hello world " * 8, "a b c " * 8], truncation=True, max_length=16, padding="max_length")
    ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    mask = torch.tensor(enc["attention_mask"], dtype=torch.long)
    mask[1, 10:] = 0
    args: tuple = (ids, mask)
    if "token_type_ids" in graph.input_names:
        args = (ids, mask, torch.zeros_like(ids))
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence")
    return args, {name: {0: batch, 1: seq} for name in graph.input_names}


def _contrib_nodes(path: Path) -> dict[str, int]:
    """Counts of ONNX Runtime contrib nodes (com.microsoft) in a written graph."""
    import collections

    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    return dict(collections.Counter(n.op_type for n in g.node if n.domain == "com.microsoft"))


def _move_model(src: Path, dest: Path) -> None:
    """Rename an ONNX file (and its external data file, whose name the graph records)."""
    if (src.parent / (src.name + ".data")).exists():
        import onnx

        m = onnx.load(str(src))
        onnx.save(m, str(dest), save_as_external_data=True, location=dest.name + ".data")
        src.unlink()
        (src.parent / (src.name + ".data")).unlink()
    else:
        os.replace(src, dest)


def _fuse_for_ort(plain: Path, dest: Path, external: bool) -> dict | None:
    """ONNX Runtime's fused kernels (Attention, SkipLayerNormalization, BiasGelu ...) via
    onnxscript's rewriter, which knows the dynamo exporter's patterns (ORT's own
    ``transformers.optimizer`` only finds BiasGelu there). Returns the fusion counts, or
    ``None`` when nothing fused or the rewriter is unavailable (the plain graph is used).
    """
    try:
        import onnx_ir as ir
        from onnxscript.rewriter.ort_fusions import optimize_for_ort
    except ImportError:
        return None
    try:
        model = ir.load(str(plain))
        model, stats = optimize_for_ort(model)
    except Exception:  # a rewriter failure must not fail the export: the plain graph is correct
        return None
    stats = {k: int(v) for k, v in stats.items() if v}
    if not stats:
        return None
    ir.save(model, str(dest), external_data=(dest.name + ".data") if external else None)
    return stats


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # pragma: no cover
        return "unknown"


def verify_folder(dest: Path, graph, manifest: dict) -> dict:
    """Check the written folder against the torch module; raise past tolerance."""
    import torch

    # the runtime reads the manifest: write a provisional one (renamed below on success)
    tmp = dict(manifest, verification="pending")
    (dest / MANIFEST).write_text(json.dumps(tmp))
    try:
        rt = OnnxModel(dest, device="cpu", token_budget=1 << 30, max_rows=1 << 30, slack=None)
        items = sample_items(graph.kind)
        ids, types = rt.encode(items, truncate=True)
        hf = graph.tokenizer(
            _hf_args(items),
            **({"text_pair": [b for _, b in items]} if graph.kind == "reward-pair" else {}),
            truncation=True,
            max_length=rt.max_length,
        )
        for k, (a, b) in enumerate(zip(ids, hf["input_ids"])):
            if list(a) != list(b):
                msg = (
                    f"tokenizer.json and the Hugging Face tokenizer disagree on sample {k}: "
                    f"{list(a)[:12]}... vs {list(b)[:12]}..."
                )
                raise ExportVerificationError(msg)
        ok = [i for i, x in enumerate(ids) if len(x) > 0]
        batched = rt.run([ids[i] for i in ok], None if types is None else [types[i] for i in ok])
        alone = np.stack([rt.run([ids[i]], None if types is None else [types[i]])[0] for i in ok])
        reference = graph.reference if graph.reference is not None else graph.module
        with torch.no_grad():
            ref_rows = []
            for i in ok:
                x = torch.tensor([ids[i]], dtype=torch.long)
                inputs = [x, torch.ones_like(x)]
                if types is not None:  # the runtime returns token types when the graph takes token_type_ids
                    inputs.append(torch.tensor([types[i]], dtype=torch.long))
                ref_rows.append(reference(*inputs)[0].float().numpy())
            ref = np.stack(ref_rows)
    except BaseException:
        (dest / MANIFEST).unlink(missing_ok=True)
        raise
    tol = TOLERANCE[graph.kind]
    err_b = float(np.max(np.abs(batched - ref)))
    err_a = float(np.max(np.abs(alone - ref)))
    if not (err_b <= tol and err_a <= tol):
        (dest / MANIFEST).unlink(missing_ok=True)
        msg = (
            f"ONNX Runtime differs from torch for {graph.kind}: max |diff| {err_a:.3g} (rows alone), "
            f"{err_b:.3g} (one padded batch), tolerance {tol:g}; the folder {dest} is not usable"
        )
        raise ExportVerificationError(msg)
    return {"samples": len(ok), "max_abs_diff_alone": err_a, "max_abs_diff_batched": err_b, "tolerance": tol}


def _hf_args(items: list) -> list[str]:
    return [x[0] if isinstance(x, tuple) else x for x in items]


# -- the export cache: Hugging Face sources exported once, reused by later runs ---------------
_CACHE_VERSION = "3"  # bump when exports change (2: fused graphs, 3: packed BERT embedder)


def _source_key(kind: str, src: ModelSource) -> str:
    """Cache key of a source: small files by content, weight files by name, size and mtime."""
    h = hashlib.sha256(f"{_CACHE_VERSION}|{kind}|{src.kind}|".encode())
    if src.kind == "hub-id":
        h.update(src.location.encode())
        return h.hexdigest()[:16]
    p = Path(src.location).expanduser().resolve()
    h.update(str(p).encode())
    for f in sorted(p.rglob("*")):
        if not f.is_file():
            continue
        st = f.stat()
        h.update(str(f.relative_to(p)).encode())
        h.update(f.read_bytes() if st.st_size < (1 << 20) else f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_export(kind: str, src: ModelSource, *, verify: VerifyModels = "cached") -> Path:
    """An exported folder for ``src``: an ``onnx-folder`` as it is (its kind checked), otherwise
    the export of the Hugging Face folder or hub id into ``cache_dir()/onnx/``, made once
    (other processes wait on a file lock, then reuse it).

    A Hugging Face folder is checked against the hashes recorded at its first use before anything
    is read from it (:func:`~instructfast.models.verify.verify_first_use`); the export itself is
    checked against its manifest when it is loaded.
    """
    if src.kind == "hf-folder":
        verify_first_use(src.location, mode=verify)
    if src.kind == "onnx-folder":
        m = read_manifest(src.location)
        if not (m["kind"] == kind or (kind == "reward" and m["kind"].startswith("reward-"))):
            msg = f"{src.location} holds a {m['kind']!r} export; the {src.slot} slot needs {kind!r}"
            raise ModelError(msg)
        return Path(src.location)
    if src.kind not in ("hf-folder", "hub-id"):
        msg = f"the {src.slot} slot needs a Hugging Face folder, a hub id or an exported folder; got {src.describe()}"
        raise ModelError(msg)
    if kind == "reward":
        kind = reward_kind(src.location)
    loc = Path(src.location)
    name = loc.name if src.kind == "hf-folder" else src.location.replace("/", "--")
    if src.kind == "hf-folder" and name == "model":  # packaged layouts: name after the package folder
        name = loc.resolve().parent.name
    dest = cache_dir() / "onnx" / f"{kind}-{name}-{_source_key(kind, src)}"

    def build(tmp: Path) -> None:
        if src.kind == "hf-folder":
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
        export(kind, src.location, tmp, overwrite=True)

    return build_once(dest, build, done=MANIFEST)


def reward_kind(location: str) -> str:
    """``reward-oasst`` for an OpenAssistant GPTNeoXRewardModel folder, else ``reward-pair``."""
    cfg = Path(location) / "config.json"
    if cfg.exists():
        raw = json.loads(cfg.read_text())
        if raw.get("model_type") == "gpt_neox_reward_model" or "GPTNeoXRewardModel" in (raw.get("architectures") or []):
            return "reward-oasst"
    elif "oasst-rm" in location:  # hub ids of the OpenAssistant GPT-NeoX reward models
        return "reward-oasst"
    return "reward-pair"
