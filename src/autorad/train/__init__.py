"""Cross-validated training of AutoRad prompt learners and baselines, with safetensors checkpoints."""
