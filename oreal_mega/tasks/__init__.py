"""Tasks shipped with the project: the synthetic math task (data, tokenizer, demo model)."""
