"""Drop Dropout, Identity and no-op Cast nodes (a Cast to the type its input has): at
inference each passes its input through."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult
from onnx_ir.passes.common import IdentityEliminationPass


class DropDropoutPass(InPlacePass):
    """Turn inference-mode Dropout into Identity, then remove Identity nodes.

    A Dropout is kept (and ``notes`` says why) when its mask output is used or
    when it runs in training mode. The names of dropped nodes are in ``dropped``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.dropped: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type == "Cast" and node.domain in ("", "ai.onnx"):
                # a Cast to the type its input has already (GPT-2's Softmax -> Cast(float)):
                # an Identity, so that no layer of its own takes the blame for what follows
                to, x = node.attributes.get("to"), node.inputs[0]
                if to is not None and x is not None and x.type is not None and int(to.value) == x.dtype.value:
                    self._to_identity(graph, node)
                continue
            if node.op_type != "Dropout":
                continue
            if len(node.outputs) > 1 and node.outputs[1].uses():
                self.notes.append(f"Dropout {node.name!r} not dropped: its mask output is used")
                continue
            training = node.inputs[2] if len(node.inputs) > 2 else None
            if training is not None and (training.const_value is None or bool(training.const_value.numpy())):
                self.notes.append(
                    f"Dropout {node.name!r} not dropped: training_mode is not a constant false, so the network's "
                    "outputs (and every range and metric) are random from run to run; export the model in "
                    "inference mode (module.eval() before torch.onnx.export)"
                )
                continue
            self._to_identity(graph, node)
        identities = [n.name for n in graph if n.op_type == "Identity"]
        if any(
            a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for n in graph for a in n.attributes.values()
        ):
            # onnx_ir's pass also rewrites the If/Loop bodies, and raises on an Identity
            # that is a body's output (Silero VAD): the main graph's only, here
            modified = self._drop_main_identities(graph)
        else:
            modified = IdentityEliminationPass()(model).modified
        remaining = {n.name for n in graph if n.op_type == "Identity"}
        self.dropped = [name for name in identities if name not in remaining]
        for name in sorted(remaining):
            self.notes.append(f"Identity/Dropout {name!r} not dropped: its output is one of the network's outputs")
        return PassResult(model, bool(self.dropped) or modified)

    @staticmethod
    def _drop_main_identities(graph: ir.Graph) -> bool:
        """Remove the main graph's Identity nodes whose output is not a graph output
        (its readers, in the graph or in a subgraph, read the input instead)."""
        modified = False
        for node in list(graph):
            if node.op_type != "Identity" or node.domain not in ("", "ai.onnx") or node.inputs[0] is None:
                continue
            if node.outputs[0].is_graph_output():
                continue
            node.outputs[0].replace_all_uses_with(node.inputs[0])
            graph.remove(node, safe=True)
            modified = True
        return modified

    @staticmethod
    def _to_identity(graph: ir.Graph, node: ir.Node) -> None:
        """Replace ``node`` by an Identity of its first input, under its name."""
        identity = ir.Node("", "Identity", [node.inputs[0]], name=node.name)
        graph.insert_before(node, identity)
        old = node.outputs[0]
        new = identity.outputs[0]
        new.name = old.name
        new.shape, new.type = old.shape, old.type
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        graph.remove(node, safe=True)
