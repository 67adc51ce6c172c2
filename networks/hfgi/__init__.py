"""HFGI editing (seed 004): StyleGAN2 with pure-PyTorch ops, the e4e encoder, HFGI's consultation
encoder and ADA, ArcFace, InterfaceGAN editing, the inference pipeline and the official file formats."""
