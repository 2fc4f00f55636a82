"""Core attention for megatron-core's local layer spec: causal, GQA, padded or packed (THD).

megatron's own local `DotProductAttention` materialises the full score matrix and cannot take
packed sequences. This module plugs into the same slot and picks a kernel for packed (THD) batches:
flash-attn's varlen kernel when installed on CUDA; otherwise on CUDA one compiled FlexAttention call
with a document-causal block mask (NOT run on a GPU yet, so its speed is unmeasured; on CPU, eager
and compiled, it gives the per-document path's results); on CPU, or with attention dropout, PyTorch
SDPA run per packed document. No compute goes to padding or across documents in
any of them.
"""
import functools
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule

try:  # optional GPU extra
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None

_compiled_flex_attention = None  # torch.compile(flex_attention), built at its first CUDA use


@dataclass
class PackedDocuments(PackedSeqParams):
    """megatron's THD parameters, plus the document lengths as the host knows them: the key under
    which the FlexAttention path caches its block mask, with no device sync."""

    seq_lengths: tuple[int, ...] = ()


def packed_seq_params(seq_lengths: list[int], device=None) -> PackedDocuments:
    """THD parameters for sequences concatenated back to back (in order)."""
    cu = torch.zeros(len(seq_lengths) + 1, dtype=torch.int32, device=device)
    cu[1:] = torch.cumsum(torch.tensor(seq_lengths, dtype=torch.int32, device=device), 0)
    longest = max(seq_lengths)
    return PackedDocuments(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=longest,
                           max_seqlen_kv=longest, seq_lengths=tuple(seq_lengths))


class CausalAttention(MegatronModule):
    """Drop-in replacement for megatron's `DotProductAttention` (same constructor)."""

    def __init__(self, config, layer_number, attn_mask_type, attention_type,
                 attention_dropout=None, softmax_scale=None, cp_comm_type=None, pg_collection=None):
        super().__init__(config=config)
        if attn_mask_type not in (AttnMaskType.causal, AttnMaskType.padding_causal):
            raise ValueError(f"CausalAttention supports causal masks only, got {attn_mask_type}")
        if config.context_parallel_size != 1:
            raise ValueError("CausalAttention does not support context parallelism")
        self.softmax_scale = softmax_scale or config.kv_channels ** -0.5
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(self, query, key, value, attention_mask, attn_mask_type=None,
                attention_bias=None, packed_seq_params: PackedSeqParams | None = None):
        if attention_bias is not None:
            raise ValueError("CausalAttention does not take an attention bias")
        dropout = self.dropout if self.training else 0.0
        if packed_seq_params is not None:  # THD: [tokens, heads, head_dim]
            return self._packed(query, key, value, packed_seq_params, dropout)
        # megatron's layout [seq, batch, heads, head_dim] → SDPA's [batch, heads, seq, head_dim].
        # Right padding needs no mask: with a causal mask real tokens never attend to later padding.
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        out = self._sdpa(q, k, v, dropout)
        return out.permute(2, 0, 1, 3).flatten(2)

    def _sdpa(self, q, k, v, dropout):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True,
                                              scale=self.softmax_scale,
                                              enable_gqa=q.shape[-3] != k.shape[-3])

    def _packed(self, query, key, value, params, dropout):
        cu = params.cu_seqlens_q
        if flash_attn_varlen_func is not None and query.is_cuda:
            return flash_attn_varlen_func(query, key, value, cu, cu, params.max_seqlen_q,
                                          params.max_seqlen_kv, dropout_p=dropout,
                                          softmax_scale=self.softmax_scale, causal=True,
                                          deterministic=torch.are_deterministic_algorithms_enabled())
        if query.is_cuda and dropout == 0.0:
            return self._flex(query, key, value, document_lengths(params), compiled=True)
        out = torch.empty_like(query)
        bounds = cu.tolist()
        for start, end in zip(bounds[:-1], bounds[1:]):
            if end == start:
                continue
            q, k, v = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (query, key, value))
            out[start:end] = self._sdpa(q, k, v, dropout)[0].transpose(0, 1)
        return out

    def _flex(self, query, key, value, seq_lengths: tuple[int, ...], compiled: bool):
        """One FlexAttention call over the whole packed stream: token i attends to j ≤ i of its own
        document."""
        from torch.nn.attention.flex_attention import flex_attention

        global _compiled_flex_attention
        attend = flex_attention
        if compiled:
            if _compiled_flex_attention is None:
                _compiled_flex_attention = torch.compile(flex_attention, dynamic=True)
            attend = _compiled_flex_attention
        q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (query, key, value))  # [1, heads, T, dim]
        out = attend(q, k, v, block_mask=document_causal_mask(seq_lengths, query.device),
                     scale=self.softmax_scale, enable_gqa=q.shape[1] != k.shape[1])
        return out[0].transpose(0, 1)


def document_lengths(params: PackedSeqParams) -> tuple[int, ...]:
    """The packing's document lengths: carried by `PackedDocuments`; from megatron's own
    `PackedSeqParams`, read back from the device (one sync)."""
    if isinstance(params, PackedDocuments):
        return params.seq_lengths
    return tuple((params.cu_seqlens_q[1:] - params.cu_seqlens_q[:-1]).tolist())


MASK_BLOCK = 128  # tokens per side of FlexAttention's mask blocks (its default)


@functools.lru_cache(maxsize=16)  # for every layer, recompute and micro-batch of a packing; a miss only rebuilds
def document_causal_mask(seq_lengths: tuple[int, ...], device: torch.device):
    """FlexAttention block mask of documents packed back to back: causal within each, nothing across.

    Built from the document boundaries at block level — O(T) token entries and O((T/128)²) block
    entries, not the T×T grid that `create_block_mask` evaluates — with the same blocks that
    `create_block_mask` finds: a (q, kv) block is listed when some token pair in it attends, and full
    (its mask is not evaluated) when every pair does: kv block strictly earlier, both inside one
    document, and the q block not cut by the end of the stream."""
    from torch.nn.attention.flex_attention import BlockMask

    length = sum(seq_lengths)
    ends = torch.tensor(list(itertools.accumulate(seq_lengths)), device=device)
    document = torch.searchsorted(ends, torch.arange(length, device=device), right=True)  # [T]
    blocks = torch.arange(-(-length // MASK_BLOCK), device=device)
    first = document[blocks * MASK_BLOCK]  # the document of each block's first and last token
    last = document[((blocks + 1) * MASK_BLOCK).clamp(max=length) - 1]
    q, kv = blocks[:, None], blocks[None, :]
    attending = (kv <= q) & (last[kv] >= first[q])
    full = (kv < q) & (first[kv] == last[q]) & ((q + 1) * MASK_BLOCK <= length)

    def same_document_causal(batch, head, q_index, kv_index):
        return (document[q_index] == document[kv_index]) & (q_index >= kv_index)

    return BlockMask.from_kv_blocks(*_listed(attending & ~full), *_listed(full), BLOCK_SIZE=MASK_BLOCK,
                                    mask_mod=same_document_causal, seq_lengths=(length, length))


def _listed(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[q blocks, kv blocks] bool → BlockMask's (count per q block, kv block indices: the listed ones
    first, ascending), with its [batch = 1, heads = 1] leading dimensions."""
    counts = blocks.sum(-1, dtype=torch.int32)
    indices = torch.argsort(blocks.to(torch.int32), dim=-1, descending=True, stable=True).to(torch.int32)
    return counts[None, None], indices[None, None]
