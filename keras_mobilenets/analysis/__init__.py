"""Measuring networks: parameters, MACs and peak memory (`profile`), and the papers' published numbers."""
