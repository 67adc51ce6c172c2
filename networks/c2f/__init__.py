"""Networks of the C2F diffusion inpainter (seed 000): the linear-attention U-Net, the LCG category
embedding and the guidance combiner between stages."""
