"""/proc/cpuinfo texts of the CPU kinds this project meets, so that tests can make a process see any of
them (precision rules, and what a run prints on each) whatever CPU runs the suite."""

from __future__ import annotations

#: matrix ISA (``hardware.CpuInfo.matrix_isa``) -> a /proc/cpuinfo text of such a CPU.
CPUINFO = {
    "amx": "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
           "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile "
           "amx_int8\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n",
    "avx512_bf16": "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                   "model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n",
    "none": "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu sse avx avx2 fma\n",
}


def python_seeing(kind: str, script: str, args: list[str]) -> list[str]:
    """``python -c`` arguments that run ``script`` (train.py, eval.py) with ``args`` as its command line, in
    a process that sees the CPU of ``CPUINFO[kind]`` (:func:`i3d_lightning.hardware.cpu_info` reads it)."""
    code = ("import runpy, sys\n"
            "from i3d_lightning import hardware\n"
            f"hardware._cpuinfo_text = lambda: {CPUINFO[kind]!r}\n"
            f"sys.argv = [{script!r}, *{args!r}]\n"
            f"runpy.run_path({script!r}, run_name='__main__')\n")
    return ["-c", code]
