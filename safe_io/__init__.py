"""Output paths built from data: one sanitiser every writer uses (no project imports: any layer may import it)."""
from safe_io.paths import MAX_COMPONENT_BYTES, UnsafeNameError, check_name, output_path

__all__ = ["MAX_COMPONENT_BYTES", "UnsafeNameError", "check_name", "output_path"]
