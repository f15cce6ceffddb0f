"""Comparing runs: one page with every run's cartoons of the same faces and their numbers.

toonclip compare experiments/sweeps/arch_backbone [faces=test_images]
"""
