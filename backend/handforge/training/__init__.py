"""Training shared by every engine: ``loop.train`` (accelerate, EMA, checkpoints, exact resume)."""
