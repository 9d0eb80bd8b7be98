"""Ops: the dispatchers that pick a native or kernel implementation, and their shipped twins.

One module per op group, named by its indicator key (STYLE.md section 4):

* :mod:`~instructfast.ops.textstats`: MTLD and word statistics on the C++ core
  (``instructfast._core``), with the pure-Python twin :mod:`~instructfast.ops.textstats_py`;
* :mod:`~instructfast.ops.logprob`: per-token log-probabilities on the Triton kernels
  (``instructfast.kernels``), with the torch twin :mod:`~instructfast.ops.logprob_torch`.

Ops sit below the models and the indicators: they know tensors and Arrow arrays, not records.
"""
