"""Few-shot experiments: encoder with cached embeddings, strategies, the runner and its reports."""
