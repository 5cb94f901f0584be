"""Errors that carry a one-line message meant for the user (CLI stderr, napari notification)."""


class FreqsegError(Exception):
    """Base class: its message is shown to the user as is, without a traceback."""


class VolumeReadError(FreqsegError):
    """A path could not be read as a 3D volume."""


class VolumeWriteError(FreqsegError):
    """A volume could not be written (nothing was overwritten)."""


class GeometryMismatchError(FreqsegError):
    """Two volumes that must share a voxel grid do not."""


class CohortError(FreqsegError):
    """A cohort manifest or folder is malformed."""


class ModelError(FreqsegError):
    """A model file is missing, corrupt or does not fit the data."""


class CancelledError(FreqsegError):
    """Long work was cancelled by the user; partial results were discarded."""


class SessionError(FreqsegError):
    """A correction session could not be saved or restored."""


class ResourceError(FreqsegError):
    """The machine lacks what a job needs (a CUDA device, enough memory)."""


class CorrectionError(FreqsegError):
    """Corrected slices or corrected labels that do not fit the scan or the model."""
