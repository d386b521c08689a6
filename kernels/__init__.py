"""Per-segment sums of unit hidden vectors: the one pass over hidden states that scoring needs.

CONTRACT (shared with gaincurate/scoring.py; do not change the signature):

    segment_unit_sums(hidden, segment_ids, num_segments, backend="auto") -> (sums, counts)

    hidden       [B, T, D] bf16 / fp16 / fp32, any batch and token stride, contiguous last dim
    segment_ids  [B, T] integer tensor; -1 = ignore the token, 0..num_segments-1 = its segment
    sums         [B, S, D] float32: sum over tokens t with segment_ids[b, t] == s of h / ||h||
                 (norm clamped below at 1e-12, as torch.nn.functional.normalize does)
    counts       [B, S] int32: number of tokens in each segment

Placeholder until the kernel work lands; see kernels/reference.py etc.
"""
