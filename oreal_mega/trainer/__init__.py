"""Training-side components: optimizers, the policy / reference / token-RM models, the RL loop."""
