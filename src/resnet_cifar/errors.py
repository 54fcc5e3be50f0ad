"""The project's exceptions. Every failure caused by user input is one of these, so the CLI can print one clear
line instead of a stack trace."""


class ResnetCifarError(Exception):
    """Base class for all errors the CLI reports as a one-line message."""


class DataError(ResnetCifarError):
    """A dataset file or archive is missing, truncated, corrupted or unsafe."""


class DataNotFoundError(DataError):
    """No dataset was found and none could be downloaded."""


class ConfigError(ResnetCifarError):
    """A configuration value or key is invalid."""


class CheckpointError(ResnetCifarError):
    """A checkpoint is missing, truncated, altered or incompatible."""


class OutputError(ResnetCifarError):
    """A file the command would write is one it must not replace (an input, a special file, a file without --force)."""


class ImageError(ResnetCifarError):
    """An image file cannot be read as an image."""


class TrainingError(ResnetCifarError):
    """Training cannot continue (e.g. the loss became NaN or infinite)."""


class Interrupted(Exception):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) stopped training after a checkpoint was written; not an error: the CLI
    exits with 128 + the signal number, as a shell does, and the same command (or --resume) continues."""

    def __init__(self, signum: int, checkpoint):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum
        self.checkpoint = checkpoint
