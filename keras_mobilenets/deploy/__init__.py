"""Shipping a model: TFLite conversion with its parity report, SavedModel export for TF Serving, and the
Predictor that runs any of the three formats."""
