"""Errors of a training run."""


class TrainingError(RuntimeError):
    """A run that had to stop: a non-finite loss, or a checkpoint that could not be written.
    The message names the step and the last good checkpoint."""
