"""TAP-Vid evaluation, computed exactly as TapNet computes it (plus OmniMotion's TC)."""
