"""Spectra, band masks, amplitude mixing (FDA, TP-RAM), L-AAE, F-ASE, reliance maps. Torch only."""
