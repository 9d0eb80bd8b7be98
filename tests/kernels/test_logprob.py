"""Kernel (a) ``kernels/logprob.py`` and its torch twin against a float64 ground truth.

Every case runs through the Triton kernel (interpreted on CPU, see conftest.py) and through the
chunked torch path with chunks forced tiny; the public dispatcher's routing, errors and doctest
are checked at the end. Inputs are fresh random tensors each run (seed printed on failure).
"""

from __future__ import annotations

import doctest

import pytest
import torch

from tests.references import TOLERANCES, reference_token_logprobs, torch_dtype

# (dtype, atol, rtol), one tolerance table with bench/gpu/parity.py (see tests/references.py).
DTYPES = [pytest.param(torch_dtype(name), *tol, id=name) for name, tol in TOLERANCES["logprob"].items()]
ATOL32, RTOL32 = TOLERANCES["logprob"]["fp32"]  # fixed-dtype cases below
# (N, V, BLOCK_V for the kernel). V > BLOCK_V everywhere, so the online log-sum-exp crosses
# blocks and ends on a partial one: LLaMA-2's 32,000 = 7 x 4096 + 3328; 1017 = 3 x 256 + 249.
SHAPES = [
    pytest.param(8, 32000, 4096, id="llama2-vocab"),
    pytest.param(13, 1000 + 17, 256, id="odd"),
]
IMPLS = ["triton", "torch-rows", "torch-bytes"]


@pytest.fixture(params=IMPLS)
def impl(request):
    """One implementation as ``f(logits, targets, ignore_index, block_v) -> [N] fp32``."""
    if request.param == "triton":
        kernel = request.getfixturevalue("logprob_kernel")
        return lambda x, t, ii, bv: kernel.logprob_forward(x, t, ii, block_v=bv)
    torch_path = request.getfixturevalue("torch_path")
    if request.param == "torch-rows":  # 3 rows per chunk: several chunks and a ragged last one
        return lambda x, t, ii, bv: torch_path.token_logprobs_torch(x, t, ii, chunk_rows=3)
    # byte budget of 2 fp32 rows: the automatic chunk-size rule, forced small
    return lambda x, t, ii, bv: torch_path.token_logprobs_torch(x, t, ii, max_chunk_bytes=2 * 4 * x.shape[1])


def make_inputs(n_rows, n_vocab, dtype, *, scale=3.0, shift=0.0, ignore_frac=0.25, ignore_index=-100):
    logits = (torch.randn(n_rows, n_vocab) * scale + shift).to(dtype)
    targets = torch.randint(0, n_vocab, (n_rows,))
    targets[torch.rand(n_rows) < ignore_frac] = ignore_index
    targets[0] = torch.randint(0, n_vocab, ()).item()  # at least one scored row
    return logits, targets


@pytest.mark.parametrize("n_rows, n_vocab, block_v", SHAPES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_matches_float64_reference(impl, check, dtype, atol, rtol, n_rows, n_vocab, block_v):
    logits, targets = make_inputs(n_rows, n_vocab, dtype)
    out = impl(logits, targets, -100, block_v)
    assert out.dtype == torch.float32 and out.shape == (n_rows,)
    check(out, reference_token_logprobs(logits, targets), atol=atol, rtol=rtol, what="logprobs")
    assert (out[targets == -100] == 0.0).all()


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_large_magnitude_logits_are_stable(impl, check, dtype, atol, rtol):
    # scale 30 and a +400 shift: exp() of raw logits overflows fp32 (> 88.7) and fp16; only a
    # max-shifted log-sum-exp survives. The max sits in a late block for some rows.
    logits, targets = make_inputs(6, 1000 + 17, dtype, scale=30.0, shift=400.0)
    logits[1, 1000] = 1000.0
    out = impl(logits, targets, -100, 256)
    assert torch.isfinite(out).all()
    check(out, reference_token_logprobs(logits, targets), atol=atol, rtol=rtol, what="scale-30 logits")


def test_custom_ignore_index_and_out_of_range_targets(impl, check):
    # ignore_index = 5 is also a valid token id: those rows must still give 0.0, and -100 is then
    # an ordinary out-of-range target (NaN), as are V and 10**12.
    n_vocab = 300
    logits, targets = make_inputs(7, n_vocab, torch.float32, ignore_frac=0.0)
    targets[1:5] = torch.tensor([5, -100, n_vocab, 10**12])
    out = impl(logits, targets, 5, 128)
    assert out[1].item() == 0.0
    assert torch.isnan(out[2:5]).all()
    check(out, reference_token_logprobs(logits, targets, ignore_index=5), atol=ATOL32, rtol=RTOL32, what="ignore=5")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy log(0) for the all -inf row
def test_minus_inf_logits(impl, check):
    # A logits processor may set forbidden tokens to -inf. Row 0: the whole first block is -inf
    # (the running max stays -inf for a block: exp(-inf - -inf) must not produce NaN).
    # Row 1: the target itself is forbidden -> -inf. Row 2: every logit is -inf -> NaN (undefined).
    logits, targets = make_inputs(4, 1000 + 17, torch.float32, ignore_frac=0.0)
    logits[0, :256] = float("-inf")
    targets[0] = 700
    logits[1, ::3] = float("-inf")
    targets[1] = 3
    logits[2] = float("-inf")
    out = impl(logits, targets, -100, 256)
    assert out[1].item() == float("-inf")
    assert torch.isnan(out[2])
    check(out, reference_token_logprobs(logits, targets), atol=ATOL32, rtol=RTOL32, what="-inf logits")


def test_batch_invariance(impl, seed):
    # A row's value must not depend on which rows share its batch (SPEC: within 1e-4 relative;
    # rows are independent programs or independent chunks here, so 1e-6 is demanded).
    logits, targets = make_inputs(12, 1000 + 17, torch.bfloat16)
    full = impl(logits, targets, -100, 256)
    subset = torch.tensor([9, 2, 5, 11])
    alone = impl(logits[subset], targets[subset], -100, 256)
    torch.testing.assert_close(alone, full[subset], atol=1e-6, rtol=1e-6, msg=lambda m: f"{m} (seed={seed})")
    one = impl(logits[7:8], targets[7:8], -100, 256)
    torch.testing.assert_close(one, full[7:8], atol=1e-6, rtol=1e-6, msg=lambda m: f"{m} (seed={seed})")


def test_strided_rows_and_empty_batch(impl, check):
    # Rows of a wider buffer (vocabulary padded to a multiple of 64, sliced back): the kernel reads
    # them through the row stride without a copy. Zero rows give an empty result.
    wide, targets = make_inputs(5, 1088, torch.float16)
    logits = wide[:, :1000]
    targets = targets.clamp(max=999)  # -100 (ignored) is unchanged
    assert not logits.is_contiguous()
    check(
        impl(logits, targets, -100, 256),
        reference_token_logprobs(logits, targets),
        atol=ATOL32,
        rtol=RTOL32,
        what="strided",
    )
    empty = impl(torch.randn(0, 64), torch.zeros(0, dtype=torch.int64), -100, 64)
    assert empty.shape == (0,) and empty.dtype == torch.float32


def test_kernel_equals_torch_path(logprob_kernel, torch_path, check):
    # The twin the kernels are held equal to (RapidFuzz habit), default block size and chunking.
    logits, targets = make_inputs(6, 5000 + 3, torch.bfloat16, scale=10.0)
    check(
        logprob_kernel.logprob_forward(logits, targets),
        torch_path.token_logprobs_torch(logits, targets),
        atol=ATOL32,
        rtol=RTOL32,
        what="kernel vs torch path",
    )


# ---- the public dispatcher: routing, validation, doctest --------------------------------------


def test_dispatcher_routes_cpu_tensors(dispatch, logprob_kernel, torch_path, monkeypatch, check):
    lp, _ = dispatch
    logits, targets = make_inputs(5, 700, torch.float32)
    expected = reference_token_logprobs(logits, targets)
    monkeypatch.delenv("INSTRUCTFAST_KERNELS", raising=False)
    assert lp.resolve_impl("cpu")[0] == "torch"
    check(lp.token_logprobs(logits, targets), expected, atol=ATOL32, rtol=RTOL32, what="auto (torch)")
    monkeypatch.setenv("INSTRUCTFAST_KERNELS", "triton")  # TRITON_INTERPRET=1: kernels run on CPU
    assert lp.resolve_impl("cpu")[0] == "triton"
    check(lp.token_logprobs(logits, targets), expected, atol=ATOL32, rtol=RTOL32, what="forced triton")
    monkeypatch.setenv("INSTRUCTFAST_KERNELS", "torch")
    assert lp.resolve_impl("cpu")[0] == "torch"
    monkeypatch.setenv("INSTRUCTFAST_KERNELS", "cuda-please")
    with pytest.raises(ValueError, match="`INSTRUCTFAST_KERNELS` must be one of"):
        lp.token_logprobs(logits, targets)


def test_dispatcher_records_no_gradient(dispatch):
    lp, _ = dispatch
    logits = torch.randn(3, 50, requires_grad=True)
    out = lp.token_logprobs(logits, torch.tensor([1, 2, 3]))
    assert not out.requires_grad


@pytest.mark.parametrize(
    "logits, targets, kwargs, error, match",
    [
        (
            torch.zeros(4, 10),
            torch.zeros(5, dtype=torch.int64),
            {},
            ValueError,
            r"`targets` must have shape \[N\] matching logits \[N, V\], got targets \(5,\) and logits \(4, 10\)",
        ),
        (torch.zeros(4, 10), torch.zeros(4, 1, dtype=torch.int64), {}, ValueError, r"got targets \(4, 1\)"),
        (
            torch.zeros(2, 3, 10),
            torch.zeros(2, dtype=torch.int64),
            {},
            ValueError,
            r"`logits` must have shape \[N, V\], got \(2, 3, 10\)",
        ),
        (
            torch.zeros(4, 10, dtype=torch.float64),
            torch.zeros(4, dtype=torch.int64),
            {},
            ValueError,
            "`logits` must be float32, float16 or bfloat16, got torch.float64",
        ),
        (torch.zeros(4, 0), torch.zeros(4, dtype=torch.int64), {}, ValueError, "non-empty vocabulary"),
        (torch.zeros(4, 10), torch.zeros(4), {}, ValueError, "`targets` must hold integer token ids"),
        (
            torch.zeros(4, 10),
            torch.zeros(4, dtype=torch.int64, device="meta"),
            {},
            ValueError,
            r"`targets` must be on the device of `logits` \(cpu\), got meta",
        ),
        ([[0.0, 1.0]], torch.zeros(1, dtype=torch.int64), {}, TypeError, "`logits` must be a torch.Tensor, got list"),
        (
            torch.zeros(4, 10),
            torch.zeros(4, dtype=torch.int64),
            {"ignore_index": 1.5},
            TypeError,
            "`ignore_index` must be an int, got 1.5",
        ),
    ],
)
def test_dispatcher_errors(dispatch, logits, targets, kwargs, error, match):
    lp, _ = dispatch
    with pytest.raises(error, match=match):
        lp.token_logprobs(logits, targets, **kwargs)


def test_dispatcher_cpu_without_interpreter_is_refused(dispatch, monkeypatch):
    # A compiled (non-interpreted) kernel module cannot take CPU tensors: the explicit request must
    # fail with an explanation instead of a Triton pointer error.
    lp, errors = dispatch
    compiled = type("CompiledKernels", (), {"INTERPRETED": False})
    monkeypatch.setitem(lp._kernel_modules, "logprob", compiled)
    monkeypatch.setenv("INSTRUCTFAST_KERNELS", "triton")
    with pytest.raises(errors.IndicatorUnavailableError, match="TRITON_INTERPRET=1"):
        lp.resolve_impl("cpu", "logprob")


def test_dispatcher_missing_triton(dispatch, monkeypatch):
    # Forced kernels that cannot import raise MissingDependencyError; on CUDA without a force the
    # torch path is used with one ImplementationFallbackWarning (checked through resolve_impl).
    lp, errors = dispatch

    def broken(name):
        raise ImportError("No module named 'triton'")

    monkeypatch.setattr(lp, "_import_kernel", broken)
    monkeypatch.setenv("INSTRUCTFAST_KERNELS", "triton")
    with pytest.raises(errors.MissingDependencyError, match="pip install"):
        lp.resolve_impl("cpu")
    monkeypatch.delenv("INSTRUCTFAST_KERNELS")
    monkeypatch.setattr(lp, "_fallback_warned", False)
    with pytest.warns(errors.ImplementationFallbackWarning, match="Triton kernels unavailable"):
        assert lp.resolve_impl("cuda")[0] == "torch"


def test_dispatcher_doctests(dispatch, monkeypatch):
    lp, _ = dispatch
    monkeypatch.delenv("INSTRUCTFAST_KERNELS", raising=False)
    # The examples import the installed name; point it at the module under test.
    globs = {"token_logprobs": lp.token_logprobs, "fused_linear_logprobs": lp.fused_linear_logprobs}
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(lp, globs=globs):
        test.examples = [
            e
            for e in test.examples
            if "import token_logprobs" not in e.source and "import fused_linear_logprobs" not in e.source
        ]
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 2
