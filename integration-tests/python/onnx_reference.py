"""ONNX Runtime in Python on a graph, for a KServe v2 inference request read on stdin:
prints {"outputs": [{"name", "shape", "data"}]} with every output of the graph, the data
flat in row-major order. The reference the tensor kind's answers are checked against."""

import json
import sys

import numpy as np
import onnxruntime

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
          "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}

request = json.load(sys.stdin)
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
feeds = {
    tensor["name"]: np.asarray(tensor["data"], dtype=DTYPES[tensor["datatype"]]).reshape(tensor["shape"])
    for tensor in request["inputs"]
}
names = [output.name for output in session.get_outputs()]
values = session.run(names, feeds)
print(json.dumps({"outputs": [
    {"name": name, "shape": list(value.shape), "data": value.reshape(-1).tolist()}
    for name, value in zip(names, values)
]}))
