"""megatron-core models built from HuggingFace configs."""
