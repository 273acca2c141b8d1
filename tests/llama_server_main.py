"""`python tests/llama_server_main.py <llama_cpp.server options>`: llama-cpp-python's server with
llama.cpp's extra buffer types (weight repacking) off.

On CPUs with AMX, llama.cpp's AMX buffer type crashes on the first decode (upstream llama.cpp
issue #20824), and llama_cpp.server has no setting for `use_extra_bufts`: every model it loads
takes its parameters from llama_model_default_params(), so that is where they are turned off.
"""

from __future__ import annotations

import runpy
from typing import Any

import llama_cpp.llama_cpp as native

_defaults = native.llama_model_default_params


def _without_extra_buffers() -> Any:
    params = _defaults()
    params.use_extra_bufts = False
    return params


if __name__ == "__main__":
    native.llama_model_default_params = _without_extra_buffers
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
