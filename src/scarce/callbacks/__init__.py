"""Lightning callbacks that write figures (grids, overlays, embeddings, latent walks) into the run folder."""
