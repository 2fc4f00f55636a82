"""Evaluation of a policy on problems with gold answers: greedy pass@1, sampled pass@k."""
from oreal_mega.evaluation.evaluate import EvalResult, ProblemResult, evaluate
from oreal_mega.evaluation.metrics import pass_at_k

__all__ = ["EvalResult", "ProblemResult", "evaluate", "pass_at_k"]
