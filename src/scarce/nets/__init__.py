"""Plain ``nn.Module`` networks; the LightningModules in ``scarce.lightning_modules`` wrap them."""
