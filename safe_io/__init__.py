"""Untrusted input made safe: output paths built from data (one sanitiser every writer uses) and image decoding
(``safe_io.image_decoding``). No project imports: any layer may import it."""
from safe_io.paths import MAX_COMPONENT_BYTES, UnsafeNameError, check_name, output_path

__all__ = ["MAX_COMPONENT_BYTES", "UnsafeNameError", "check_name", "output_path"]
