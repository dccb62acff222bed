"""scarce: training vision models when real, labelled data is scarce.

A PyTorch Lightning toolkit rebuilding chapter 7 of *Hands-On Computer Vision with TensorFlow 2*:
TFRecord pipelines, rendered training data, FCN-8s segmentation across the realism gap, DANN, VAE, GAN.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
