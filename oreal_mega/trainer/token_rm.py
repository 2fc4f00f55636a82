"""The token-level reward model: a copy of the policy whose LM head is a zero-initialised,
bias-free Linear(hidden → 1) giving one logit per position."""
import torch

from oreal_mega.models.builder import OrealGPTModel


class ValueHead(torch.nn.Module):
    def __init__(self, hidden_size: int, dtype: torch.dtype, device: torch.device):
        super().__init__()
        # Zero: σ(0) = ½ makes every ω± start at 0, which is why the actor waits for the RM.
        self.weight = torch.nn.Parameter(torch.zeros(1, hidden_size, dtype=dtype, device=device))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[T, H] → [T] fp32 logits."""
        return (hidden @ self.weight.t()).squeeze(-1).float()


def to_token_rm(chunks: list[OrealGPTModel]) -> list[OrealGPTModel]:
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
                                         next(chunk.parameters()).device)
    return chunks
