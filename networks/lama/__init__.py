"""The LaMa inpainter (big-lama FFC-ResNet generator), a background filler for ripple removal."""
