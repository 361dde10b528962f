"""Training: the train state, the objective, the trainer, the input pipeline, the config checks."""
