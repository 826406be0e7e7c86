"""Run tests as a CPU with fewer vector instructions would: the environment that caps every numeric library.

PyTorch picks its kernels by the CPU's instruction set (ATen's vectorised ops, MKL's matrix products, oneDNN,
fbgemm's int8 products), and so does CTranslate2; a test tuned to one machine's rounding can fail on another's.
Each level below caps all of them at once, so one machine can run the tests as an older CPU would:

    python tests/cpu_levels.py                 # the levels below this machine's own, one per line
    env $(python tests/cpu_levels.py --env avx2) OMP_NUM_THREADS=1 python -m pytest -q -m numerics

`default` is the plain SSE-era x86-64 code path (ATen's `default`, MKL's SSE4.2, oneDNN's SSE4.1, CTranslate2's
GENERIC); fbgemm has no level below AVX2, so its int8 kernels stay at AVX2 there. `avx2` is an AVX2 CPU without
AVX-512, such as AMD Zen 1 and 2 or Intel Haswell to Comet Lake. A level above the machine's own is not possible
(the libraries ignore the request), so only the lower ones are listed.
"""

import argparse
import getpass
import os
import tempfile

LEVELS: dict[str, dict[str, str]] = {
    "default": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
        "CT2_FORCE_CPU_ISA": "GENERIC",
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
        "CT2_FORCE_CPU_ISA": "AVX2",
    },
}
ORDER = ["default", "avx2", "avx512"]  # ATen's capability names, lowest first


def level_env(level: str) -> dict[str, str]:
    """The settings of `level`, with a torch.compile cache of its own.

    Inductor's cache does not tell the levels apart: a kernel compiled under one level and loaded under another
    gave wrong tokens and heap corruption ("free(): invalid pointer") here, so each level compiles into its own
    folder (the machine's own level keeps Inductor's default one).
    """
    cache = os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{level}")
    return LEVELS[level] | {"TORCHINDUCTOR_CACHE_DIR": cache}


def native_level() -> str:
    """This machine's own level, as ATen names it ("default", "avx2", "avx512")."""
    import torch

    return torch.backends.cpu.get_cpu_capability().lower()


def levels_below(native: str) -> list[str]:
    """The emulable levels below `native` (all of them above "avx512", e.g. on a CPU with AMX)."""
    rank = ORDER.index(native) if native in ORDER else len(ORDER)
    return [level for level in ORDER[:rank] if level in LEVELS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=sorted(LEVELS), help="print the VAR=value settings of this level")
    args = parser.parse_args(argv)
    if args.env:
        print(" ".join(f"{name}={value}" for name, value in level_env(args.env).items()))
    else:
        print("\n".join(levels_below(native_level())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
