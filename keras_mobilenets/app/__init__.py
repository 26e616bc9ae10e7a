"""What the command line runs: resumable run folders (train, evaluate, quantize) and the CLI."""
