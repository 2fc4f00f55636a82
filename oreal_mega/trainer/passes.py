"""The three model passes of an OREAL step over the same packed micro-batches: reference log-probs
(forward only), the token-RM (token weights from its pre-update parameters, then its own loss), and
the policy update with the fused loss. Results live on the last pipeline stage, where they are used."""
import torch

from oreal_mega.kernels import fused_oreal_loss, token_logprobs
from oreal_mega.models.pipeline import MicroBatch, forward_backward
from oreal_mega.objective import (GlobalCounts, ObjectiveConfig, actor_token_coefficients,
                                  token_weights, trm_loss)
from oreal_mega.trainer.batch import packed_responses, pad_to


def sequence_logprobs(chunks, mbs: list[MicroBatch], tp_group) -> list[torch.Tensor]:
    """Forward only: [T] log-probs of each micro-batch's labels (0 where there is none); used for
    the frozen reference and for the rollout-parity probe."""
    def loss_fn(hidden, model, mb):
        with torch.no_grad():
            logp = token_logprobs(hidden, model.lm_head_weight(), mb.fields["labels"], tp_group=tp_group)
        return hidden.new_zeros((), dtype=torch.float32), {"logp": logp}

    with torch.no_grad():
        return [m["logp"] for m in forward_backward(chunks, mbs, loss_fn, forward_only=True)]


def token_rm_step(chunks, mbs: list[MicroBatch], counts: GlobalCounts, cfg: ObjectiveConfig):
    """Forward+backward of the token-RM. Returns per micro-batch the token weights ω [T] computed
    from the logits of this (pre-update) forward, and the RM's loss / accuracy sums."""
    def loss_fn(hidden, model, mb):
        logits = model.value_head(hidden)[: mb.num_real_tokens]
        batch = packed_responses(mb)
        loss = trm_loss(logits, batch, counts.sequences)
        omega = token_weights(logits.detach(), batch, cfg)
        seq_logit = logits.new_zeros(batch.num_sequences).index_add_(
            0, batch.sequence_ids, torch.where(batch.response_mask, logits.detach(), 0.0))
        correct = ((seq_logit > 0) == batch.is_positive).sum()
        return loss, {"weights": pad_to(omega, len(mb.input_ids)), "loss": loss.detach(),
                      "correct": correct, "sequences": batch.num_sequences}

    return forward_backward(chunks, mbs, loss_fn)


def actor_step(chunks, mbs: list[MicroBatch], ref_logps, weights, counts: GlobalCounts,
               cfg: ObjectiveConfig, tp_group, temperature: float = 1.0):
    """Forward+backward of the policy with the fused OREAL loss; per micro-batch diagnostics."""
    def loss_fn(hidden, model, mb):
        i = mb.index
        batch = packed_responses(mb)
        n, length = mb.num_real_tokens, len(mb.input_ids)
        coef_logp, kl_coef = actor_token_coefficients(batch, weights[i][:n], counts, cfg)
        loss, diag = fused_oreal_loss(hidden, model.lm_head_weight(), mb.fields["labels"],
                                      coef_logp=pad_to(coef_logp, length), ref_logp=ref_logps[i],
                                      kl_coef=pad_to(kl_coef, length), kl_type=cfg.kl_type,
                                      temperature=temperature, tp_group=tp_group)
        mask = mb.fields["labels"] != -100
        metrics = {"loss": loss.detach(), "kl_sum": diag.kl[mask].sum(),
                   "entropy_sum": diag.entropy[mask].sum(), "tokens": mask.sum()}
        if "rollout_logp" in mb.fields:  # how far the trainer's policy is from the sampler's
            gap = (diag.logp - mb.fields["rollout_logp"])[mask].abs()
            metrics.update(rollout_gap_sum=gap.sum(), rollout_gap_max=gap.max() if gap.numel() else gap.sum())
        return loss, metrics

    return forward_backward(chunks, mbs, loss_fn)
