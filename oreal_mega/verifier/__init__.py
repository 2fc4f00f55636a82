"""Outcome verifier: is the boxed answer of a response mathematically equal to the gold answer?

verify() judges one response in-process; VerifierPool judges batches in worker processes with hard timeouts.
"""
from oreal_mega.verifier.equivalence import answers_equal
from oreal_mega.verifier.extract import extract_answer
from oreal_mega.verifier.pool import VerifierPool
from oreal_mega.verifier.verdict import STATUSES, Verdict, verify

__all__ = ["STATUSES", "Verdict", "VerifierPool", "answers_equal", "extract_answer", "verify"]
