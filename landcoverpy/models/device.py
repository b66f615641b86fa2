"""Which torch device abundance models run on: ``auto`` (a CUDA GPU when torch sees one, else
the CPU), ``cpu``, or ``cuda`` / ``cuda:N``. The device never changes what a model is (it is not
part of a model's id); it is recorded in the training history."""

from __future__ import annotations

from typing import Any

from landcoverpy.errors import ModelError

CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | None) -> Any:
    """A ``torch.device`` for ``name``; an unknown name or a GPU torch cannot see is an error
    that says what to do."""
    import torch

    value = (name or "auto").strip().lower()
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    if value == "cuda" or value.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ModelError(
                f"device {name!r} asked for, but torch {torch.__version__} ({build}) sees no CUDA GPU; "
                "use --device cpu (or auto), or install a CUDA build of torch (see docs/abundance.md)"
            )
        index = int(value.split(":", 1)[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            raise ModelError(
                f"device {name!r}: torch sees {torch.cuda.device_count()} GPU(s); use cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
        return torch.device("cuda", index)
    raise ModelError(f"unknown device {name!r}: use auto, cpu or cuda (or cuda:N)")


def describe(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"cpu ({n} thread{'' if n == 1 else 's'})"
