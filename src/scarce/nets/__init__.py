"""Plain ``nn.Module`` networks; the LightningModules in ``scarce.lightning_modules`` wrap them."""

from scarce.nets.fcn8s import FCN8s, fcn8s

__all__ = ["FCN8s", "fcn8s"]
