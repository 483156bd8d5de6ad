from ..errors import InputError


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded; the message names the file and the key."""
