"""The token-level reward model: a copy of the policy whose LM head is a zero-initialised,
bias-free Linear(hidden → 1) giving one logit per position; with objective.trm_input =
'hidden+reference_logprob' the head also holds the weight a of the reference log-prob feature."""
import torch

from oreal_mega.models.builder import OrealGPTModel


class ValueHead(torch.nn.Module):
    def __init__(self, hidden_size: int, dtype: torch.dtype, device: torch.device, reference_feature: bool):
        super().__init__()
        # Zero: σ(0) = ½ makes every ω± start at 0, which is why the actor waits for the RM.
        self.weight = torch.nn.Parameter(torch.zeros(1, hidden_size, dtype=dtype, device=device))
        # 1, not 0: one scalar moves by about the learning rate per Adam step, so from 0 it would take
        # hundreds of steps to matter; from 1 the RM starts as the reference's own surprise.
        self.reference_weight = (torch.nn.Parameter(torch.ones(1, dtype=dtype, device=device))
                                 if reference_feature else None)

    def forward(self, hidden: torch.Tensor, reference_feature: torch.Tensor | None = None) -> torch.Tensor:
        """[T, H] (and the [T] reference feature when the head has its weight) → [T] fp32 logits."""
        logits = (hidden @ self.weight.t()).squeeze(-1).float()
        if self.reference_weight is None:
            return logits
        return logits + self.reference_weight.float() * reference_feature


def to_token_rm(chunks: list[OrealGPTModel], reference_feature: bool = False) -> list[OrealGPTModel]:
    """Turn freshly built (and loaded) policy chunks into the token-RM, before DDP wrapping."""
    for chunk in chunks:
        # The RM's head is not the embedding: stop megatron from tying or all-reducing them.
        chunk.share_embeddings_and_output_weights = False
        if chunk.post_process:
            # replicated over TP (hidden states are), unlike the vocab-parallel LM head it replaces
            chunk.output_layer = None
            # on the chunk's device: the model is already there, and megatron's DDP and optimizer
            # take the parameters as they find them
            chunk.value_head = ValueHead(chunk.config.hidden_size, chunk.config.params_dtype,
                                         next(chunk.parameters()).device, reference_feature)
    return chunks
