"""Weights stored in fp8, computed in the working dtype: FLUX.1's transformer and T5 at about half their size.

FLUX.1-dev in bfloat16 is 24 GB of transformer and 9.5 GB of T5 weights. `quantize_fp8` stores the weights of
a module's Linear layers as float8_e4m3fn (one byte each) and upcasts them to the compute dtype inside each
forward, one layer at a time: no fp8 arithmetic is needed, so it works on any CUDA card (a 3090 has no fp8
compute), on Apple MPS and on the CPU. Where the card has fp8 compute (CUDA capability 8.9 or newer) and
torchao is installed, the denoiser can instead use torchao's float8 dynamic quantisation, which also runs the
matrix products in fp8 (`fp8_backend` decides; torchao is optional and imported only then).

Which layers: the Linear layers inside the model's repeated blocks (any `nn.ModuleList`). For FLUX.1 those are
the 19 double and 38 single blocks, attention, MLP and modulation alike: 11.83 G of the transformer's 11.90 G
parameters. Outside them stay in the working dtype: the input projections of the latents, the text tokens and
the timestep/guidance/pooled embeddings, the final modulation and the output projection (62 M parameters,
0.5 %), as well as every norm and embedding table (not Linear layers). For T5-XXL all 4.63 G Linear parameters
of its 24 blocks are stored in fp8; its token embedding and norms stay. For an SD/SDXL UNet, the Linear layers
of its down/mid/up blocks (the convolutions stay).

The scale is one per output channel (a row of the weight) and a power of two, `2**ceil(log2(amax / 448))`:

- per row, because rows of one weight differ widely in size (the modulation layers produce shift, scale and
  gate in one matrix), and with one scale per tensor the small rows would fall into fp8's subnormal range
  (below 2**-6 of the scale's unit), where e4m3 keeps fewer than its three mantissa bits;
- a power of two, because e4m3 is a floating-point format: its relative precision is the same at every
  magnitude in its normal range, so an exact `amax / 448` scale gains nothing over the next power of two
  (at most one binade of headroom, against fifteen binades of range), while a power of two is exact in
  float32, bfloat16 and float16 alike: the dequantised weight is bit-for-bit the same in any working dtype,
  and casting the scale with the module (`.to(dtype)`) loses nothing.

The fp8 bits are kept in an int8 tensor: an integer dtype is left alone by `module.to(dtype)` (which would
otherwise upcast a float8 weight and silently undo the saving), is skipped by diffusers' and transformers'
`.dtype` (the first floating-point parameter), and is the dtype transformers' T5 exempts from casting its
hidden states to the weight's dtype (`wo`). It still moves with `.to(device)` and with accelerate's offload
hooks, which move parameters to and from the `meta` device.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Iterator

# The largest finite float8_e4m3fn value.
E4M3_MAX = 448.0
FP8_MIN_CAPABILITY = (8, 9)
# Rowwise-scaled fp8 matrix products (torch._scaled_mm with one scale per row) need Hopper (9.0); Ada (8.9)
# gets one scale per tensor.
ROWWISE_MIN_CAPABILITY = (9, 0)
BACKENDS = ("storage", "torchao")


@dataclass(frozen=True)
class QuantReport:
    """What `quantize_fp8` did to one module: the backend, how many Linear layers it converted and how many
    it left in their dtype, and the module's parameter and buffer bytes before and after."""

    backend: str
    layers: int
    kept: int
    bytes_before: int
    bytes_after: int

    @property
    def saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def describe(self) -> str:
        mib = 2**20
        return (
            f"fp8 ({self.backend}): {self.layers} linear layers, "
            f"{self.bytes_before / mib:.0f} MiB -> {self.bytes_after / mib:.0f} MiB"
        )


def _e4m3_table() -> torch.Tensor:
    """The 256 float8_e4m3fn values by bit pattern, in float32 (for devices without float8 casts)."""
    return torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).float()


_TABLE: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
# Devices whose kernels convert float8 to wider floats; elsewhere (Apple MPS has no float8 type) the bits are
# looked up in a 256-entry table.
_FLOAT8_CAST_DEVICES = ("cuda", "cpu")


def dequantize(
    bits: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype, *, table: bool = False
) -> torch.Tensor:
    """The weight `bits` (int8 holding float8_e4m3fn) times its per-row `scale`, as a new tensor in `dtype`.

    `table` looks the values up instead of casting (what devices without float8 support do; exact too).
    """
    if table or bits.device.type not in _FLOAT8_CAST_DEVICES:
        key = (bits.device, dtype)
        values = _TABLE.get(key)
        if values is None:
            values = _TABLE[key] = _e4m3_table().to(device=bits.device, dtype=dtype)
        weight = values[bits.view(torch.uint8).to(torch.int32)]
    else:
        weight = bits.view(torch.float8_e4m3fn).to(dtype)
    # A power of two: exact in every float dtype, so the product is the fp8 value scaled, bit for bit.
    return weight.mul_(scale.to(dtype).unsqueeze(1))


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8 bits (int8, the weight's shape) and per-row power-of-two scales (float32) of a 2-D weight.

    The values are rounded to nearest, so each is within half a unit in the last place of e4m3 (a relative
    2**-4 for normal values, an absolute `scale * 2**-10` among the subnormals)."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1)
    # 2**ceil(log2(amax / 448)): the smallest power of two that brings the row's largest value within
    # e4m3's range. An all-zero row gets scale 1.
    exponent = torch.ceil(torch.log2(torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))))
    scale = torch.exp2(exponent)
    q = (w / scale.unsqueeze(1)).clamp_(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q.view(torch.int8), scale


class Fp8Linear(nn.Linear):
    """A Linear layer whose weight is stored in fp8 (as int8 bits) with one power-of-two scale per output
    row, and upcast to the compute dtype inside each forward.

    The compute dtype is the dtype of the `weight_scale` buffer, so that `module.to(dtype)` changes it with
    the rest of the model while the fp8 bits stay one byte each (a power of two survives the cast exactly;
    in float16 a row whose largest weight is at most 448 * 2**-25 = 1.3e-5 becomes zero). It is an
    `nn.Linear` (in_features, out_features, bias), so code that looks for Linear layers (LoRA adapters from
    peft, diffusers' loaders) still finds it. Its `weight` is the int8 bits; `dequantized_weight()` gives
    the values.
    """

    weight: nn.Parameter
    weight_scale: torch.Tensor

    def __init__(self, bits: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        # nn.Module.__init__ only: nn.Linear's would allocate a full-precision weight first.
        nn.Module.__init__(self)
        self.out_features, self.in_features = bits.shape
        self.weight = nn.Parameter(bits, requires_grad=False)
        self.register_buffer("weight_scale", scale)
        self.bias = nn.Parameter(bias.detach(), requires_grad=False) if bias is not None else None

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.weight_scale.dtype

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, compute_dtype: torch.dtype, work_device: torch.device | None = None
    ) -> Fp8Linear:
        """The fp8 copy of `linear`, on `linear`'s device; `work_device` (a GPU) does the arithmetic faster."""
        home = linear.weight.device
        weight = linear.weight.detach()
        bits, scale = quantize_weight(weight.to(work_device) if work_device is not None else weight)
        # A layer the model keeps in float32 while the rest is in half precision (T5's `wo` in float16,
        # against overflow) keeps computing in float32.
        dtype = linear.weight.dtype if linear.weight.dtype == torch.float32 else compute_dtype
        return cls(bits.to(home), scale.to(device=home, dtype=dtype), linear.bias)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize(self.weight, self.weight_scale, dtype or self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.compute_dtype
        bias = self.bias.to(dtype) if self.bias is not None else None
        return nn.functional.linear(
            x.to(dtype), dequantize(self.weight, self.weight_scale, dtype), bias
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fp8 e4m3 per-row scale, compute {self.compute_dtype}"


def _stack_prefixes(module: nn.Module) -> tuple[str, ...]:
    """Name prefixes of everything inside the module's repeated blocks (its `nn.ModuleList`s)."""
    names = [name for name, child in module.named_modules() if isinstance(child, nn.ModuleList)]
    if "" in names:  # the module itself is a stack: all of it
        return ("",)
    return tuple(f"{name}." for name in names)


def quantizable_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The plain Linear layers that `quantize_fp8` converts: those inside repeated blocks (see the module
    docstring), by qualified name. Layers of LoRA adapters are never among them."""
    prefixes = _stack_prefixes(module)
    if not prefixes:
        return []
    return [
        (name, child)
        for name, child in module.named_modules()
        if type(child) is nn.Linear and name.startswith(prefixes) and ".lora_" not in f".{name}"
    ]


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers as stored (tensor subclasses by their inner tensors)."""
    seen: set[int] = set()
    total = 0
    for tensor in _tensors(module):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += _tensor_bytes(tensor)
    return total


def _tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def _tensor_bytes(tensor: torch.Tensor) -> int:
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, nn.Parameter):
        names, _ = tensor.__tensor_flatten__()  # type: ignore[attr-defined]
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def torchao_available() -> bool:
    """Whether torchao can be imported (it is optional: `pip install torchao`)."""
    return importlib.util.find_spec("torchao") is not None


def fp8_backend(
    device: torch.device | str,
    *,
    capability: tuple[int, int] | None = None,
    torchao: bool | None = None,
    memory_mode: str = "none",
) -> str:
    """ "torchao" (fp8 matrix products) or "storage" (fp8 weights, products in the compute dtype).

    torchao only on a CUDA card of capability 8.9 or newer with torchao installed, and only with the whole
    model on the card (memory mode none): torchao quantises on a capable GPU, and its weights are tensor
    subclasses that the offload hooks (which move them between the card, the CPU and `meta`) have not been
    shown to carry. `capability` and `torchao` default to this machine's.
    """
    device = torch.device(device)
    if device.type != "cuda" or memory_mode != "none":
        return "storage"
    if capability is None:
        capability = tuple(torch.cuda.get_device_capability(device))  # type: ignore[assignment]
    if torchao is None:
        torchao = torchao_available()
    return "torchao" if torchao and capability >= FP8_MIN_CAPABILITY else "storage"


def quantize_fp8(
    module: nn.Module,
    compute_dtype: torch.dtype,
    *,
    backend: str = "storage",
    device: torch.device | str | None = None,
) -> QuantReport:
    """Store the weights of `module`'s quantizable Linear layers in fp8, in place; return what changed.

    `compute_dtype` is the dtype the layers upcast to (the pipeline's working dtype). `backend` is
    "storage" (works everywhere) or "torchao" (call `fp8_backend` first: it needs a capable card). `device`,
    a GPU, does the rounding there (seconds instead of a minute for FLUX's 12 G parameters on a CPU); the
    weights stay where they were. A module already quantized is left as it is.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown fp8 backend {backend!r}")
    layers = quantizable_layers(module)
    total = sum(1 for child in module.modules() if type(child) is nn.Linear)
    before = module_bytes(module)
    if backend == "torchao":
        _torchao_quantize(module, {name for name, _ in layers}, device)
    else:
        work = torch.device(device) if device is not None else None
        if work is not None and work.type == "cpu":
            work = None
        for name, linear in layers:
            _replace(module, name, Fp8Linear.from_linear(linear, compute_dtype, work))
    return QuantReport(backend, len(layers), total - len(layers), before, module_bytes(module))


def is_quantized(module: nn.Module) -> bool:
    """Whether `module` holds fp8 layers of ours (torchao's are not detected)."""
    return any(isinstance(child, Fp8Linear) for child in module.modules())


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def torchao_config(capability: tuple[int, int]) -> Any:
    """torchao's float8 dynamic-activation, float8-weight config for this card: one scale per row on
    Hopper and newer, one per tensor on Ada. Handles torchao's config class (0.10+) and the older function."""
    import torchao.quantization as tq

    granularity = tq.PerRow() if capability >= ROWWISE_MIN_CAPABILITY else tq.PerTensor()
    config = getattr(tq, "Float8DynamicActivationFloat8WeightConfig", None)
    if config is None:  # torchao before 0.10
        config = tq.float8_dynamic_activation_float8_weight
    return config(granularity=granularity)


def _torchao_quantize(
    module: nn.Module, names: set[str], device: torch.device | str | None
) -> None:
    from torchao.quantization import quantize_

    # torchao quantises on the card (it refuses on a machine without fp8 compute): the module moves there.
    target = torch.device(device) if device is not None else torch.device("cuda")
    capability = tuple(torch.cuda.get_device_capability(target))
    quantize_(
        module,
        torchao_config(capability),  # type: ignore[arg-type]
        filter_fn=lambda child, fqn: fqn in names,
        device=target,
    )
