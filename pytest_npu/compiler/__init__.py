"""Compiler: ir.Graph -> npu.Program (legalise, tile, plan SRAM, schedule cores, emit).

``compile(model, target, **options) -> CompiledModel``; see :mod:`.api`.
"""

from __future__ import annotations

from .api import OPTIONS, CompiledModel, __version__, clear_cache, compile

__all__ = ["compile", "CompiledModel", "OPTIONS", "clear_cache", "__version__"]
