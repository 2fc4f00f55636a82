"""The three model passes of an OREAL step over the same packed micro-batches: reference log-probs
(forward only), the token-RM (token weights from its pre-update parameters, then its own loss), and
the policy update with the fused loss. Results live on the last pipeline stage, where they are used."""
import torch

from oreal_mega.kernels import fused_oreal_loss, token_logprobs
from oreal_mega.models.pipeline import MicroBatch, forward_backward
from oreal_mega.objective import (GlobalCounts, ObjectiveConfig, actor_token_coefficients,
                                  correctness_probability, error_localisation, reference_logprob_feature,
                                  sequence_mean_logit, token_weights, trm_loss)
from oreal_mega.trainer.batch import packed_responses, pad_to


def sequence_logprobs(chunks, mbs: list[MicroBatch], tp_group, temperature: float = 1.0) -> list[torch.Tensor]:
    """Forward only: [T] log-probs of each micro-batch's labels (0 where there is none) under
    softmax(logits / temperature); used for the frozen reference (at the sampling temperature, as the
    actor loss) and for the rollout-parity probe (at 1, as vLLM's prompt log-probs)."""
    def loss_fn(hidden, model, mb):
        with torch.no_grad():
            logp = token_logprobs(hidden, model.lm_head_weight(), mb.fields["labels"], temperature=temperature,
                                  tp_group=tp_group, num_labelled=mb.num_labelled)
        return hidden.new_zeros((), dtype=torch.float32), {"logp": logp}

    with torch.no_grad():
        return [m["logp"] for m in forward_backward(chunks, mbs, loss_fn, forward_only=True)]


def token_rm_step(chunks, mbs: list[MicroBatch], ref_logps, counts: GlobalCounts, cfg: ObjectiveConfig):
    """Forward+backward of the token-RM. Returns per micro-batch the token weights ω [T] computed
    from the logits of this (pre-update) forward, the RM's loss / accuracy sums, its sequence-level
    logits (for pair accuracy) and how well its q drops at the task oracle's first errors.
    `ref_logps`: the reference pass's log-probs, the RM's second input when cfg.trm_input asks for it."""
    def loss_fn(hidden, model, mb):
        batch = packed_responses(mb)
        n = mb.num_real_tokens
        feature = (reference_logprob_feature(ref_logps[mb.index][:n], batch)
                   if cfg.trm_input == "hidden+reference_logprob" else None)
        logits = model.value_head(hidden[:n], feature)
        loss = trm_loss(logits, batch, counts.sequences)
        first_error = mb.sequence_fields["first_error"]
        omega = token_weights(logits.detach(), batch, cfg, first_error=first_error)
        seq_logit = sequence_mean_logit(logits.detach(), batch)
        correct = ((seq_logit > 0) == batch.is_positive).sum()
        auc_sum, measured = error_localisation(correctness_probability(logits.detach(), batch), batch, first_error)
        return loss, {"weights": pad_to(omega, len(mb.input_ids)), "loss": loss.detach(), "correct": correct,
                      "sequences": batch.num_sequences, "sequence_logit": seq_logit,
                      "index": mb.sequence_fields["index"], "error_auc_sum": auc_sum, "error_responses": measured}

    return forward_backward(chunks, mbs, loss_fn)


def actor_step(chunks, mbs: list[MicroBatch], ref_logps, weights, counts: GlobalCounts,
               cfg: ObjectiveConfig, tp_group, temperature: float = 1.0):
    """Forward+backward of the policy with the fused OREAL loss; per micro-batch diagnostics.
    `weights`: ω per micro-batch from the token-RM, or None for ω± = 1 (built on the batch's device).
    The rollout log-prob gap is reported at temperature 1 only: vLLM's sampled-token log-probs are
    untempered, the loss's are tempered. With it, the k3 estimate of KL(engine ‖ trainer) on the sampled
    tokens, exp(Δ) − 1 − Δ with Δ = trainer − engine log-prob (≥ 0 per token); the tokens were drawn with
    top-p / top-k, not from the engine's full distribution, so it is an estimate, not an unbiased one."""
    def loss_fn(hidden, model, mb):
        i = mb.index
        batch = packed_responses(mb)
        n, length = mb.num_real_tokens, len(mb.input_ids)
        omega = token_weights(None, batch, cfg) if weights is None else weights[i][:n]
        coef_logp, kl_coef = actor_token_coefficients(batch, omega, counts, cfg)
        loss, diag = fused_oreal_loss(hidden, model.lm_head_weight(), mb.fields["labels"],
                                      coef_logp=pad_to(coef_logp, length), ref_logp=ref_logps[i],
                                      kl_coef=pad_to(kl_coef, length), kl_type=cfg.kl_type,
                                      temperature=temperature, tp_group=tp_group,
                                      weight_grad_into=model.lm_head_main_grad(), num_labelled=mb.num_labelled)
        mask = mb.fields["labels"] != -100  # masked sums, not boolean indexing: no host sync
        metrics = {"loss": loss.detach(), "kl_sum": torch.where(mask, diag.kl, 0.0).sum(),
                   "entropy_sum": torch.where(mask, diag.entropy, 0.0).sum(), "tokens": mask.sum()}
        if "rollout_logp" in mb.fields and temperature == 1.0:  # how far the trainer is from the sampler
            delta = torch.where(mask, diag.logp - mb.fields["rollout_logp"], 0.0)
            metrics.update(rollout_gap_sum=delta.abs().sum(), rollout_gap_max=delta.abs().max(),
                           rollout_k3_sum=(torch.expm1(delta) - delta).sum())  # expm1: exact for small Δ
        return loss, metrics

    return forward_backward(chunks, mbs, loss_fn)
