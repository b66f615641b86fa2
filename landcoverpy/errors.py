"""Exception types. Every message says what is wrong and how to fix it."""


class LandcoverError(Exception):
    """Base class of every error landcoverpy raises on purpose."""


class ConfigurationError(LandcoverError):
    """A setting or environment variable is missing or malformed."""


class ServiceUnavailableError(LandcoverError):
    """A configured server (S3, MongoDB, Dask scheduler) cannot be reached."""


class AuthenticationError(LandcoverError):
    """A configured server rejected the credentials."""


class StorageError(LandcoverError):
    """An object store operation failed (missing object, unwritable directory...)."""


class NoSpaceError(StorageError):
    """A disk, a bucket or a quota is full: every later write would fail too, so the run stops."""


class InvalidKeyError(StorageError):
    """An object key or key part built from user data is unsafe."""


class InputValidationError(LandcoverError):
    """A user input file (dataset, seasons, labels) is invalid."""


class ProviderError(LandcoverError):
    """A data provider failed to search or fetch products."""


class TransientError(ProviderError):
    """A remote call failed in a way that may pass if tried again (dropped connection, timeout,
    HTTP 429 or 5xx); :func:`landcoverpy.faults.call_source` retries it."""


class ProviderUnavailableError(TransientError, ServiceUnavailableError):
    """A data provider's server cannot be reached (retried, then reported as unreachable)."""


class RasterError(LandcoverError):
    """Rasters are inconsistent (grids, CRS, shapes) or unreadable."""


class ModelError(LandcoverError):
    """A model is missing or does not fit the features given to it."""


class CatalogError(LandcoverError):
    """A catalog record cannot be read as this version of landcoverpy knows it."""


class TaskError(LandcoverError):
    """A task failed on a worker for a reason that is not ours to name (a bug, most likely): one
    line for the user; ``detail`` holds the worker's traceback, logged with ``-v``."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message, detail)
        self.message, self.detail = message, detail

    def __str__(self) -> str:
        return self.message


# Failures after which no other tile or block can succeed: a stage stops instead of recording them
# per tile and carrying on.
RUN_STOPPERS: tuple[type[LandcoverError], ...] = (ServiceUnavailableError, NoSpaceError)
