"""Plain ``nn.Module`` networks; the LightningModules in ``scarce.lightning_modules`` wrap them."""

# The builder function stays in its module: exported here, it would shadow the submodule scarce.nets.fcn8s.
from scarce.nets.fcn8s import FCN8s

__all__ = ["FCN8s"]
