"""Errors that mean "the input is wrong", not "the code is wrong": the CLI prints them in one line, exit 2."""


class BenchError(Exception):
    """Base class: a one-line message that names the file and the key or value at fault."""


class ConfigError(BenchError):
    """A config/ablation file is malformed, has unknown keys, wrong types or out-of-range values."""


class DataError(BenchError):
    """A data source is missing, empty or unreadable."""


class CheckpointError(BenchError):
    """A checkpoint is missing, truncated, tampered with, or of another architecture."""


class TrainingDiverged(BenchError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
