"""Training from the stream: spectral-adapter backbones, self-supervised objectives, the training loop.

* :mod:`.backbones`: the spectral adapter and the spectral ResNet-50 / ViT-S/B/L bodies
  (:func:`~.backbones.build_backbone`).
* :mod:`.export`: an encoder as safetensors + JSON config, loaded back with one call
  (:func:`~.export.load_encoder`).
* :mod:`.evaluate`: downstream protocols on a label cube (:func:`~.evaluate.evaluate_encoder`).
"""

from spectralearth.training.backbones import BACKBONES, SpectralAdapter, build_backbone
from spectralearth.training.export import export_encoder, load_encoder

__all__ = ["BACKBONES", "SpectralAdapter", "build_backbone", "export_encoder", "load_encoder"]
