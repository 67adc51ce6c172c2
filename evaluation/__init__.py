"""Evaluation of inpainters: offline metric weights, FID/LPIPS/PSNR/SSIM metrics, report writers."""
