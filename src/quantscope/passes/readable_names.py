"""Name PyTorch-exported nodes by their module path, as MATLAB shows layer names.

PyTorch's TorchScript exporter names a node by its module scope and operator,
``/features/features.0/features.0.0/Conv``; the dynamo exporter writes generated
names (``node_Conv_330``) and keeps the scope in the node's metadata
(``pkg.torch.onnx.name_scopes``). Both read as the module path, ``features.0.0``:
the scope's parts, where a part that extends the one before it (``blocks`` then
``blocks.0``, a Sequential's child) replaces it, joined with dots. Where several
nodes share a module path, each is ``path/<last part of the original name>``
(``blocks.0.se/Mul``). A node with no module (``/Flatten``) keeps its last part.
Other exporters' names are kept as they are. ``renamed`` maps each new name to
the ONNX node name it replaces.
"""

from __future__ import annotations

import ast

import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult


def _join(parts: list[str]) -> str:
    segments: list[str] = []
    for part in parts:
        if not part:
            continue
        if segments and part.startswith(segments[-1] + "."):
            segments[-1] = part
        else:
            segments.append(part)
    return ".".join(segments)


def _module_and_leaf(node: ir.Node) -> tuple[str, str] | None:
    """(module path, last part) of a PyTorch-exported node, or None for another exporter."""
    scopes = node.metadata_props.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            parts = [str(p) for p in ast.literal_eval(scopes)]
        except (ValueError, SyntaxError):
            return None
        if not parts:
            return None
        return _join(parts[:-1]), parts[-1]
    name = node.name or ""
    if name.startswith("/") and name.count("/") >= 1 and " " not in name:
        parts = name.split("/")[1:]
        return _join(parts[:-1]), parts[-1]
    return None


class ReadableNamesPass(InPlacePass):
    """Rename PyTorch-exported nodes to their module paths (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.renamed: dict[str, str] = {}

    def call(self, model: ir.Model) -> PassResult:
        nodes = list(model.graph)
        found = {id(node): _module_and_leaf(node) for node in nodes}
        counts: dict[str, int] = {}
        for hit in found.values():
            if hit is not None and hit[0]:
                counts[hit[0]] = counts.get(hit[0], 0) + 1
        taken = {node.name for node in nodes if found[id(node)] is None}
        for node in nodes:
            hit = found[id(node)]
            if hit is None:
                continue
            module, leaf = hit
            if not module:
                new = leaf
            elif counts[module] == 1:
                new = module
            else:
                new = f"{module}/{leaf}"
            base, k = new, 1
            while new in taken:
                k += 1
                new = f"{base}_{k}"
            taken.add(new)
            if new != node.name:
                self.renamed[new] = node.name
                node.name = new
        return PassResult(model, bool(self.renamed))
