"""Semi-supervised training engine: data, losses, mean teacher, the three methods. No Qt."""
