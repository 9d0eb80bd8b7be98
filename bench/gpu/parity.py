"""Kernel parity on one device: log-prob kernels (a) and (b) against float64 torch, per dtype and shape.

Usage (on a CUDA machine with torch, triton and instructfast installed; ``bench/gpu/run.sh`` runs it)::

    python bench/gpu/parity.py --out DIR [--budget-s S]
    TRITON_INTERPRET=1 python bench/gpu/parity.py --out DIR --dry-run     # CPU, interpreter, small shapes

Each case runs the compiled Triton kernel (``kernels/logprob.py``, ``kernels/fused_linear_logprob.py``
through ``bench/gpu/_engine.py``) and the shipped torch twin on the same inputs and compares both
with the float64 references of ``tests/references.py`` under that file's per-dtype tolerances:
the very oracle and tolerance table ``tests/kernels/`` uses on CPU. Shapes: realistic ones
(LLaMA-2's 32,000 and LLaMA-3's 128,256 vocabularies, d = 2048 and 4096) and odd ones (nothing a
power of two: N = 13 / 37, V = 1017 / 50,257, d = 67 / 1031, with a bias), in fp32, fp16 and bf16.
Inputs as in the tests: logits of std 3, a quarter of the targets ignored (they must give exactly 0).

Rows (long format of ``bench/_common.py``, ``DIR/parity_gpu.csv``, written after every case):
``max_abs_err`` (nat), ``max_rel_err`` and ``target:within_tolerance`` (unit ``pass``: 1.0 when every
element is within ``atol + rtol * |ref|`` and the ignored rows are 0), ``x`` = N, the shape,
dtype and tolerances in the config. ``--budget-s`` starts no new case after that many seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "bench"))  # _common, which also puts the repository root on sys.path (tests.*)
import _common  # noqa: E402

# (N, V) for kernel (a); (N, V, d, bias) for kernel (b)
SHAPES_A = [(4096, 32000), (2048, 128256), (13, 1017), (300, 50257)]
SHAPES_B = [(4096, 32000, 2048, False), (1024, 128256, 4096, False), (13, 1017, 67, True), (37, 50257, 1031, True)]
# dry run (the Triton interpreter on 2 CPU cores): one vocabulary-sized and one odd shape each
DRY_A = [(8, 32000), (13, 1017)]
DRY_B = [(40, 4096, 128, False), (13, 1017, 67, True)]
IGNORE = -100


def _targets(torch, n: int, v: int, dev):
    t = torch.randint(0, v, (n,), device=dev)
    t[torch.rand(n, device=dev) < 0.25] = IGNORE
    t[0] = 1  # at least one scored row
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for parity_gpu.csv")
    ap.add_argument("--dry-run", action="store_true", help="CPU via TRITON_INTERPRET=1, small shapes")
    ap.add_argument("--budget-s", type=float, default=None, help="start no new case after this many seconds")
    args = ap.parse_args(argv)
    if args.dry_run and os.environ.get("TRITON_INTERPRET") != "1":
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported (below)

    import _engine
    import torch

    from tests.references import (
        TOLERANCES,
        compare,
        reference_fused_linear_logprobs,
        reference_token_logprobs,
        torch_dtype,
    )

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --dry-run", file=sys.stderr)
        return 2
    dev = torch.device("cpu" if args.dry_run else "cuda")
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU dry run: {_common.cpu_model()}"
    ka, kb = _engine.logprob_kernel, _engine.fused_kernel
    if dev.type == "cpu" and not (ka.INTERPRETED and kb.INTERPRETED):
        print("the kernels were compiled, not interpreted: set TRITON_INTERPRET=1 before starting", file=sys.stderr)
        return 2
    impls = {
        "logprob": {"triton": ka.logprob_forward, "torch_twin": _engine.token_logprobs_torch},
        "fused_linear_logprob": {
            "triton": kb.fused_linear_logprob_forward,
            "torch_twin": _engine.fused_linear_logprobs_torch,
        },
    }
    dtypes = ["bf16", "fp16", "fp32"]  # bf16 first: what LMs run in
    cases = [("logprob", s, dt) for s in (DRY_A if args.dry_run else SHAPES_A) for dt in dtypes]
    cases += [("fused_linear_logprob", s, dt) for s in (DRY_B if args.dry_run else SHAPES_B) for dt in dtypes]

    out_path = args.out / "parity_gpu.csv"
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print(
        f"{name}: torch {torch.__version__}; {len(cases)} cases x {len(impls['logprob'])} implementations", flush=True
    )
    failures = done = 0
    torch.manual_seed(0)
    for kernel, shape, dtype_name in cases:
        if args.budget_s is not None and time.monotonic() - start > args.budget_s:
            print(f"skip the remaining {len(cases) - done} cases: --budget-s {args.budget_s:g} s spent", flush=True)
            break
        atol, rtol = TOLERANCES[kernel][dtype_name]
        dtype = torch_dtype(dtype_name)
        if kernel == "logprob":
            n, v = shape
            logits = (torch.randn(n, v, device=dev) * 3.0).to(dtype)
            tgt = _targets(torch, n, v, dev)
            args_ = (logits, tgt)
            ref = reference_token_logprobs(logits, tgt)
            cfg = {"N": n, "V": v}
        else:
            n, v, d, with_bias = shape
            hidden = torch.randn(n, d, device=dev).to(dtype)
            weight = (torch.randn(v, d, device=dev) * (3.0 / d**0.5)).to(dtype)
            bias = torch.randn(v, device=dev).to(dtype) if with_bias else None
            tgt = _targets(torch, n, v, dev)
            args_ = (hidden, weight, tgt, bias)
            ref = reference_fused_linear_logprobs(hidden, weight, tgt, bias)
            cfg = {"N": n, "V": v, "d": d, "bias": with_bias}
        cfg.update(dtype=dtype_name, atol=atol, rtol=rtol)
        rows = []
        for impl, fn in impls[kernel].items():
            label = f"{kernel:<21} {impl:<10} {cfg['dtype']} {'x'.join(str(s) for s in shape[:3])}"
            base = {"indicator": kernel, "provider": impl, "mode": "parity", "x": n, "cpu": name}
            target = f"|err| <= {atol:g} + {rtol:g}|ref|"
            try:
                with torch.inference_mode():
                    out = fn(*args_)
            except Exception as exc:  # e.g. a tile that does not compile for this dtype: a FAIL, go on
                failures += 1
                rows.append(
                    {
                        **base,
                        "metric": "target:within_tolerance",
                        "unit": "pass",
                        "p50": 0.0,
                        "config_json": {
                            **cfg,
                            "value": "error",
                            "target": target,
                            "error": f"{type(exc).__name__}: {exc}"[:300],
                        },
                    }
                )
                print(f"  FAIL {label}: {type(exc).__name__}: {exc}", flush=True)
                continue
            res = compare(out, ref, atol=atol, rtol=rtol)
            zero_ignored = bool((out[tgt == IGNORE] == 0).all())
            ok = res.ok and zero_ignored and out.dtype == torch.float32
            failures += not ok
            rows += [
                {**base, "metric": "max_abs_err", "unit": "nat", "p50": res.max_abs, "config_json": cfg},
                {**base, "metric": "max_rel_err", "unit": "ratio", "p50": res.max_rel, "config_json": cfg},
                {
                    **base,
                    "metric": "target:within_tolerance",
                    "unit": "pass",
                    "p50": 1.0 if ok else 0.0,
                    "config_json": {
                        **cfg,
                        "value": res.max_abs,
                        "target": target,
                        "mismatches": res.n_bad,
                        "ignored_rows_zero": zero_ignored,
                    },
                },
            ]
            print(
                f"  {'PASS' if ok else 'FAIL'} {label}: max abs {res.max_abs:.2e}, max rel {res.max_rel:.2e}"
                + (f", {res.n_bad}/{res.n} mismatches" if res.n_bad else "")
                + ("" if zero_ignored else ", ignored rows not 0"),
                flush=True,
            )
            del out
        _common.append_results(out_path, rows)
        done += 1
        del args_, ref
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    # cases left out by --budget-s: a row of their own, so the summary shows the check was partial
    _common.append_results(
        out_path,
        [
            {
                "indicator": "parity",
                "provider": "all",
                "mode": "parity",
                "metric": "cases_skipped",
                "unit": "cases",
                "x": len(cases),
                "p50": len(cases) - done,
                "cpu": name,
            }
        ],
    )
    print(f"{done}/{len(cases)} cases, {failures} failing; wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
