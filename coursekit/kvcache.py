"""A quantized KV cache for transformers' ``generate``, built from `coursekit.quant` (notebook 13).

During generation a model keeps, for every layer, the keys and values of every token it has seen:
``2 x layers x kv_heads x head_dim x tokens x batch`` numbers (`kv_bytes`). Weights are paid once;
the cache grows with the context and the batch, so at long contexts it outweighs int4 weights.

`QuantizedKVCache` stores it in 2, 4 or 8 bits, the design of KIVI (Liu et al., 2024):

* **keys per channel.** Key vectors have a few channels that are large for every token (fixed
  dimensions, before and after RoPE). One scale per token would stretch to them and crush the
  others; one scale per channel, shared by a group of tokens, gives each channel its own range.
* **values per token.** Values have no such channels; what matters is each token's own vector,
  which attention mixes by its weight.
* **a residual window.** The most recent `residual_length` tokens stay exact: attention leans on
  them most, and a per-channel group needs a block of tokens before it can be quantized anyway.

Tokens leave the window in blocks of one token group (``group_size`` tokens, 32 by default), the
same blocks whatever the axes, so per-token and per-channel see exactly the same exact tokens.
``group_size`` counts what shares a scale along the reduced axis, as optimum-quanto's
``q_group_size`` does: tokens for per-channel, channels of a head for per-token (default: all).

Codes are kept packed (`coursekit.packing`), scales in the cache's dtype, zero points in int8:
`nbytes` is what the cache really holds. Every step dequantizes the whole cache: memory is saved,
time is not (notebook 13, section 5).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from transformers.cache_utils import Cache, DynamicLayer

from . import checks, packing, quant
from .models.devices import model_device
from .models.evaluation import SlicePerplexity

__all__ = ["AXES", "BITS", "DEFAULT_TOKEN_GROUP", "kv_bytes", "QuantizedKVLayer", "QuantizedKVCache",
           "cache_nbytes", "chunked_perplexity"]

AXES = ("token", "channel")
BITS = (2, 4, 8)
#: Tokens per per-channel group when ``group_size`` is None (KIVI's default group).
DEFAULT_TOKEN_GROUP = 32


def _shape(config) -> tuple[int, int, int]:
    """(layers, kv_heads, head_dim) from a transformers config, or a dict with the same keys."""
    if hasattr(config, "get_text_config"):          # a multimodal config: its language model's
        config = config.get_text_config(decoder=True)
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    layers, heads = get("num_hidden_layers"), get("num_attention_heads")
    if layers is None or heads is None:
        checks.fail("config", "a model config with num_hidden_layers and num_attention_heads",
                    type(config).__name__, TypeError)
    kv_heads = get("num_key_value_heads") or heads           # None or 0: multi-head attention
    head_dim = get("head_dim") or get("hidden_size") // heads
    return (checks.check_int(layers, "config.num_hidden_layers", 1),
            checks.check_int(kv_heads, "config.num_key_value_heads", 1),
            checks.check_int(head_dim, "config.head_dim", 1))


def kv_bytes(config, tokens, batch=1, dtype=torch.float16) -> int:
    """Bytes of an unquantized KV cache: 2 (K and V) x layers x kv_heads x head_dim x tokens x batch
    x bytes per element. Grouped-query attention shrinks it by sharing a key/value head between
    several query heads: it is ``num_key_value_heads`` that counts, not ``num_attention_heads``."""
    layers, kv_heads, head_dim = _shape(config)
    tokens = checks.check_int(tokens, "tokens", 0)
    batch = checks.check_int(batch, "batch", 1)
    checks.check_instance(dtype, "dtype", torch.dtype, "a torch.dtype, e.g. torch.float16")
    return 2 * layers * kv_heads * head_dim * tokens * batch * dtype.itemsize


class _Store:
    """The quantized part of keys or values: packed codes, scales, zero points, growing by blocks.

    Both axes become per-group quantization along the last dimension (one rule, `quant.quantize`):
    per-token quantizes (batch, heads, tokens, head_dim) in groups of channels; per-channel
    quantizes the transposed (batch, heads, head_dim, tokens) in groups of tokens. Blocks then
    concatenate along tokens, so the whole store dequantizes in one call.
    """

    def __init__(self, bits: int, axis: str, group: int | None):
        self.bits, self.axis, self.group = bits, axis, group
        self.codes = self.scale = self.zero_point = None
        self.tokens = 0

    def _layout(self, x):        # tokens last for per-channel
        return x.transpose(-1, -2).contiguous() if self.axis == "channel" else x.contiguous()

    def append(self, x: torch.Tensor) -> None:
        y = self._layout(x)
        group = self.group or y.shape[-1]
        if y.shape[-1] % group:
            checks.fail("group_size", f"a divisor of the head dim ({y.shape[-1]}) for per-token "
                        "quantization", group)
        q = quant.quantize(y.float(), self.bits, granularity="per_group", group_size=group)
        codes = q.data if self.bits == 8 else packing.pack(packing.to_unsigned(q.data, self.bits), self.bits)
        codes = codes.reshape(*y.shape[:-1], -1)       # whole bytes per row: rows pack separately
        parts = (codes, q.scale.to(x.dtype), q.zero_point)
        dim = -1 if self.axis == "channel" else -2     # where the token dimension is
        if self.codes is None:
            self.codes, self.scale, self.zero_point = parts
        else:
            self.codes, self.scale, self.zero_point = (
                torch.cat([old, new], dim=dim) for old, new in zip((self.codes, self.scale, self.zero_point), parts))
        self.tokens += x.shape[-2]

    def dequantize(self, dtype) -> torch.Tensor:
        shape = (*self.codes.shape[:-1], self.codes.shape[-1] * 8 // self.bits)
        codes = self.codes if self.bits == 8 else packing.to_signed(
            packing.unpack(self.codes.reshape(-1), self.bits, math.prod(shape)), self.bits).reshape(shape)
        blocking = quant.Blocking.make(shape, "per_group", group_size=shape[-1] // self.scale.shape[-1])
        x = quant.QTensor(codes, self.scale, self.zero_point, self.bits, False, blocking, dtype).dequantize()
        return x.transpose(-1, -2) if self.axis == "channel" else x

    @property
    def nbytes(self) -> int:
        if self.codes is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (self.codes, self.scale, self.zero_point))

    def select(self, index: torch.Tensor) -> None:
        if self.codes is not None:
            self.codes, self.scale, self.zero_point = (
                t.index_select(0, index.to(t.device)) for t in (self.codes, self.scale, self.zero_point))


class QuantizedKVLayer(DynamicLayer):
    """One layer's cache: quantized blocks of old tokens, and a full-precision window of recent ones.

    `update` returns every key and value (old blocks dequantized, the window and the new tokens
    exact) for attention, then moves whole blocks of tokens older than the window into the
    quantized store. So new tokens are always attended exactly, as in transformers' own layers.
    """

    is_croppable = False

    def __init__(self, bits=4, key_axis="channel", value_axis="token", group_size=None, residual_length=32):
        super().__init__()
        token_group = group_size if group_size and "channel" in (key_axis, value_axis) else DEFAULT_TOKEN_GROUP
        channel_group = group_size if "token" in (key_axis, value_axis) else None
        self.block, self.residual_length = token_group, residual_length
        self.quantized_keys = _Store(bits, key_axis, token_group if key_axis == "channel" else channel_group)
        self.quantized_values = _Store(bits, value_axis, token_group if value_axis == "channel" else channel_group)
        self.cumulative_length = 0

    def lazy_initialization(self, key_states, value_states) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        keys, values = self.keys, self.values
        if self.quantized_keys.tokens:
            keys = torch.cat([self.quantized_keys.dequantize(self.dtype), keys], dim=-2)
            values = torch.cat([self.quantized_values.dequantize(self.dtype), values], dim=-2)
        n = (self.keys.shape[-2] - self.residual_length) // self.block * self.block
        if n > 0:        # whole blocks older than the window leave it, oldest first
            self.quantized_keys.append(self.keys[..., :n, :])
            self.quantized_values.append(self.values[..., :n, :])
            self.keys, self.values = self.keys[..., n:, :].clone(), self.values[..., n:, :].clone()
        return keys, values

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def reset(self) -> None:
        for store in (self.quantized_keys, self.quantized_values):
            store.codes = store.scale = store.zero_point = None
            store.tokens = 0
        self.keys = self.values = None
        self.is_initialized, self.cumulative_length = False, 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized:
            self.keys = self.keys.index_select(0, beam_idx.to(self.device))
            self.values = self.values.index_select(0, beam_idx.to(self.device))
            self.quantized_keys.select(beam_idx)
            self.quantized_values.select(beam_idx)

    @property
    def nbytes(self) -> int:
        """Bytes held: packed codes, scales and zero points of both stores, and the exact window."""
        window = 0 if self.keys is None else sum(t.numel() * t.element_size() for t in (self.keys, self.values))
        return self.quantized_keys.nbytes + self.quantized_values.nbytes + window


class QuantizedKVCache(Cache):
    """A KV cache in `bits` (2, 4 or 8) per element; pass it as ``past_key_values=`` to ``generate``
    or to a forward call. key_axis / value_axis: "channel" (one scale per channel, shared by a group
    of tokens) or "token" (one scale per token, or per group of its channels). group_size: what
    shares a scale along the reduced axis (tokens for "channel", default 32; channels for "token",
    default the whole head). residual_length: recent tokens kept exact (0: none)."""

    def __init__(self, bits=4, key_axis="channel", value_axis="token", group_size=None, residual_length=32):
        self.bits = checks.check_choice(bits, "bits", BITS)
        self.key_axis = checks.check_choice(key_axis, "key_axis", AXES)
        self.value_axis = checks.check_choice(value_axis, "value_axis", AXES)
        if group_size is not None:
            group_size = checks.check_int(group_size, "group_size", 1)
            if "channel" in (key_axis, value_axis) and group_size % 4:
                checks.fail("group_size", "a multiple of 4 (groups of tokens are packed into whole bytes)",
                            group_size)
        self.group_size = group_size
        self.residual_length = checks.check_int(residual_length, "residual_length", 0)
        super().__init__(layer_class_to_replicate=partial(
            QuantizedKVLayer, bits, key_axis, value_axis, group_size, self.residual_length))

    @property
    def nbytes(self) -> int:
        """The cache's true storage in bytes, summed over layers (see `QuantizedKVLayer.nbytes`)."""
        return sum(layer.nbytes for layer in self.layers)

    def __repr__(self) -> str:
        return (f"QuantizedKVCache(bits={self.bits}, key_axis={self.key_axis!r}, value_axis={self.value_axis!r}, "
                f"group_size={self.group_size}, residual_length={self.residual_length}, "
                f"layers={len(self.layers)}, tokens={self.get_seq_length()})")


def cache_nbytes(cache) -> int:
    """True bytes of any transformers cache: ours, DynamicCache, or QuantizedCache (quanto / fp8),
    looking inside quantized tensor subclasses (`coursekit.memory.tensor_nbytes`)."""
    from .memory import tensor_nbytes
    if isinstance(cache, QuantizedKVCache):
        return cache.nbytes
    checks.check_instance(cache, "cache", Cache, "a transformers Cache")
    total = 0
    for layer in cache.layers:
        for name in ("keys", "values", "_quantized_keys", "_quantized_values"):
            held = getattr(layer, name, None)
            for t in held if isinstance(held, tuple) else (held,):
                if isinstance(t, torch.Tensor):
                    total += tensor_nbytes(t)
    return total


@torch.no_grad()
def chunked_perplexity(model, tokenizer, slices, make_cache=None, tokens=256, chunk=32, predictions=False):
    """Perplexity teacher-forced through a cache: each slice is fed `chunk` tokens at a time, so
    every chunk attends to the earlier text as the cache stores it (quantized) and to itself
    exactly, as a generating model does (chunk=1 would be generation itself, and 30x slower).
    make_cache: a function returning a fresh cache (None: transformers' exact DynamicCache).
    All slices run as one batch; the result compares with `coursekit.models.compare`.
    predictions=True also returns each position's greedy (top-1) next token, (slices, tokens - 1)."""
    from transformers import DynamicCache
    tokens = checks.check_int(tokens, "tokens", 2)
    chunk = checks.check_int(chunk, "chunk", 1)
    ids = [tokenizer(s, add_special_tokens=False)["input_ids"][:tokens] for s in slices]
    if min(map(len, ids)) < tokens:
        checks.fail("slices", f"texts of at least {tokens} tokens", f"one of {min(map(len, ids))}")
    ids = torch.tensor(ids, device=model_device(model))
    cache = make_cache() if make_cache is not None else DynamicCache(config=model.config)
    logits = [model(input_ids=ids[:, i:i + chunk], past_key_values=cache, use_cache=True).logits.float()
              for i in range(0, tokens, chunk)]
    logits = torch.cat(logits, dim=1)[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").mean(dim=1)
    result = SlicePerplexity(slices=tuple(math.exp(v) for v in nll.tolist()), nll=tuple(nll.tolist()),
                             tokens=(tokens - 1,) * len(slices), pooled=math.exp(float(nll.mean())))
    return (result, logits.argmax(-1)) if predictions else result
