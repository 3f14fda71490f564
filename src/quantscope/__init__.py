"""quantscope."""
