"""Fine-tuning: the two-stage recipe and its fit, evaluation, and the pictures a run writes."""
