"""verl with a curriculum: `one_launch` (verl 0.9: dataset and replay-buffer hooks), `sampler` (verl 0.5-0.7.1),
`reward` (reward functions that write feedback, any verl) and `checkpoint` (re-scoring from verl's checkpoints).
"""
