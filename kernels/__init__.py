"""Triton kernels of instructfast, one op per file (shipped as ``instructfast.kernels``).

Each file holds its private ``@triton.jit`` kernels first, then the launcher that checks
shapes, makes inputs contiguous, picks block sizes and allocates outputs. Files import only
``torch`` and ``triton`` (absolute imports), so a source checkout can load them as
``kernels.<op>`` without installing the package. The public, documented entry points are in
``instructfast.indicators``.
"""
