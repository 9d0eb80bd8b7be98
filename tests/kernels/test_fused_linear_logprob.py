"""Kernel (b) ``kernels/fused_linear_logprob.py`` and its torch twin against a float64 ground truth.

Every case runs through the Triton kernel (interpreted on CPU, see conftest.py; tiles forced small
so the vocabulary and d loops take several steps) and through the chunked torch path with chunks
forced tiny. Inputs are fresh random tensors each run (seed printed on failure).
"""

from __future__ import annotations

import pytest
import torch

from tests.references import TOLERANCES, reference_fused_linear_logprobs, torch_dtype

# (dtype, atol, rtol), one tolerance table with bench/gpu/parity.py (see tests/references.py).
DTYPES = [pytest.param(torch_dtype(name), *tol, id=name) for name, tol in TOLERANCES["fused_linear_logprob"].items()]
ATOL32, RTOL32 = TOLERANCES["fused_linear_logprob"]["fp32"]  # fixed-dtype cases below
# (N, V, d, with_bias). "small-lm": a 4096-token head of width 128 (the GPU bench runs the real
# sizes); "odd": nothing a power of two, with a bias. Kernel tiles are 16 x 128 x 32 below, so
# V spans several column tiles with a partial last one, d several K steps with a partial last
# one, N several row tiles.
SHAPES = [
    pytest.param(40, 4096, 128, False, id="small-lm"),
    pytest.param(37, 1000 + 17, 64 + 3, True, id="odd"),
]
IMPLS = ["triton", "triton-1split", "torch-rows", "torch-bytes"]


@pytest.fixture(params=IMPLS)
def impl(request):
    """One implementation as ``f(hidden, weight, targets, bias, ignore_index) -> [N] fp32``."""
    if request.param.startswith("triton"):
        kernel = request.getfixturevalue("fused_kernel")
        n_splits = 1 if request.param == "triton-1split" else 3  # 3 splits of a ragged vocabulary

        def run(h, w, t, b, ii):
            return kernel.fused_linear_logprob_forward(
                h, w, t, b, ii, block_n=16, block_v=128, block_d=32, n_splits=n_splits
            )

        return run
    torch_path = request.getfixturevalue("torch_path")
    if request.param == "torch-rows":
        return lambda h, w, t, b, ii: torch_path.fused_linear_logprobs_torch(h, w, t, b, ii, chunk_rows=7)
    # byte budget of 3 fp32 logits rows: the automatic chunk-size rule, forced small
    return lambda h, w, t, b, ii: torch_path.fused_linear_logprobs_torch(
        h, w, t, b, ii, max_chunk_bytes=3 * 4 * w.shape[0]
    )


def make_inputs(n_rows, n_vocab, d_model, dtype, *, logit_std=3.0, with_bias=False, ignore_frac=0.25):
    # hidden ~ N(0, 1), weight ~ N(0, logit_std^2 / d): logits of std ~logit_std, like an LM head.
    hidden = torch.randn(n_rows, d_model).to(dtype)
    weight = (torch.randn(n_vocab, d_model) * (logit_std / d_model**0.5)).to(dtype)
    bias = torch.randn(n_vocab).to(dtype) if with_bias else None
    targets = torch.randint(0, n_vocab, (n_rows,))
    targets[torch.rand(n_rows) < ignore_frac] = -100
    targets[0] = torch.randint(0, n_vocab, ()).item()
    return hidden, weight, bias, targets


@pytest.mark.parametrize("n_rows, n_vocab, d_model, with_bias", SHAPES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_matches_float64_reference(impl, check, dtype, atol, rtol, n_rows, n_vocab, d_model, with_bias):
    hidden, weight, bias, targets = make_inputs(n_rows, n_vocab, d_model, dtype, with_bias=with_bias)
    out = impl(hidden, weight, targets, bias, -100)
    assert out.dtype == torch.float32 and out.shape == (n_rows,)
    expected = reference_fused_linear_logprobs(hidden, weight, targets, bias)
    check(out, expected, atol=atol, rtol=rtol, what="fused logprobs")
    assert (out[targets == -100] == 0.0).all()


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_large_magnitude_logits_are_stable(impl, check, dtype, atol, rtol):
    # Logits of std 30 (max ~ 120) and a +300 bias on one late token: exp() of raw logits would
    # overflow fp32; only the running-max form survives. Tolerances scale with the logits.
    hidden, weight, bias, targets = make_inputs(19, 1000 + 17, 64 + 3, dtype, logit_std=30.0, with_bias=True)
    bias[900] = 300.0
    out = impl(hidden, weight, targets, bias, -100)
    assert torch.isfinite(out).all()
    expected = reference_fused_linear_logprobs(hidden, weight, targets, bias)
    check(out, expected, atol=10 * atol, rtol=rtol, what="std-30 logits")


def test_bias_dtype_ignore_index_and_out_of_range(impl, check):
    # fp32 bias on a bf16 head; ignore_index = 3 (a valid id) gives 0.0; -100, V and 10**12 are
    # then out-of-range targets and give NaN.
    hidden, weight, _, targets = make_inputs(9, 500, 48, torch.bfloat16, ignore_frac=0.0)
    bias = torch.randn(500, dtype=torch.float32)
    targets[1:5] = torch.tensor([3, -100, 500, 10**12])
    out = impl(hidden, weight, targets, bias, 3)
    assert out[1].item() == 0.0 and torch.isnan(out[2:5]).all()
    expected = reference_fused_linear_logprobs(hidden, weight, targets, bias, ignore_index=3)
    check(out, expected, atol=ATOL32, rtol=RTOL32, what="bias fp32, ignore 3")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy log(0) for the all-forbidden row
def test_minus_inf_bias_masks_tokens(impl, check):
    # A bias of -inf forbids tokens (padded vocabularies): the first 300 columns span whole
    # column tiles and whole splits, whose running max stays -inf (must not turn into NaN).
    # Row 1 targets a forbidden token -> -inf.
    hidden, weight, _, targets = make_inputs(6, 1000 + 17, 40, torch.float32, ignore_frac=0.0)
    bias = torch.zeros(1017)
    bias[:300] = float("-inf")
    targets[0] = 500
    targets[1] = 7
    out = impl(hidden, weight, targets, bias, -100)
    assert out[1].item() == float("-inf")
    check(
        out, reference_fused_linear_logprobs(hidden, weight, targets, bias), atol=ATOL32, rtol=RTOL32, what="-inf bias"
    )


def test_batch_invariance(impl, seed):
    # A row's value must not depend on which rows share its batch (SPEC: within 1e-4 relative).
    # Row tiles and chunks differ between the calls; the per-row sums do not.
    hidden, weight, bias, targets = make_inputs(35, 1000 + 17, 64 + 3, torch.bfloat16, with_bias=True)
    full = impl(hidden, weight, targets, bias, -100)
    for subset in (torch.tensor([30, 3, 17, 4, 22]), torch.tensor([12])):
        alone = impl(hidden[subset], weight, targets[subset], bias, -100)
        torch.testing.assert_close(alone, full[subset], atol=1e-5, rtol=1e-5, msg=lambda m: f"{m} (seed={seed})")


def test_default_tiles_and_empty_batch(fused_kernel, check):
    # The launcher's own choice of tiles and splits (what the dispatcher uses), and N = 0.
    hidden, weight, bias, targets = make_inputs(21, 3000 + 1, 96, torch.bfloat16, with_bias=True)
    out = fused_kernel.fused_linear_logprob_forward(hidden, weight, targets, bias)
    check(
        out, reference_fused_linear_logprobs(hidden, weight, targets, bias), atol=ATOL32, rtol=RTOL32, what="defaults"
    )
    empty = fused_kernel.fused_linear_logprob_forward(hidden[:0], weight, targets[:0])
    assert empty.shape == (0,) and empty.dtype == torch.float32


def test_fused_equals_materialised_kernel(fused_kernel, logprob_kernel, check):
    # Kernel (b) and kernel (a) on the fp32 logits agree: the fusion changes memory, not results.
    hidden, weight, bias, targets = make_inputs(17, 2000 + 9, 64, torch.float16, logit_std=10.0, with_bias=True)
    logits = torch.addmm(bias.float(), hidden.float(), weight.float().T)
    check(
        fused_kernel.fused_linear_logprob_forward(hidden, weight, targets, bias),
        logprob_kernel.logprob_forward(logits, targets),
        atol=ATOL32,
        rtol=RTOL32,
        what="kernel (b) vs kernel (a)",
    )


# ---- the public dispatcher --------------------------------------------------------------------


def test_dispatcher_routes_and_records_no_gradient(dispatch, monkeypatch, check):
    lp, _ = dispatch
    hidden, weight, bias, targets = make_inputs(18, 700, 48, torch.float32, with_bias=True)
    weight.requires_grad_(True)  # lm_head.weight of a model: no autograd graph may be kept
    expected = reference_fused_linear_logprobs(hidden, weight.detach(), targets, bias)
    for choice in ("auto", "triton", "torch"):
        monkeypatch.setenv("INSTRUCTFAST_KERNELS", choice)
        out = lp.fused_linear_logprobs(hidden, weight, targets, bias=bias)
        assert not out.requires_grad
        check(out, expected, atol=ATOL32, rtol=RTOL32, what=f"INSTRUCTFAST_KERNELS={choice}")


@pytest.mark.parametrize(
    "hidden, weight, targets, bias, match",
    [
        (
            torch.zeros(4, 8),
            torch.zeros(10, 8),
            torch.zeros(5, dtype=torch.int64),
            None,
            r"`targets` must have shape \[N\] matching hidden \[N, d\], got targets \(5,\) and hidden \(4, 8\)",
        ),
        (
            torch.zeros(4, 8),
            torch.zeros(10, 9),
            torch.zeros(4, dtype=torch.int64),
            None,
            r"`weight` must have shape \[V, d\] with d = 8 to match hidden \[N, d\], got \(10, 9\)",
        ),
        (
            torch.zeros(4, 8),
            torch.zeros(10, 8, dtype=torch.bfloat16),
            torch.zeros(4, dtype=torch.int64),
            None,
            r"`weight` must have the dtype of `hidden` \(torch.float32\), got torch.bfloat16",
        ),
        (
            torch.zeros(4, 8),
            torch.zeros(10, 8),
            torch.zeros(4, dtype=torch.int64),
            torch.zeros(11),
            r"`bias` must have shape \[V\] = \(10,\) to match weight \[V, d\], got \(11,\)",
        ),
        (
            torch.zeros(4, 8, dtype=torch.int32),
            torch.zeros(10, 8),
            torch.zeros(4, dtype=torch.int64),
            None,
            "`hidden` must be float32, float16 or bfloat16, got torch.int32",
        ),
        (
            torch.zeros(2, 4, 8),
            torch.zeros(10, 8),
            torch.zeros(2, dtype=torch.int64),
            None,
            r"`hidden` must have shape \[N, d\], got \(2, 4, 8\)",
        ),
        (torch.zeros(4, 8), torch.zeros(0, 8), torch.zeros(4, dtype=torch.int64), None, "`weight` must be non-empty"),
    ],
)
def test_dispatcher_errors(dispatch, hidden, weight, targets, bias, match):
    lp, _ = dispatch
    with pytest.raises(ValueError, match=match):
        lp.fused_linear_logprobs(hidden, weight, targets, bias=bias)
