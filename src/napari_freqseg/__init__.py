"""napari-freqseg: semi-supervised 3D segmentation that holds up across centres."""

__version__ = "0.1.0"
