"""Getting a trained generator onto phones and apps: ONNX, CoreML, TFLite, int8/fp16, benchmarks.

    toonclip export ckpt=RUN/checkpoints/best.ckpt format=onnx precision=int8 calib=FACES/ out=m.onnx
    toonclip bench RUN/checkpoints/best.ckpt m.onnx size=256,512 threads=2

Heavy packages (onnx, onnxruntime, coremltools, litert-torch) are imported inside the functions
that need them, so a missing optional extra only breaks the format that uses it.
"""
