"""The decision after the scores: the policy (costs, confidence, fallback) and its graph nodes."""
