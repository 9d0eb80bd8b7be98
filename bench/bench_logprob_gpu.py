"""Fused log-probability kernels on one GPU: kernel (a) bandwidth, kernel (b) time and peak memory.

Usage (one command on an H100/H200 machine with torch, triton and instructfast installed;
``bench/gpu/run.sh`` installs the package and runs this with ``--quick``)::

    python bench/bench_logprob_gpu.py --out DIR [--quick] [--sweep] [--budget-s S]

What it measures (bf16 inputs, fp32 results), against SPEC section 5:

* ``copy``: the card's copy bandwidth, ``torch.clone`` of a 4 GiB tensor (read + write bytes),
  the practical ceiling a bandwidth-bound kernel can reach.
* ``logprob`` (kernel (a), ``kernels/logprob.py``) on logits ``[N, V]``: time, achieved GB/s
  (bytes = N*V*2 of logits + N*(8 + 4) of targets and output), that bandwidth as a fraction of the
  copy bandwidth (target >= 0.7), and the speedup over
  ``torch.log_softmax(logits.float(), -1).gather(...)`` (target >= 2x).
* ``fused_linear_logprob`` (kernel (b), ``kernels/fused_linear_logprob.py``) on hidden ``[N, d]``
  and head ``[V, d]``: time, TFLOP/s (2*N*V*d), peak extra memory
  (``torch.cuda.max_memory_allocated`` above the inputs) against
  ``(hidden @ weight.T).float().log_softmax(-1).gather(...)`` (target: O(N*d + V*d), not O(N*V);
  checked as kernel (b)'s peak <= 1/10 of the unfused product's, ``memory_ratio_vs_torch``).
* both kernels' largest absolute deviation from the shipped chunked fp32 torch path
  (``python/instructfast/indicators/logprob_torch.py``), which is also timed (provider
  ``torch_chunked``: what CUDA machines without triton run).

Targets (SPEC section 5) are written as rows of their own, metric ``target:<what>``, unit ``pass``,
p50 1.0 (PASS) or 0.0 (FAIL), the measured value and the threshold in the config: kernel (a)
``speedup_vs_torch >= 2`` and ``fraction_of_copy_bandwidth >= 0.7``, kernel (b)
``memory_ratio_vs_torch <= 0.1``, at every shape measured.

Grid: N in {4k, 16k, 64k} x V in {32k, 128k} (x d in {2048, 4096} for kernel (b)). A torch
baseline whose estimated extra memory exceeds the free memory is not run and is recorded with
p50 = "oom" (as is one that raises an out-of-memory error). ``--sweep`` adds a block-size sweep
of both kernels at N = 16k, V = 128k (d = 4096), to re-tune the launchers' defaults.
Timings: ``triton.testing.do_bench`` (L2 flushed between runs), quantiles 0.5/0.2/0.8, ms.

``--budget-s`` starts no new shape once that many seconds have passed (what is measured by then is
kept); rows are written after every shape, so a run stopped from outside keeps its finished shapes.

Results: ``DIR/logprob_gpu.csv`` in the long format (indicator, provider, mode, metric, unit, x,
p50, p20, p80, config_json, cpu (here: the GPU's name), cores, git_sha, timestamp; rows upserted
by indicator, provider, mode, metric, x, config_json, as ``bench/_common.py`` writes every
results file) and a table on stdout.

The kernels and the shipped torch twin come from the installed package through
``bench/gpu/_engine.py`` (the one place the GPU scripts import engine internals). ``--smoke`` runs a tiny grid on CPU through the Triton interpreter with a wall-clock
timer: it checks the script's plumbing on a machine without a GPU, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "gpu"))
sys.path.insert(0, str(REPO / "bench"))
import _common  # noqa: E402  (standard library only, so it runs on the GPU machine too)

QUANTILES = [0.5, 0.2, 0.8]
GIB = 2**30
MIB = 2**20

GRID_N = (4096, 16384, 65536)
GRID_V = (32768, 131072)
GRID_D = (2048, 4096)
# SPEC section 5 targets
SPEEDUP_TARGET = 2.0  # kernel (a) over log_softmax(logits.float()).gather
BANDWIDTH_TARGET = 0.7  # kernel (a) bandwidth / copy bandwidth
MEMORY_RATIO_TARGET = 0.1  # kernel (b) peak extra memory / the unfused product's
SWEEP_A = [(bv, nw) for bv in (2048, 4096, 8192, 16384) for nw in (4, 8, 16)]
# (block_n, block_v, block_d, num_warps, num_stages)
SWEEP_B = [
    (128, 128, 64, 8, 3),
    (128, 128, 64, 4, 3),
    (128, 256, 64, 8, 3),
    (256, 128, 64, 8, 3),
    (128, 128, 128, 8, 2),
    (64, 128, 64, 4, 4),
    (128, 64, 64, 4, 4),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", type=Path, required=True, help="directory for logprob_gpu.csv")
    p.add_argument("--quick", action="store_true", help="N in {4k, 16k} only, V = 32k and 128k, d = 4096")
    p.add_argument("--sweep", action="store_true", help="also sweep block sizes at N=16k, V=128k, d=4096")
    p.add_argument("--no-chunked", action="store_true", help="skip timing the chunked torch path")
    p.add_argument("--smoke", action="store_true", help="tiny grid on CPU via TRITON_INTERPRET=1 (plumbing check)")
    p.add_argument("--budget-s", type=float, default=None, help="start no new shape after this many seconds")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- machine, CSV


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def print_table(rows: list[dict[str, Any]]) -> None:
    shown = ("indicator", "provider", "metric", "unit", "x", "p50", "p20", "p80", "config_json")
    cells = [[_cell(r.get(c)) for c in shown] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(shown)]
    print("  ".join(c.ljust(w) for c, w in zip(shown, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# ----------------------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, args: argparse.Namespace):
        if args.smoke:
            os.environ["TRITON_INTERPRET"] = "1"  # before the kernels' @triton.jit decorators run
        import _engine
        import torch
        import triton

        self.torch, self.triton = torch, triton
        self.ka, self.kb = _engine.logprob_kernel, _engine.fused_kernel
        self.token_logprobs_torch = _engine.token_logprobs_torch
        self.fused_linear_logprobs_torch = _engine.fused_linear_logprobs_torch

        self.smoke = args.smoke
        if not self.smoke and not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU machine, or pass --smoke for a CPU plumbing check")
        self.dev = torch.device("cpu" if self.smoke else "cuda")
        self.device_name = (
            f"CPU dry run: {_common.cpu_model()} (triton interpreter)" if self.smoke else torch.cuda.get_device_name()
        )
        # the results format's `cpu` column names the processor the numbers come from: here the GPU
        self.common = {
            "cpu": self.device_name,
            "cores": _common.cores(),
            "git_sha": _common.git_sha(),
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self.rows: list[dict[str, Any]] = []
        self.with_chunked = not args.no_chunked
        if self.smoke:
            self.grid_n, self.grid_v, self.grid_d = (37,), (1000, 2500), (64,)
        elif args.quick:
            self.grid_n, self.grid_v, self.grid_d = GRID_N[:2], GRID_V, GRID_D[1:]
        else:
            self.grid_n, self.grid_v, self.grid_d = GRID_N, GRID_V, GRID_D
        self.sweep = args.sweep
        self.started = time.monotonic()
        self.budget_s = args.budget_s
        self.out_path = args.out / "logprob_gpu.csv"
        self.written = 0

    # -- helpers ------------------------------------------------------------------------------

    def add(self, indicator, provider, metric, unit, x, config, p50, p20=None, p80=None) -> None:
        row = {
            "indicator": indicator,
            "provider": provider,
            "mode": "forward",
            "metric": metric,
            "unit": unit,
            "x": x,
            "p50": p50,
            "p20": p20,
            "p80": p80,
            "config_json": _common.config_json(config),
        }
        row.update(self.common)
        self.rows.append(row)

    def target(self, indicator, what, x, config, value, ok: bool, threshold: str) -> None:
        """A PASS/FAIL row: metric ``target:<what>``, p50 1.0 or 0.0, value and threshold in the config."""
        self.add(
            indicator,
            "triton",
            f"target:{what}",
            "pass",
            x,
            {**config, "value": value, "target": threshold},
            1.0 if ok else 0.0,
        )
        print(f"  {'PASS' if ok else 'FAIL'}: {indicator} {what} = {value:.4g} (target {threshold})", flush=True)

    def run_case(self, indicator: str, x: int, config: dict, case: Callable[..., None], *args: Any) -> None:
        """One shape of a grid, ``case(*args)``; an error (a tile that does not compile, ...) becomes an
        ``error`` row and the grid goes on: one broken case must not cost the unattended run its other
        figures. The case's tensors are freed when it returns, before the next one allocates."""
        try:
            case(*args)
        except Exception as exc:
            traceback.print_exc()
            self.add(indicator, "triton", "error", "text", x, config, f"{type(exc).__name__}: {exc}"[:300])
        gc.collect()
        self.free_bytes()
        self.flush()

    def flush(self) -> None:
        """Write the rows measured so far (upserted: a row is never written twice)."""
        if len(self.rows) > self.written:
            _common.append_results(self.out_path, self.rows[self.written :])
            self.written = len(self.rows)

    def out_of_time(self, what: str) -> bool:
        """True (and says so) once ``--budget-s`` has passed: the caller skips ``what``."""
        if self.budget_s is None or time.monotonic() - self.started < self.budget_s:
            return False
        print(f"skip {what}: --budget-s {self.budget_s:g} s spent", flush=True)
        # a row of its own, so the summary shows the grid was cut short
        self.add("budget", "all", "skipped_from", "case", 0, {"budget_s": self.budget_s}, what)
        return True

    def sync(self) -> None:
        if not self.smoke:
            self.torch.cuda.synchronize()

    def time_ms(self, fn: Callable[[], Any]) -> list[float]:
        """[p50, p20, p80] in ms."""
        if self.smoke:
            fn()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            times.sort()
            return [times[1], times[0], times[2]]
        return list(self.triton.testing.do_bench(fn, quantiles=QUANTILES))

    def free_bytes(self) -> int:
        if self.smoke:
            return 1 << 62
        self.torch.cuda.empty_cache()
        return self.torch.cuda.mem_get_info()[0]

    def peak_extra_mib(self, fn: Callable[[], Any]) -> float:
        """Peak allocated bytes above what was allocated before ``fn`` (its output included), MiB."""
        if self.smoke:
            return float("nan")
        torch = self.torch
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
        return peak / MIB

    def guarded(self, estimate_bytes: int, fn: Callable[[], Any]):
        """Run ``fn`` unless ``estimate_bytes`` exceed free memory; "oom" when skipped or out of memory."""
        if estimate_bytes > 0.95 * self.free_bytes():
            return "oom"
        try:
            return fn()
        except self.torch.cuda.OutOfMemoryError:
            gc.collect()
            self.torch.cuda.empty_cache()
            return "oom"

    def targets(self, n: int, v: int):
        t = self.torch.randint(0, v, (n,), device=self.dev)
        t[self.torch.rand(n, device=self.dev) < 0.1] = -100  # ~10% ignored, as prompt/padding would be
        return t

    @staticmethod
    def max_err(a, b) -> float:
        mask = b != 0  # ignored rows are 0 in both
        return (a[mask] - b[mask]).abs().max().item()

    # -- copy bandwidth -----------------------------------------------------------------------

    def copy_bandwidth(self) -> float:
        torch = self.torch
        n_bytes = (64 * MIB) if self.smoke else 4 * GIB
        src = torch.empty(n_bytes // 2, dtype=torch.bfloat16, device=self.dev).normal_()
        p50, p20, p80 = self.time_ms(src.clone)
        moved = 2 * n_bytes  # read + write
        gbs = [moved / (t * 1e-3) / 1e9 for t in (p50, p80, p20)]  # slower time -> lower bandwidth
        cfg = {"bytes": n_bytes, "dtype": "bfloat16", "op": "clone"}
        self.add("copy", "torch", "time", "ms", n_bytes, cfg, p50, p20, p80)
        self.add("copy", "torch", "bandwidth", "GB/s", n_bytes, cfg, *gbs)
        return gbs[0]

    # -- kernel (a) ---------------------------------------------------------------------------

    def bench_logprob(self, copy_gbs: float) -> None:
        for v in self.grid_v:
            for n in self.grid_n:
                if n * v * 2 > 0.6 * self.free_bytes():
                    print(f"skip logprob N={n} V={v}: logits do not fit", flush=True)
                    continue
                if self.out_of_time(f"logprob N={n} V={v}"):
                    return
                self.run_case("logprob", n, {"N": n, "V": v, "dtype": "bfloat16"}, self.logprob_case, n, v, copy_gbs)

    def logprob_case(self, n: int, v: int, copy_gbs: float) -> None:
        torch = self.torch
        cfg = {"N": n, "V": v, "dtype": "bfloat16"}
        logits = torch.randn(n, v, device=self.dev, dtype=torch.bfloat16).mul_(3.0)
        tgt = self.targets(n, v)
        moved = n * v * 2 + n * (8 + 4)

        ours = self.ka.logprob_forward(logits, tgt)
        ref = self.token_logprobs_torch(logits, tgt)
        self.add("logprob", "triton", "max_abs_err_vs_fp32_torch", "nat", n, cfg, self.max_err(ours, ref))
        del ours

        t_triton = self.time_ms(functools.partial(self.ka.logprob_forward, logits, tgt))
        self.add("logprob", "triton", "time", "ms", n, cfg, *t_triton)
        gbs = [moved / (t * 1e-3) / 1e9 for t in (t_triton[0], t_triton[2], t_triton[1])]
        self.add("logprob", "triton", "bandwidth", "GB/s", n, cfg, *gbs)
        self.add("logprob", "triton", "fraction_of_copy_bandwidth", "ratio", n, cfg, gbs[0] / copy_gbs)
        self.target(
            "logprob",
            "fraction_of_copy_bandwidth",
            n,
            cfg,
            gbs[0] / copy_gbs,
            gbs[0] / copy_gbs >= BANDWIDTH_TARGET,
            f">= {BANDWIDTH_TARGET:g}",
        )

        def baseline():
            return torch.log_softmax(logits.float(), -1).gather(1, tgt.clamp(min=0)[:, None]).squeeze(1)

        # logits.float() and its log_softmax: two fp32 N x V tensors beside the bf16 input
        t_torch = self.guarded(8 * n * v, lambda: self.time_ms(baseline))
        if t_torch == "oom":
            self.add("logprob", "torch", "time", "ms", n, cfg, "oom")
        else:
            self.add("logprob", "torch", "time", "ms", n, cfg, *t_torch)
            self.add("logprob", "triton", "speedup_vs_torch", "x", n, cfg, t_torch[0] / t_triton[0])
            self.target(
                "logprob",
                "speedup_vs_torch",
                n,
                cfg,
                t_torch[0] / t_triton[0],
                t_torch[0] / t_triton[0] >= SPEEDUP_TARGET,
                f">= {SPEEDUP_TARGET:g}",
            )
        if self.with_chunked:
            t_chunk = self.time_ms(functools.partial(self.token_logprobs_torch, logits, tgt))
            self.add("logprob", "torch_chunked", "time", "ms", n, cfg, *t_chunk)
        print(
            f"logprob N={n} V={v}: triton {t_triton[0]:.3f} ms ({gbs[0]:.0f} GB/s, "
            f"{gbs[0] / copy_gbs:.0%} of copy), torch {t_torch if t_torch == 'oom' else round(t_torch[0], 3)}",
            flush=True,
        )

    def sweep_logprob(self, copy_gbs: float) -> None:
        torch = self.torch
        n, v = (48, 2500) if self.smoke else (16384, 131072)
        logits = torch.randn(n, v, device=self.dev, dtype=torch.bfloat16).mul_(3.0)
        tgt = self.targets(n, v)
        moved = n * v * 2 + n * 12
        for block_v, num_warps in SWEEP_A[:2] if self.smoke else SWEEP_A:
            cfg = {"N": n, "V": v, "dtype": "bfloat16", "BLOCK_V": block_v, "num_warps": num_warps}
            t = self.time_ms(
                functools.partial(self.ka.logprob_forward, logits, tgt, block_v=block_v, num_warps=num_warps)
            )
            gbs = moved / (t[0] * 1e-3) / 1e9
            self.add("logprob", "triton_sweep", "time", "ms", n, cfg, *t)
            self.add("logprob", "triton_sweep", "fraction_of_copy_bandwidth", "ratio", n, cfg, gbs / copy_gbs)
            print(
                f"sweep logprob BLOCK_V={block_v} warps={num_warps}: {t[0]:.3f} ms, {gbs / copy_gbs:.0%} of copy",
                flush=True,
            )

    # -- kernel (b) ---------------------------------------------------------------------------

    def bench_fused(self) -> None:
        torch = self.torch
        for d in self.grid_d:
            for v in self.grid_v:
                weight = (torch.randn(v, d, device=self.dev) * (3.0 / d**0.5)).to(torch.bfloat16)
                for n in self.grid_n:
                    if self.out_of_time(f"fused N={n} V={v} d={d}"):
                        return
                    cfg = {"N": n, "V": v, "d": d, "dtype": "bfloat16"}
                    self.run_case("fused_linear_logprob", n, cfg, self.fused_case, n, v, d, weight)

    def fused_case(self, n: int, v: int, d: int, weight) -> None:
        torch = self.torch
        cfg = {"N": n, "V": v, "d": d, "dtype": "bfloat16"}
        hidden = torch.randn(n, d, device=self.dev, dtype=torch.bfloat16)
        tgt = self.targets(n, v)
        flop = 2 * n * v * d

        def ours():
            return self.kb.fused_linear_logprob_forward(hidden, weight, tgt)

        def baseline():
            z = (hidden @ weight.T).float()
            return z.log_softmax(-1).gather(1, tgt.clamp(min=0)[:, None]).squeeze(1)

        def chunked():
            return self.fused_linear_logprobs_torch(hidden, weight, tgt)

        ref = chunked()
        self.add(
            "fused_linear_logprob", "triton", "max_abs_err_vs_fp32_torch", "nat", n, cfg, self.max_err(ours(), ref)
        )
        t_ours = self.time_ms(ours)
        self.add("fused_linear_logprob", "triton", "time", "ms", n, cfg, *t_ours)
        self.add("fused_linear_logprob", "triton", "throughput", "TFLOP/s", n, cfg, flop / (t_ours[0] * 1e-3) / 1e12)
        peak_ours = self.peak_extra_mib(ours)
        self.add("fused_linear_logprob", "triton", "peak_extra_memory", "MiB", n, cfg, peak_ours)

        # bf16 logits, their fp32 copy and the fp32 log_softmax: 10 bytes per logit
        est = 10 * n * v
        t_base = self.guarded(est, lambda: self.time_ms(baseline))
        if t_base == "oom":
            self.add("fused_linear_logprob", "torch", "time", "ms", n, cfg, "oom")
            self.add("fused_linear_logprob", "torch", "peak_extra_memory", "MiB", n, cfg, "oom")
            base_txt = "oom"
        else:
            self.add("fused_linear_logprob", "torch", "time", "ms", n, cfg, *t_base)
            peak_base = self.peak_extra_mib(baseline)
            self.add("fused_linear_logprob", "torch", "peak_extra_memory", "MiB", n, cfg, peak_base)
            ratio = peak_ours / peak_base
            self.add("fused_linear_logprob", "triton", "memory_ratio_vs_torch", "ratio", n, cfg, ratio)
            if not self.smoke:  # no device memory counter on the CPU: ratio NaN, no verdict
                self.target(
                    "fused_linear_logprob",
                    "memory_ratio_vs_torch",
                    n,
                    cfg,
                    ratio,
                    ratio <= MEMORY_RATIO_TARGET,
                    f"<= {MEMORY_RATIO_TARGET:g}",
                )
            self.add(
                "fused_linear_logprob",
                "torch",
                "max_abs_err_vs_fp32_torch",
                "nat",
                n,
                cfg,
                self.max_err(baseline(), ref),
            )
            self.add("fused_linear_logprob", "triton", "speedup_vs_torch", "x", n, cfg, t_base[0] / t_ours[0])
            base_txt = f"{t_base[0]:.2f} ms"
        if self.with_chunked:
            t_chunk = self.time_ms(chunked)
            self.add("fused_linear_logprob", "torch_chunked", "time", "ms", n, cfg, *t_chunk)
            self.add(
                "fused_linear_logprob",
                "torch_chunked",
                "peak_extra_memory",
                "MiB",
                n,
                cfg,
                self.peak_extra_mib(chunked),
            )
        print(
            f"fused N={n} V={v} d={d}: triton {t_ours[0]:.2f} ms "
            f"({flop / (t_ours[0] * 1e-3) / 1e12:.0f} TFLOP/s), torch {base_txt}",
            flush=True,
        )

    def sweep_fused(self) -> None:
        torch = self.torch
        n, v, d = (48, 1000, 64) if self.smoke else (16384, 131072, 4096)
        weight = (torch.randn(v, d, device=self.dev) * (3.0 / d**0.5)).to(torch.bfloat16)
        hidden = torch.randn(n, d, device=self.dev, dtype=torch.bfloat16)
        tgt = self.targets(n, v)
        for block_n, block_v, block_d, num_warps, num_stages in SWEEP_B[:1] if self.smoke else SWEEP_B:
            for n_splits in (None, 1) if not self.smoke else (None,):
                cfg = {
                    "N": n,
                    "V": v,
                    "d": d,
                    "dtype": "bfloat16",
                    "BLOCK_N": block_n,
                    "BLOCK_V": block_v,
                    "BLOCK_D": block_d,
                    "num_warps": num_warps,
                    "num_stages": num_stages,
                    "n_splits": n_splits or "auto",
                }
                try:
                    t = self.time_ms(
                        functools.partial(
                            self.kb.fused_linear_logprob_forward,
                            hidden,
                            weight,
                            tgt,
                            block_n=block_n,
                            block_v=block_v,
                            block_d=block_d,
                            n_splits=n_splits,
                            num_warps=num_warps,
                            num_stages=num_stages,
                        )
                    )
                except Exception as exc:  # e.g. out of shared memory for a big tile: record and go on
                    self.add(
                        "fused_linear_logprob", "triton_sweep", "time", "ms", n, cfg, f"error: {type(exc).__name__}"
                    )
                    print(f"sweep fused {cfg}: {type(exc).__name__}: {exc}", flush=True)
                    continue
                tflops = 2 * n * v * d / (t[0] * 1e-3) / 1e12
                self.add("fused_linear_logprob", "triton_sweep", "time", "ms", n, cfg, *t)
                self.add("fused_linear_logprob", "triton_sweep", "throughput", "TFLOP/s", n, cfg, tflops)
                print(
                    f"sweep fused {block_n}x{block_v}x{block_d} w{num_warps} s{num_stages} "
                    f"splits={n_splits or 'auto'}: {t[0]:.2f} ms, {tflops:.0f} TFLOP/s",
                    flush=True,
                )

    def run(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        torch = self.torch
        torch.manual_seed(0)
        print(
            f"device: {self.device_name}; git {self.common['git_sha']}; torch {torch.__version__}, "
            f"triton {self.triton.__version__}",
            flush=True,
        )
        with torch.no_grad():
            copy_gbs = self.copy_bandwidth()
            print(f"copy bandwidth: {copy_gbs:.0f} GB/s", flush=True)
            self.bench_logprob(copy_gbs)
            self.bench_fused()
            self.flush()
            if self.sweep and not self.out_of_time("the block-size sweeps"):
                self.sweep_logprob(copy_gbs)
                self.sweep_fused()
        path = self.out_path
        self.flush()
        print()
        print_table(self.rows)
        print(f"\nwrote {len(self.rows)} rows to {path}")
        return path


def main(argv=None) -> int:
    args = parse_args(argv)
    Bench(args).run(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
