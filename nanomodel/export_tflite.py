"""Export a :class:`ShippedModel` to TFLite with ``flatbuffers`` and the LiteRT schema
module (``schema_py_generated`` inside ``ai-edge-litert``) — no TensorFlow.

Same computation as the ONNX graph: ``DEQUANTIZE`` of the int8 body weights
(constant input, so the interpreter dequantizes once at prepare time),
``FULLY_CONNECTED`` with fused ReLU, ``SOFTMAX``, and the anomaly score as a
``FULLY_CONNECTED`` against the label mask followed by ``RESHAPE`` to ``[B]``.
The batch dimension is dynamic (``shape_signature`` -1); the runtime resizes.

Weight buffers are written 16-byte aligned, body first; :func:`tensor_ranges`
reads back the exact byte range of every constant tensor's data.
"""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np

from contract.bundle import TensorInfo
from nanomodel.network import (
    ANOMALY_MASK,
    EMBED_B,
    EMBED_W,
    HEAD_B,
    HEAD_W,
    HIDDEN_B,
    HIDDEN_W,
    ShippedModel,
)


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("TFLite export needs the 'ai-edge-litert' package (extra 'litert'): "
                           f"{exc}") from None
    return schema_py_generated


_DTYPES = {"float32": 0, "int32": 2, "int8": 9}
_ALIGN = 16


def _aligned_buffer(s: Any, data: bytes) -> Any:
    """A ``BufferT`` whose data vector starts on a 16-byte boundary."""

    class AlignedBuffer(s.BufferT):
        def Pack(self, builder: flatbuffers.Builder) -> int:
            builder.StartVector(1, len(data), _ALIGN)
            builder.head = builder.head - len(data)
            builder.Bytes[builder.head : builder.head + len(data)] = data
            builder.vectorNumElems = len(data)
            vec = builder.EndVector()
            s.BufferStart(builder)
            s.BufferAddData(builder, vec)
            return int(s.BufferEnd(builder))

    return AlignedBuffer()


def export_tflite(model: ShippedModel) -> bytes:
    s = _schema()
    width, k = model.input_width, model.num_labels
    h1, h2 = model.body.b1.size, model.body.b2.size
    buffers: list[Any] = [s.BufferT()]  # buffer 0 must be empty
    tensors: list[Any] = []
    index: dict[str, int] = {}

    def tensor(name: str, shape: list[int], dtype: str, data: np.ndarray | None = None,
               batch: bool = False, scale: float | None = None) -> int:
        t = s.TensorT()
        t.name, t.type, t.shape = name, _DTYPES[dtype], shape
        if batch:
            t.shapeSignature = [-1, *shape[1:]]
        if data is not None:
            buffers.append(_aligned_buffer(s, np.ascontiguousarray(data).tobytes()))
            t.buffer = len(buffers) - 1
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = [scale], [0], 0
            t.quantization = q
        tensors.append(t)
        index[name] = len(tensors) - 1
        return index[name]

    b = model.body
    # Constants first, body before head: buffer order is file order.
    tensor(EMBED_W, [h1, width], "int8", b.w1_q, scale=float(b.w1_scale))
    tensor(EMBED_B, [h1], "float32", b.b1)
    tensor(HIDDEN_W, [h2, h1], "int8", b.w2_q, scale=float(b.w2_scale))
    tensor(HIDDEN_B, [h2], "float32", b.b2)
    tensor(HEAD_W, [k, h2], "float32", model.head_w)
    tensor(HEAD_B, [k], "float32", model.head_b)
    tensor(ANOMALY_MASK, [1, k], "float32", model.anomaly_mask)
    tensor("anomaly.shape", [1], "int32", np.array([-1], dtype=np.int32))
    inp = tensor("features", [1, width], "float32", batch=True)
    for name, shape in [("w1", [h1, width]), ("w2", [h2, h1])]:
        tensor(name, shape, "float32")
    for name, shape in [("h1", [1, h1]), ("h2", [1, h2]), ("logits", [1, k]),
                        ("probabilities", [1, k]), ("anomaly_col", [1, 1])]:
        tensor(name, shape, "float32", batch=True)
    out_anomaly = tensor("anomaly", [1], "float32")
    tensors[out_anomaly].shapeSignature = [-1]

    codes: list[Any] = []
    code_index: dict[int, int] = {}

    def opcode(builtin: int, version: int) -> int:
        if builtin not in code_index:
            c = s.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, builtin, version
            codes.append(c)
            code_index[builtin] = len(codes) - 1
        return code_index[builtin]

    ops: list[Any] = []
    op_codes = s.BuiltinOperator
    option_types = s.BuiltinOptions

    def fully_connected(inputs: list[str], output: str, relu: bool) -> None:
        opts = s.FullyConnectedOptionsT()
        opts.fusedActivationFunction = s.ActivationFunctionType.RELU if relu else 0
        add(op_codes.FULLY_CONNECTED, 1, inputs, output,
            option_types.FullyConnectedOptions, opts)

    def add(code: int, version: int, inputs: list[str], output: str, opt_type: int = 0,
            opts: Any = None) -> None:
        op = s.OperatorT()
        op.opcodeIndex = opcode(code, version)
        op.inputs = [index[n] if n else -1 for n in inputs]
        op.outputs = [index[output]]
        op.builtinOptionsType, op.builtinOptions = opt_type, opts
        ops.append(op)

    add(op_codes.DEQUANTIZE, 2, [EMBED_W], "w1", option_types.DequantizeOptions,
        s.DequantizeOptionsT())
    fully_connected(["features", "w1", EMBED_B], "h1", relu=True)
    add(op_codes.DEQUANTIZE, 2, [HIDDEN_W], "w2", option_types.DequantizeOptions,
        s.DequantizeOptionsT())
    fully_connected(["h1", "w2", HIDDEN_B], "h2", relu=True)
    fully_connected(["h2", HEAD_W, HEAD_B], "logits", relu=False)
    softmax_opts = s.SoftmaxOptionsT()
    softmax_opts.beta = 1.0
    add(op_codes.SOFTMAX, 1, ["logits"], "probabilities", option_types.SoftmaxOptions,
        softmax_opts)
    fully_connected(["probabilities", ANOMALY_MASK, ""], "anomaly_col", relu=False)
    reshape_opts = s.ReshapeOptionsT()
    reshape_opts.newShape = [-1]
    add(op_codes.RESHAPE, 1, ["anomaly_col", "anomaly.shape"], "anomaly",
        option_types.ReshapeOptions, reshape_opts)
    del inp

    graph = s.SubGraphT()
    graph.tensors, graph.operators, graph.name = tensors, ops, "main"
    graph.inputs = [index["features"]]
    graph.outputs = [index["probabilities"], index["anomaly"]]
    root = s.ModelT()
    root.version, root.operatorCodes, root.subgraphs = 3, codes, [graph]
    root.buffers, root.description = buffers, "nanomodel"
    builder = flatbuffers.Builder(1024 * 1024)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tensor_ranges(data: bytes) -> list[TensorInfo]:
    """Byte range of every constant tensor's data inside a ``.tflite`` file."""
    s = _schema()
    names = {0: "float32", 2: "int32", 9: "int8"}
    model = s.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    infos: list[TensorInfo] = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        if t.Buffer() == 0:
            continue
        buf = model.Buffers(t.Buffer())
        field = flatbuffers.number_types.UOffsetTFlags.py_type(buf._tab.Offset(4))
        if field == 0:
            continue
        start = buf._tab.Vector(field)
        length = buf._tab.VectorLen(field)
        infos.append(TensorInfo(name=t.Name().decode(), dtype=names.get(t.Type(), str(t.Type())),
                                shape=[int(d) for d in t.ShapeAsNumpy()], offset=int(start),
                                length=int(length)))
    return infos
