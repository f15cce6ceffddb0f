"""Cartoonising images, folders and videos with a checkpoint or an exported model.

toonclip stylize RUN/checkpoints/best.ckpt input=photo.jpg output=toon.png
toonclip stylize model.onnx input=clip.mp4 faces=true
toonclip stylize model.onnx input=photo.jpg region=background [mask=auto|grabcut|seg.onnx]
"""
