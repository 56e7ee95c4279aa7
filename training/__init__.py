"""Training on the stream: spectral-adapter backbones, self-supervised objectives, evaluation protocols."""
