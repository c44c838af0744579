"""Train: the one training loop, its data streams and its engine (accelerate, LoRA)."""
