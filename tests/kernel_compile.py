"""Compile the Triton kernels (the segment sums', and the rotary embedding's) for CUDA sm_<arch> on any machine and
report their resources (test-only).

Triton ships ptxas and cuobjdump, so this needs no GPU: tests/kernels/test_kernel_triton.py runs it in a
child process without TRITON_INTERPRET, as the check that the code the interpreter runs also passes the
real compiler and that the launch configs do not spill registers.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import torch
import triton
from triton import knobs

from gaincurate.kernels import triton_impl
from gaincurate.kernels.launch import NORM_EPS, LaunchConfig, launch_config

_POINTER_TYPES = {
    torch.bfloat16: "*bf16",
    torch.float16: "*fp16",
    torch.float32: "*fp32",
    torch.int8: "*i8",
    torch.int16: "*i16",
    torch.int32: "*i32",
    torch.int64: "*i64",
}

_IR_ELEMENT_TYPES = {torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32"}


def _compile_for_cuda(
    kernel, constants: dict[str, object], pointers: dict[str, str], aligned: list[str], arch: int, num_warps: int
) -> tuple[object, dict[str, str]]:
    """Compile `kernel` for sm_<arch>; return it and cuobjdump's resource usage (REG, STACK, ...)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    signature = {name: "constexpr" if name in constants else "i32" for name in names} | pointers
    attrs = {(names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    compiled = triton.compile(
        ASTSource(kernel, signature, constants, attrs),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": num_warps, "enable_fp_fusion": triton_impl.ENABLE_FP_FUSION},
    )
    with tempfile.TemporaryDirectory() as folder:
        cubin = Path(folder) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run(
            [knobs.nvidia.cuobjdump.path, "--dump-resource-usage", str(cubin)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    line = next(line for line in usage.splitlines() if "REG:" in line)
    return compiled, dict(field.split(":", 1) for field in line.split() if ":" in field)


def compile_report(
    dim: int,
    num_segments: int,
    hidden_dtype: torch.dtype = torch.bfloat16,
    id_dtype: torch.dtype = torch.int64,
    arch: int = 90,
    config: LaunchConfig | None = None,
    packed: bool = False,
) -> dict[str, object]:
    """Compile both kernels for CUDA sm_<arch> on any machine and report their resources.

    Triton ships ptxas and cuobjdump, so this needs no GPU. It is the CPU-side check that the code
    the interpreter runs also passes the real compiler, and that a config does not spill
    (`stack_bytes` > 0 means registers spilled). Needs compiled mode: TRITON_INTERPRET unset. `packed`: the kernel
    that reads rows packed end to end (`row_starts_ptr`).
    """
    if triton_impl.INTERPRETED:
        raise RuntimeError("compile_report needs compiled kernels; start Python without TRITON_INTERPRET")
    if config is None:
        config = launch_config(dim, num_segments, interpret=False)
    # What a launch sees for 16-byte aligned buffers: Triton specialises pointers and ints that are
    # multiples of 16. A `dim` multiple of 16 is what lets the masked row loads become cp.async.
    aligned = ["hidden_ptr", "segment_ids_ptr", "partial_sums_ptr", "partial_counts_ptr", "sums_ptr", "counts_ptr"]
    if dim % 16 == 0:
        aligned += ["dim", "stride_hidden_b", "stride_hidden_t"]
        aligned += ["stride_partial_sums_b", "stride_partial_sums_c", "stride_partial_sums_s"]
        aligned += ["stride_sums_b", "stride_sums_s"]
    main_constants = {
        "NUM_SEGMENTS": num_segments,
        "CHUNK_T": config.chunk_t,
        "BLOCK_T": config.block_t,
        "BLOCK_D": config.block_d,
        "NUM_STAGES": config.num_stages,
        "NORM_EPS": NORM_EPS,
        "PACKED": packed,
    }
    main_pointers = {
        "hidden_ptr": _POINTER_TYPES[hidden_dtype],
        "segment_ids_ptr": _POINTER_TYPES[id_dtype],
        # What a launch passes: the row starts, or (unread) the segment ids again
        "row_starts_ptr": "*i32" if packed else _POINTER_TYPES[id_dtype],
        "partial_sums_ptr": "*fp32",
        "partial_counts_ptr": "*i32",
    }
    main, main_usage = _compile_for_cuda(
        triton_impl._segment_unit_sums_kernel,
        main_constants,
        main_pointers,
        [name for name in aligned if name in triton_impl._segment_unit_sums_kernel.arg_names],
        arch,
        config.num_warps,
    )
    reduce_pointers = {"partial_sums_ptr": "*fp32", "partial_counts_ptr": "*i32", "sums_ptr": "*fp32"}
    _, reduce_usage = _compile_for_cuda(
        triton_impl._reduce_chunks_kernel,
        {"NUM_SEGMENTS": num_segments, "BLOCK_D": config.reduce_block_d},
        reduce_pointers | {"counts_ptr": "*i32"},
        [name for name in aligned if name in triton_impl._reduce_chunks_kernel.arg_names],
        arch,
        config.reduce_num_warps,
    )
    return {
        "arch": f"sm_{arch}",
        "dim": dim,
        "num_segments": num_segments,
        "packed": packed,
        "hidden_dtype": str(hidden_dtype).removeprefix("torch."),
        "block_t": config.block_t,
        "num_warps": config.num_warps,
        "num_stages": config.num_stages,
        "registers": int(main_usage["REG"]),
        "stack_bytes": int(main_usage["STACK"]),
        "shared_bytes": int(main.metadata.shared),
        # Whether the hidden-state loads are issued ahead (async copies into shared memory).
        "pipelined_hidden_loads": any(
            "async_copy_global_to_local" in line and f"!tt.ptr<{_IR_ELEMENT_TYPES[hidden_dtype]}>" in line
            for line in main.asm["ttgir"].splitlines()
        ),
        "reduce_registers": int(reduce_usage["REG"]),
        "reduce_stack_bytes": int(reduce_usage["STACK"]),
    }


def rotary_compile_report(arch: int = 90) -> dict[str, object]:
    """Compile `elementwise`'s rotary kernel for CUDA sm_<arch> at the 0.5B class's heads (14 query, 2 key/value, 64
    wide) in bfloat16, as the forward launches it, and report its resources."""
    from gaincurate.kernels import elementwise

    kernel = elementwise._rotary_kernel
    constants = {"HALF": 32, "BLOCK_HALF": 32, "BLOCK_QH": 16, "BLOCK_KH": 2}
    pointers = {name: "*bf16" for name in ("q_ptr", "k_ptr", "cos_ptr", "sin_ptr", "q_out_ptr", "k_out_ptr")}
    _, usage = _compile_for_cuda(kernel, constants, pointers, list(pointers), arch, num_warps=4)
    return {"arch": f"sm_{arch}", "registers": int(usage["REG"]), "stack_bytes": int(usage["STACK"])}


def silu_mul_compile_report(arch: int = 90, aligned: bool = True) -> dict[str, object]:
    """Compile `elementwise`'s SiLU-and-product kernel for CUDA sm_<arch> in bfloat16, its element count known a
    multiple of 16 (as Triton specialises it for every real MLP width) or not, and report its resources and whether
    it loads 16 bytes at a time (`ld.global.v4`)."""
    from gaincurate.kernels import elementwise

    kernel = elementwise._silu_mul_kernel
    pointers = {name: "*bf16" for name in ("gate_ptr", "up_ptr", "out_ptr")}
    aligned_names = [*pointers, "numel"] if aligned else list(pointers)
    compiled, usage = _compile_for_cuda(kernel, {"BLOCK": elementwise._SILU_BLOCK}, pointers, aligned_names, arch, 4)
    return {"arch": f"sm_{arch}", "aligned": aligned, "stack_bytes": int(usage["STACK"]),
            "vector_loads": "ld.global.v4" in compiled.asm["ptx"]}  # fmt: skip
