"""Export a :class:`ShippedModel` to ONNX with ``onnx.helper`` (no torch, no TensorFlow).

Graph: ``DequantizeLinear`` for the int8 body weights, ``Gemm`` (+ ``Relu``)
per layer, ``Softmax``; ``anomaly = Reshape(Gemm(probabilities, mask))``.
Initializers are stored as ``raw_data`` in body-then-head order, so body bytes
sit in one stable region of the file; :func:`tensor_ranges` finds the exact
byte range of each initializer's raw data by walking the protobuf wire format.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.bundle import TensorInfo
from nanomodel.network import (
    ANOMALY_MASK,
    EMBED_B,
    EMBED_S,
    EMBED_W,
    HEAD_B,
    HEAD_W,
    HIDDEN_B,
    HIDDEN_S,
    HIDDEN_W,
    ShippedModel,
)

INPUT_NAME = "features"
OUTPUT_NAMES = ["probabilities", "anomaly"]
OPSET = 18
IR_VERSION = 9
_ZERO_POINT = "body.zero_point"
_FLAT_SHAPE = "anomaly.shape"


def export_onnx(model: ShippedModel) -> bytes:
    width, k = model.input_width, model.num_labels
    nodes = [
        helper.make_node("DequantizeLinear", [EMBED_W, EMBED_S, _ZERO_POINT], ["w1"]),
        helper.make_node("Gemm", [INPUT_NAME, "w1", EMBED_B], ["z1"], transB=1),
        helper.make_node("Relu", ["z1"], ["h1"]),
        helper.make_node("DequantizeLinear", [HIDDEN_W, HIDDEN_S, _ZERO_POINT], ["w2"]),
        helper.make_node("Gemm", ["h1", "w2", HIDDEN_B], ["z2"], transB=1),
        helper.make_node("Relu", ["z2"], ["h2"]),
        helper.make_node("Gemm", ["h2", HEAD_W, HEAD_B], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAMES[0]], axis=-1),
        helper.make_node("Gemm", [OUTPUT_NAMES[0], ANOMALY_MASK], ["anomaly_col"], transB=1),
        helper.make_node("Reshape", ["anomaly_col", _FLAT_SHAPE], [OUTPUT_NAMES[1]]),
    ]
    tensors = model.tensors()
    inits = [numpy_helper.from_array(np.asarray(arr, order="C"), name)
             for name, arr in tensors.items()]
    inits.append(numpy_helper.from_array(np.array(0, dtype=np.int8), _ZERO_POINT))
    inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), _FLAT_SHAPE))
    graph = helper.make_graph(
        nodes, "nanomodel", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                           ["batch", width])],
        [helper.make_tensor_value_info(OUTPUT_NAMES[0], TensorProto.FLOAT, ["batch", k]),
         helper.make_tensor_value_info(OUTPUT_NAMES[1], TensorProto.FLOAT, ["batch"])],
        initializer=inits)
    proto = helper.make_model(graph, producer_name="nanomodel", producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString(deterministic=True))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """Top-level fields of a message: (field number, wire type, value start, value end)."""
    out = []
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            _, nxt = _varint(buf, pos)
            out.append((num, wire, pos, nxt))
            pos = nxt
        elif wire == 2:
            length, pos = _varint(buf, pos)
            out.append((num, wire, pos, pos + length))
            pos += length
        elif wire == 1:
            out.append((num, wire, pos, pos + 8))
            pos += 8
        elif wire == 5:
            out.append((num, wire, pos, pos + 4))
            pos += 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} at byte {pos}")
    return out


def tensor_ranges(data: bytes) -> list[TensorInfo]:
    """Byte range of every initializer's ``raw_data`` in a serialized ModelProto
    (ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.name = 8,
    raw_data = 9, dims = 1, data_type = 2)."""
    dtypes: dict[int, str] = {TensorProto.FLOAT: "float32", TensorProto.INT8: "int8",
              TensorProto.INT64: "int64", TensorProto.INT32: "int32"}
    infos: list[TensorInfo] = []
    for num, _, g_start, g_end in _fields(data, 0, len(data)):
        if num != 7:
            continue
        for gnum, _, t_start, t_end in _fields(data, g_start, g_end):
            if gnum != 5:
                continue
            name, raw, dims, dtype = "", (0, 0), [], 0
            for tnum, twire, v_start, v_end in _fields(data, t_start, t_end):
                if tnum == 8:
                    name = data[v_start:v_end].decode()
                elif tnum == 9:
                    raw = (v_start, v_end)
                elif tnum == 1 and twire == 0:
                    dims.append(_varint(data, v_start)[0])
                elif tnum == 1 and twire == 2:  # packed dims
                    p = v_start
                    while p < v_end:
                        d, p = _varint(data, p)
                        dims.append(d)
                elif tnum == 2:
                    dtype = _varint(data, v_start)[0]
            infos.append(TensorInfo(name=name, dtype=dtypes.get(dtype, str(dtype)), shape=dims,
                                    offset=raw[0], length=raw[1] - raw[0]))
    return infos


def read_onnx_tensors(data: bytes) -> dict[str, np.ndarray]:
    """Initializers of an exported model, by name (used to load a base model)."""
    proto = onnx.load_from_string(data)
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
