"""A BERT sentence embedder as a *packed* graph: no compute is spent on padding tokens.

Why: on a CPU the embedder is bound by its matrix products, and a length-bucketed padded
batch still carries ~5% padding tokens through every one of them. Here the rows of a batch
are laid end to end (``input_ids`` [T], T = real tokens) and every per-token op runs on that
[T, hidden] matrix: embeddings, output projection, feed-forward, layer norms. Only
self-attention needs rows side by side, so each layer gathers a padded [B, L, hidden] view,
runs ONNX Runtime's fused ``com.microsoft.Attention`` (its Q/K/V product, softmax and mask
in one kernel) and gathers the real tokens back. Mean pooling reads the padded view once.

Graph inputs (built by :func:`instructfast.models.onnx_runtime.packed_feed`):

* ``input_ids``, ``position_ids``: int64 [T], the rows concatenated, positions restarting at 0;
* ``pad_index``: int64 [B, L], for each padded slot the packed token it shows (0 on padding);
* ``attention_mask``: int32 [B, L], 1 on real tokens;
* ``unpad_index``: int64 [T], for each packed token its slot in the flattened [B * L] view.

Export goes through ``torch.onnx.export(dynamo=True)``: the two ORT kernels are torch
custom ops (with real torch bodies, used by verification and eager runs) translated to
their ``com.microsoft`` nodes through ``custom_translation_table``. The residual add stays
``Add`` + ``LayerNormalization``: ORT's fused SkipLayerNormalization measured slower here
(``session.disabled_optimizers`` in the manifest keeps ORT from re-fusing it).

Only for ``BertModel`` bodies with absolute positions (all-MiniLM, BGE, E5, GTE ...); other
architectures keep the padded graph (:class:`instructfast.models.graphs.MeanPoolEmbedder`).
Needs torch; only the export imports this module.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError

INPUTS = ["input_ids", "position_ids", "pad_index", "attention_mask", "unpad_index"]
# ORT rewrites Add + LayerNormalization into SkipLayerNormalization by default: slower on
# these graphs (all-MiniLM-L6-v2, 2-core AMD EPYC: the fused op cost 2.2x Add + LN)
SESSION = {"disabled_optimizers": ["SkipLayerNormFusion"]}
MASK_FILTER = -10000.0  # ORT Attention's additive mask value (its default)


# -- the two ORT kernels as torch custom ops ----------------------------------------------
@torch.library.custom_op("instructfast::padded_attention", mutates_args=())
def padded_attention(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor, num_heads: int
) -> torch.Tensor:
    """``com.microsoft.Attention``: [B, L, H] input, [H, 3H] Q|K|V weight, [3H] bias, [B, L] mask."""
    b, seq, h = x.shape
    d = h // num_heads
    qkv = (x @ weight + bias).view(b, seq, 3, num_heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
    scores = scores + (1.0 - mask.to(x.dtype))[:, None, None, :] * MASK_FILTER
    out = torch.softmax(scores, dim=-1) @ v
    return out.permute(0, 2, 1, 3).reshape(b, seq, h)


@padded_attention.register_fake
def _(x, weight, bias, mask, num_heads):
    return torch.empty_like(x)


@torch.library.custom_op("instructfast::bias_gelu", mutates_args=())
def bias_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``com.microsoft.BiasGelu``: exact (erf) GELU of ``x + bias``."""
    return F.gelu(x + bias)


@bias_gelu.register_fake
def _(x, bias):
    return torch.empty_like(x)


def translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: the custom ops to ORT contrib nodes."""
    import onnxscript

    msft = onnxscript.values.Opset("com.microsoft", 1)

    def attention_onnx(x, weight, bias, mask, num_heads: int):
        return msft.Attention(x, weight, bias, mask, num_heads=num_heads, mask_filter_value=MASK_FILTER)

    def bias_gelu_onnx(x, bias):
        return msft.BiasGelu(x, bias)

    return {
        torch.ops.instructfast.padded_attention.default: attention_onnx,
        torch.ops.instructfast.bias_gelu.default: bias_gelu_onnx,
    }


@contextlib.contextmanager
def contrib_schemas():
    """Make the ``com.microsoft`` Attention and BiasGelu nodes known to ``onnx.defs`` while
    exporting (the exporter builds nodes from schemas; ONNX itself does not ship ORT's).
    Schemas already present are left alone; the ones added here are removed afterwards."""
    import onnx
    from onnx.defs import OpSchema

    def param(name: str, typ: str) -> OpSchema.FormalParameter:
        return OpSchema.FormalParameter(name, typ)

    specs = {
        "Attention": (
            [param("input", "T"), param("weights", "T"), param("bias", "T"), param("mask_index", "M")],
            [("num_heads", OpSchema.AttrType.INT), ("mask_filter_value", OpSchema.AttrType.FLOAT)],
        ),
        "BiasGelu": ([param("A", "T"), param("B", "T")], []),
    }
    added = []
    for name, (inputs, attrs) in specs.items():
        if onnx.defs.has(name, "com.microsoft"):
            continue
        schema = OpSchema(
            name,
            "com.microsoft",
            1,
            inputs=inputs,
            outputs=[param("output", "T")],
            type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""), ("M", ["tensor(int32)"], "")],
            attributes=[OpSchema.Attribute(a, t, "") for a, t in attrs],
        )
        onnx.defs.register_schema(schema)
        added.append(name)
    try:
        yield
    finally:
        for name in added:
            onnx.defs.deregister_schema(name, 1, "com.microsoft")


# -- the module -----------------------------------------------------------------------------
def supports(body: nn.Module) -> bool:
    """Whether ``body`` is a BERT encoder this packed graph reproduces exactly."""
    cfg = body.config
    return (
        type(body).__name__ == "BertModel"
        and getattr(cfg, "position_embedding_type", "absolute") == "absolute"
        and not getattr(cfg, "is_decoder", False)
        and cfg.hidden_act == "gelu"
    )


class PackedBertEmbedder(nn.Module):
    """BERT body on packed tokens, mean pooling over real tokens, unit L2 norm."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        if not supports(body):
            msg = f"{type(body).__name__} is not a BERT encoder with absolute positions and exact GELU"
            raise ModelError(msg)
        cfg = body.config
        self.hidden = int(cfg.hidden_size)
        self.heads = int(cfg.num_attention_heads)
        emb = body.embeddings
        self.word = emb.word_embeddings
        self.position = emb.position_embeddings
        # single-segment texts: every token has type 0
        self.register_buffer("type0", emb.token_type_embeddings.weight[0].detach().clone())
        self.embed_norm = emb.LayerNorm
        self.layers = nn.ModuleList(_PackedLayer(layer, self.heads) for layer in body.encoder.layer)

    def forward(self, input_ids, position_ids, pad_index, attention_mask, unpad_index):
        b, seq = pad_index.shape
        flat_pad = pad_index.reshape(-1)
        x = self.embed_norm(self.word(input_ids) + self.position(position_ids) + self.type0)  # [T, H]
        for layer in self.layers:
            x = layer(x, flat_pad, attention_mask, unpad_index, b, seq)
        padded = x.index_select(0, flat_pad).reshape(b, seq, self.hidden)
        m = attention_mask.to(x.dtype).unsqueeze(-1)
        mean = (padded * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return F.normalize(mean, p=2.0, dim=1)


class _PackedLayer(nn.Module):
    def __init__(self, layer: nn.Module, heads: int) -> None:
        super().__init__()
        a = layer.attention.self
        self.heads = heads
        # Q|K|V as one [H, 3H] product: the layout com.microsoft.Attention takes
        self.qkv_weight = nn.Parameter(
            torch.cat([a.query.weight, a.key.weight, a.value.weight]).T.contiguous().detach()
        )
        self.qkv_bias = nn.Parameter(torch.cat([a.query.bias, a.key.bias, a.value.bias]).detach())
        self.attn_out = layer.attention.output.dense
        self.attn_norm = layer.attention.output.LayerNorm
        self.ffn_in = layer.intermediate.dense
        self.ffn_out = layer.output.dense
        self.ffn_norm = layer.output.LayerNorm

    def forward(self, x, flat_pad, mask, unpad_index, b: int, seq: int):
        h = x.shape[-1]
        padded = x.index_select(0, flat_pad).reshape(b, seq, h)
        att = torch.ops.instructfast.padded_attention(padded, self.qkv_weight, self.qkv_bias, mask, self.heads)
        att = att.reshape(b * seq, h).index_select(0, unpad_index)
        x = self.attn_norm(self.attn_out(att) + x)
        inner = torch.ops.instructfast.bias_gelu(x @ self.ffn_in.weight.T, self.ffn_in.bias)
        return self.ffn_norm(self.ffn_out(inner) + x)


def example_inputs(rows: list[list[int]]) -> tuple[torch.Tensor, ...]:
    """Graph inputs for ``rows`` of token ids, as torch tensors (tracing and verification)."""
    from .onnx_runtime import packed_feed

    feed = packed_feed(rows)
    return tuple(torch.from_numpy(feed[name]) for name in INPUTS)


def dynamic_shapes() -> dict:
    tokens, batch, width = torch.export.Dim("tokens"), torch.export.Dim("batch"), torch.export.Dim("width")
    return {
        "input_ids": {0: tokens},
        "position_ids": {0: tokens},
        "pad_index": {0: batch, 1: width},
        "attention_mask": {0: batch, 1: width},
        "unpad_index": {0: tokens},
    }
