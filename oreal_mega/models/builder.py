"""Build this rank's megatron-core `GPTModel` chunks from a HuggingFace architecture."""
import importlib.util
import os

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer import TransformerConfig

from oreal_mega.models.attention import CausalAttention
from oreal_mega.models.hf_config import ModelArch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class OrealGPTModel(GPTModel):
    """A `GPTModel` that can hand back the final hidden states instead of logits, so the LM head
    runs inside the fused log-prob / loss kernels and `[tokens, vocab]` logits never exist."""

    output_hidden_states = False
    head_grad_written = False  # whether lm_head_main_grad() handed out the head's main_grad

    def _postprocess(self, hidden_states, **kwargs):
        if self.output_hidden_states and self.post_process:
            return hidden_states
        return super()._postprocess(hidden_states=hidden_states, **kwargs)

    def lm_head_weight(self) -> torch.Tensor:
        """This rank's vocab shard of the output projection, without the rows that only pad the
        vocab to a multiple of TP (the kernels accept uneven shards)."""
        weight, rows = self._lm_head_rows()
        return weight[:rows]

    def lm_head_main_grad(self) -> torch.Tensor | None:
        """The fp32 gradient rows (megatron DDP's `main_grad`) of `lm_head_weight()`, for the fused
        loss to add the head's gradient into; None when the model is not DDP-wrapped. The weight then
        gets no autograd gradient, so DDP's hook does not fire for it: `head_grad_written` tells
        `pipeline.forward_backward` to mark it ready for the overlapped reduction itself.
        Unlike megatron's gradient-accumulation-fused linears, which also write main_grad directly,
        this leaves the weight's `grad_added_to_main_grad` False: a tied embedding's lookup gradient
        still arrives through autograd, and DDP's hook must add it."""
        weight, rows = self._lm_head_rows()
        main_grad = getattr(weight, "main_grad", None)
        if main_grad is None:
            return None
        self.head_grad_written = True
        return main_grad[:rows]

    def lm_head_parameter(self) -> torch.nn.Parameter:
        """The output projection's parameter: the word embeddings when tied (on the last pipeline
        stage, megatron's copy of them)."""
        if self.share_embeddings_and_output_weights:
            return self.shared_embedding_or_output_weight()
        return self.output_layer.weight

    def _lm_head_rows(self) -> tuple[torch.Tensor, int]:
        weight = self.lm_head_parameter()
        start = parallel_state.get_tensor_model_parallel_rank() * weight.shape[0]
        return weight, max(0, min(weight.shape[0], self.real_vocab_size - start))


# Fusion flag → the module megatron-core 0.16.1 imports for it with the local spec (None: torch alone),
# and what provides that module. Not TE for gradient_accumulation_fusion: the local spec's parallel
# linears raise at build without apex's kernel (tensor_parallel/layers.py, `_grad_accum_fusion_available`);
# the fused RoPE comes only from TE (rope_utils.py: `fused_apply_rotary_pos_emb[_thd]`), never from apex.
_FUSION_KERNELS = {
    "bias_activation_fusion": None,  # SwiGLU through megatron's jit fuser (torch.compile)
    "bias_dropout_fusion": None,
    "apply_rope_fusion": ("transformer_engine", "TransformerEngine"),
    "gradient_accumulation_fusion": ("fused_weight_gradient_mlp_cuda", "apex built with --cuda_ext"),
}
_reported_missing = False


def cuda_fusions() -> dict[str, bool]:
    """Megatron's fusion flags: on with CUDA where the kernels behind them are installed (the unfused
    paths are exact). What is missing is said once, in one line. NOT run on a GPU yet."""
    global _reported_missing
    if not torch.cuda.is_available():
        return dict.fromkeys(_FUSION_KERNELS, False)
    flags = {name: needs is None or importlib.util.find_spec(needs[0]) is not None
             for name, needs in _FUSION_KERNELS.items()}
    missing = [f"{name} (needs {_FUSION_KERNELS[name][0]} from {_FUSION_KERNELS[name][1]})"
               for name, on in flags.items() if not on]
    if missing and not _reported_missing and int(os.environ.get("RANK", "0")) == 0:
        print(f"megatron fusions off, their kernels are not installed: {', '.join(missing)}", flush=True)
        _reported_missing = True
    return flags


def transformer_config(arch: ModelArch, dtype: str = "float32", recompute: bool = False,
                       tp: int | None = None, pp: int | None = None) -> TransformerConfig:
    tp = tp or parallel_state.get_tensor_model_parallel_world_size()
    pp = pp or parallel_state.get_pipeline_model_parallel_world_size()
    torch_dtype = DTYPES[dtype]
    on_cpu = not torch.cuda.is_available()
    return TransformerConfig(
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_attention_heads,
        num_query_groups=arch.num_query_groups,
        kv_channels=arch.kv_channels,
        normalization="RMSNorm",
        layernorm_epsilon=arch.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=arch.qkv_bias,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=parallel_state.get_virtual_pipeline_model_parallel_world_size(),
        pipeline_dtype=torch_dtype,
        params_dtype=torch_dtype,
        bf16=torch_dtype == torch.bfloat16,
        fp16=torch_dtype == torch.float16,
        use_cpu_initialization=on_cpu,
        # Our CausalAttention replaces megatron's softmax and the local spec's norm is torch's, so
        # these two fusions have nothing to fuse; the others follow what is installed (cuda_fusions).
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        **cuda_fusions(),
        # gloo pairs batched send/recv by order, which breaks interleaved PP with one peer.
        batch_p2p_comm=on_cpu is False,
        # Losses arrive globally normalised: megatron must neither average them over micro-batches
        # nor average gradients over data-parallel ranks.
        calculate_per_token_loss=True,
        # train.deterministic (distributed.make_deterministic): the embedding lookup by indexing, whose
        # backward is then sort-based, instead of F.embedding's
        deterministic_mode=torch.are_deterministic_algorithms_enabled(),
        recompute_granularity="full" if recompute else None,
        recompute_method="uniform" if recompute else None,
        recompute_num_layers=1 if recompute else None,
    )


def layer_spec():
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    spec.submodules.self_attention.submodules.core_attention = CausalAttention
    return spec


def build_model(arch: ModelArch, dtype: str = "float32", recompute: bool = False) -> list[OrealGPTModel]:
    """This rank's model chunks: one per virtual pipeline stage (one when VPP is off)."""
    config = transformer_config(arch, dtype, recompute)
    tp = config.tensor_model_parallel_size
    vpp = parallel_state.get_virtual_pipeline_model_parallel_world_size()
    chunks = []
    for vp_stage in range(vpp or 1):
        stage = vp_stage if vpp else None
        model = OrealGPTModel(
            config=config,
            transformer_layer_spec=layer_spec(),
            vocab_size=arch.padded_vocab_size(tp),
            max_sequence_length=arch.max_position_embeddings,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=stage),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=stage),
            share_embeddings_and_output_weights=arch.tie_word_embeddings,
            position_embedding_type="rope",
            rotary_base=arch.rope_theta,
            rope_scaling=arch.rope_scaling_factor is not None,
            rope_scaling_factor=arch.rope_scaling_factor or 8.0,
            vp_stage=stage,
        )
        model.real_vocab_size = arch.vocab_size
        if torch.cuda.is_available():
            model.cuda(torch.cuda.current_device())
        chunks.append(model)
    return chunks
