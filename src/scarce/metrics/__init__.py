"""torchmetrics-based metrics: segmentation (mIoU with ignore index) and generative (FID / KID / IS features)."""
