"""Keep bitsandbytes' 4-bit layers consistent across LoRA loads, swaps and unloads on CPUs with AVX512-BF16.

On such CPUs bitsandbytes repacks each 4-bit weight for its fast CPU kernel on the first inference
forward (`_convert_weight_packed_for_cpu`): the NF4 data gets a new layout and the quant state's
float32 `absmax` becomes a transposed bfloat16 matrix. When peft wraps or reads those layers it calls
`state_dict()`, which runs bitsandbytes' inverse; that inverse restores the data but not a
non-nested `absmax`, so the next forward repacks an already-transposed `absmax` and the base model
writes garbage (issue 8).

The fix keeps the fast path: before any peft operation we put every packed layer back into its
exact original format (data through bitsandbytes' inverse, which is exact for the data, and the
quant state's `absmax`/nesting fields from a copy taken at load time); the next forward repacks.
"""

from __future__ import annotations

from typing import Any

# The quant-state fields that bitsandbytes' packing rewrites and its inverse does not fully restore.
_PACKED_FIELDS = ("absmax", "nested", "offset", "state2", "dtype")


class PackingGuard:
    """Remembers each 4-bit layer's original quant state and restores it on demand."""

    def __init__(self, model: Any) -> None:
        self._originals: dict[int, tuple[Any, dict[str, Any]]] = {}
        for layer in _linear4bit_layers(model):
            state = layer.weight.quant_state
            if getattr(state, "packing_format_for_cpu", False):
                raise RuntimeError("PackingGuard must see the model before its first forward")
            fields = {name: getattr(state, name) for name in _PACKED_FIELDS if hasattr(state, name)}
            self._originals[id(layer)] = (layer, fields)

    def __len__(self) -> int:
        return len(self._originals)

    def unpack(self) -> int:
        """Put every repacked layer back into its original format; returns how many were packed."""
        if not self._originals:  # nothing 4-bit here (an unquantized model): bitsandbytes may be absent
            return 0
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

        restored = 0
        for layer, original in self._originals.values():
            state = layer.weight.quant_state
            if not getattr(state, "packing_format_for_cpu", False):
                continue
            data, state = _convert_weight_packed_for_cpu_inverse(layer.weight.data, state)
            for name, value in original.items():
                setattr(state, name, value)
            if "state2" not in original and hasattr(state, "state2"):
                delattr(state, "state2")
            state.packing_format_for_cpu = False
            layer.weight.data = data
            layer.weight.quant_state = state
            if getattr(layer, "quant_state", None) is not None:
                layer.quant_state = state
            restored += 1
        return restored


def packed_layers(model: Any) -> int:
    """How many 4-bit layers are in the CPU-packed format now (0 where bitsandbytes never packs)."""
    layers = _linear4bit_layers(model)
    return sum(1 for layer in layers if getattr(layer.weight.quant_state, "packing_format_for_cpu", False))


def pack_now(model: Any) -> int:
    """Repack every 4-bit layer exactly as bitsandbytes' first CPU forward would; returns how many."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    count = 0
    for layer in _linear4bit_layers(model):
        state = layer.weight.quant_state
        if getattr(state, "packing_format_for_cpu", False):
            continue
        layer.weight.data, state = _convert_weight_packed_for_cpu(layer.weight.data, state)
        layer.weight.quant_state = state
        count += 1
    return count


def _linear4bit_layers(model: Any) -> list[Any]:
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # no bitsandbytes: nothing is ever packed
        return []
    return [m for m in model.modules() if isinstance(m, Linear4bit) and getattr(m.weight, "quant_state", None)]
