"""The multitask decoder-only LM: vocabulary, model, task data, training, checkpoints."""
