"""Bad models -> ModelError naming the file, the node or input at fault, and what to do."""

from __future__ import annotations

import builtins
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_npu.errors import ModelError
from pytest_npu.ir import from_onnx

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
sys.path.insert(0, str(CORPUS))
import make_corpus  # noqa: E402


def _error(model, **kwargs) -> str:
    with pytest.raises(ModelError) as info:
        from_onnx(model, **kwargs)
    return str(info.value)


def test_corpus_is_what_the_script_builds():
    for name, data in make_corpus.build().items():
        assert (CORPUS / name).read_bytes() == data, f"{name} is stale: run fixtures/models/make_corpus.py"


@pytest.mark.parametrize("name", ["truncated.onnx", "text.onnx", "tensor_proto.onnx"])
def test_unreadable_files_are_named(name):
    msg = _error(CORPUS / name)
    assert name in msg and "not a readable ONNX protobuf" in msg and "re-export" in msg


def test_empty_file():
    msg = _error(CORPUS / "empty.onnx")
    assert "empty.onnx" in msg and "empty" in msg


def test_garbage_bytes_and_missing_path(tmp_path):
    assert "<bytes>" in _error(b"\x08\x07\xff\xff\xff garbage")
    assert "no such ONNX file" in _error(tmp_path / "nope.onnx")
    assert "pass a path" in _error(42)


def test_all_unknown_ops_listed_together():
    msg = _error(CORPUS / "unknown_ops.onnx")
    assert "unknown_ops.onnx" in msg and "3 node(s)" in msg
    for part in ("'topk_head' (TopK)", "'mix' (Einsum)", "'custom_norm' (com.example::FancyNorm)"):
        assert part in msg
    assert "'conv1'" not in msg


def test_missing_initializer_names_node_and_input():
    msg = _error(CORPUS / "missing_initializer.onnx")
    assert "'conv1'" in msg and "'w'" in msg and "missing initializer" in msg


def test_dynamic_dims_need_bindings():
    msg = _error(CORPUS / "dynamic_dims.onnx")
    assert "input 'x'" in msg and "'height'" in msg and "bindings={'height'" in msg
    graph = from_onnx(CORPUS / "dynamic_dims.onnx", bindings={"height": 7, "width": 6})
    assert graph.tensors["x"].shape == (1, 7, 6, 2)
    assert graph.tensors["y"].shape == (1, 1, 1, 3)


def test_batch_binding_and_bad_batch():
    assert "batch=0" in _error(CORPUS / "dynamic_dims.onnx", batch=0, bindings={"height": 5, "width": 5})


def test_cycle_names_only_its_members():
    msg = _error(CORPUS / "cycle.onnx")
    assert "cycle" in msg and "'add_a'" in msg and "'relu_b'" in msg and "'out'" not in msg


@pytest.mark.parametrize("name,location", [("external_escape.onnx", "../outside_weights.bin"),
                                           ("external_absolute.onnx", "/etc/hostname")])
def test_external_data_outside_folder_is_never_read(tmp_path, monkeypatch, name, location):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(CORPUS / name, folder / name)
    (tmp_path / "outside_weights.bin").write_bytes(b"\0" * 216)     # exists, so only the check stops it
    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    msg = _error(folder / name)
    assert f"'{location}'" in msg and "initializer 'w'" in msg and "outside the model's folder" in msg
    assert not [p for p in opened if "outside_weights" in p or p == "/etc/hostname"]


def test_external_data_inside_folder_loads(tmp_path):
    graph = from_onnx(CORPUS / "external_ok.onnx")
    ref = make_corpus.tiny_cnn()
    w = numpy_helper.to_array(ref.graph.initializer[0])
    np.testing.assert_array_equal(graph.tensors["w"].data, w.transpose(2, 3, 1, 0))
    shutil.copy(CORPUS / "external_ok.onnx", tmp_path / "m.onnx")      # data file left behind
    assert "missing next to the model" in _error(tmp_path / "m.onnx")
    assert "pass the model's path" in _error((CORPUS / "external_ok.onnx").read_bytes())


def test_external_data_truncated(tmp_path):
    shutil.copy(CORPUS / "external_ok.onnx", tmp_path / "external_ok.onnx")
    (tmp_path / "external_ok.weights").write_bytes(b"\0" * 10)
    assert "truncated" in _error(tmp_path / "external_ok.onnx")


@pytest.mark.parametrize(("name", "node", "op"), [("resize_linear.onnx", "upsample_linear", "Resize"),
                                                   ("pad_reflect.onnx", "reflect_pad", "Pad")])
def test_modes_without_an_npu_form_run_on_the_host(name, node, op):
    """Linear Resize and reflect padding have no NPU form: the host runs the ONNX operator."""
    graph = from_onnx(CORPUS / name)
    assert [(n.name, n.attrs["onnx_op"]) for n in graph.nodes if n.op == "float_op"] == [(node, op)]


def _one(node, inputs, inits=(), out_shape=None):
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


def test_unsupported_attribute_values_name_node():
    w = np.ones((2, 2, 3, 3, 3), np.float32)
    msg = _error(_one(helper.make_node("Conv", ["x", "w"], ["y"], name="conv3d"), [("x", [1, 2, 5, 5, 5])],
                      [("w", w)], [1, 2, 3, 3, 3]))
    assert "'conv3d'" in msg and "3-D convolution" in msg
    msg = _error(_one(helper.make_node("Conv", ["x", "w"], ["y"], name="dyn_w"),
                      [("x", [1, 2, 5, 5]), ("w", [3, 2, 3, 3])], out_shape=[1, 3, 3, 3]))
    assert "'dyn_w'" in msg and "not a constant" in msg
    # a nearest Resize that is no pixel repeat is the ONNX operator on the host
    graph = from_onnx(_one(helper.make_node("Resize", ["x", "", "s"], ["y"], name="half_up",
                                            coordinate_transformation_mode="asymmetric", nearest_mode="ceil"),
                           [("x", [1, 2, 4, 4])], [("s", np.array([1, 1, 2, 2], np.float32))],
                           out_shape=[1, 2, 8, 8]))
    assert [n.name for n in graph.nodes if n.op == "float_op"] == ["half_up"]


def test_gather_on_activations_runs_on_the_host_with_its_indices():
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=1)
    graph = from_onnx(_one(node, [("x", [1, 4])], [("i", np.array([0, 2], np.int64))], [1, 2]))
    (pick,) = graph.nodes
    assert pick.op == "float_op" and pick.attrs["onnx_consts"] == [[1, "int64", [2], [0, 2]]]


def test_dynamic_quantisation_scale_is_refused():
    nodes = [helper.make_node("ReduceMax", ["x"], ["m"], name="absmax", keepdims=0)]
    q = helper.make_node("QuantizeLinear", ["x", "m"], ["y"], name="q_dyn")
    graph = helper.make_graph(nodes + [q], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    assert "'absmax' (ReduceMax)" in _error(m)
    graph.node[0].op_type = "Abs"            # a supported-when-folded op that cannot fold here
    del graph.node[0].attribute[:]
    msg = _error(m)
    assert "'absmax'" in msg


def test_checker_and_shape_errors_are_model_errors():
    node = helper.make_node("Add", ["x", "c"], ["y"], name="bad_add")
    m = _one(node, [("x", [1, 4])], [("c", np.ones((3,), np.float32))], [1, 4])
    msg = _error(m)
    assert "<ModelProto>" in msg and "shape inference failed" in msg
    m.graph.node[0].op_type = ""
    assert "<ModelProto>" in _error(m)


def test_model_proto_input_is_not_modified():
    m = make_corpus.tiny_cnn()
    before = m.SerializeToString()
    from_onnx(m)
    assert m.SerializeToString() == before
    assert isinstance(from_onnx(before).nodes, list)
    assert onnx.load_from_string(before) is not None


def test_graph_self_check_reports_importer_bugs():
    from pytest_npu.ir import Graph, Node, Tensor
    from pytest_npu.ir.onnx_import import check_graph

    graph = Graph("g", {"x": Tensor("x", (1, 4), "float32"), "y": Tensor("y", (1, 4), "float32")},
                  [Node("n1", "softmax", ["x"], ["y"], {}), Node("n2", "warp", ["y"], ["z"], {})],
                  ["x"], ["y", "z"], source="m.onnx")
    with pytest.raises(ModelError) as info:
        check_graph(graph)
    msg = str(info.value)
    assert "m.onnx" in msg and "lacks attrs ['axis']" in msg and "unknown op 'warp'" in msg
    assert "'z' is never produced" in msg


def test_int4_quantisation_is_refused_by_name():
    w = numpy_helper.from_array(np.zeros((2, 2), np.int8), "w")
    w.data_type = TensorProto.INT4
    w.raw_data = bytes(2)
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["wf"], name="dq_int4"),
             helper.make_node("MatMul", ["x", "wf"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [w, numpy_helper.from_array(np.float32(0.1), "s")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    msg = _error(m)
    assert "'dq_int4'" in msg and "int4 quantisation is not supported" in msg
