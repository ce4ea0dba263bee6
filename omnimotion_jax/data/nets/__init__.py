"""Pretrained networks that compute the paper's inputs inside JAX (RAFT flow, DINO features)."""
