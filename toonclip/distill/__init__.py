"""Distillation: a small student learns a trained teacher's cartoons (`toonclip distill`)."""
