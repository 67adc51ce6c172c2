"""Evaluation of inpainters and ripple removal: offline metric weights, FID/LPIPS/PSNR/SSIM metrics, per-image
rows (gathered over ranks, CSV / JSON), report writers, grids and tables for W&B / TensorBoard."""
