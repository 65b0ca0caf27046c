"""Exercises of notebook 10 · When is quantization faster?

The learner predicts the time of a memory-bound layer from the bytes it must read, and finds, in
measured times, the batch size from which the int8 kernel no longer beats bf16. Hidden cases are
fixed numbers (no randomness), so every machine sees the same ones.
"""

from __future__ import annotations

from .spec import exercise


# --------------------------------------------------------------------------- 10.predict_ms
def _predict_cases():
    return [
        (4096 * 4096, 32, 20.0),          # one fp32 layer of the notebook, a laptop's bandwidth
        (4096 * 4096, 4, 20.0),           # the same layer in int4: 8x fewer bytes
        (7_000_000_000, 16, 320.0),       # a 7B model in fp16 on a T4 (datasheet bandwidth)
        (7_000_000_000, 4, 320.0),        # ... and in int4
        (135_000_000, 8, 12.5),           # SmolLM2-135M in int8, a slow memory
        (1, 8, 1.0),                      # one byte at 1 GB/s: a nanosecond
        (3, 2, 0.5),                      # sub-byte widths: 3 weights of 2 bits are 0.75 bytes
    ]


@exercise(title="predict the time of a memory-bound layer", cases=_predict_cases, points=1, rtol=1e-6, atol=0.0,
          hint=("follow the units: first the size of the weights in bytes, then how long memory takes to "
                "deliver that many bytes, then that time in milliseconds. Return a float.",
                "a weight of `bits` bits takes bits / 8 bytes (use /, not //: three 2-bit weights are 0.75 "
                "bytes); 1 GB/s delivers 10**9 bytes per second; a second is 1000 ms."))
def predict_ms(n_params, bits, bandwidth_gb_s):
    weight_bytes = n_params * bits / 8
    return weight_bytes / (bandwidth_gb_s * 1e9) * 1e3


# --------------------------------------------------------------------------- 10.int8_stops_winning
def _stops_cases():
    sizes = [1, 2, 4, 8, 16, 32, 64]
    return [
        (sizes, [6.0, 6.4, 7.9, 12.0, 23.0, 45.0, 90.0],          # the usual shape: wins, then loses
         [13.7, 13.9, 14.2, 15.0, 18.0, 30.0, 55.0]),
        (sizes, [6.0, 6.1, 6.3, 6.8, 7.5, 9.0, 12.0],             # wins at every measured size
         [13.7, 13.8, 14.0, 14.4, 15.2, 17.0, 21.0]),
        (sizes, [15.0, 16.0, 18.0, 20.0, 30.0, 50.0, 90.0],       # never wins, not even at batch 1
         [13.7, 13.8, 14.0, 14.4, 15.2, 17.0, 21.0]),
        ([1, 4, 16, 64], [5.0, 9.0, 12.0, 40.0], [10.0, 9.0, 11.0, 20.0]),   # a tie is not a win
        ([1, 4, 16, 64], [5.0, 12.0, 10.0, 40.0], [10.0, 11.0, 11.0, 20.0]),  # noise: loses at 4, wins at 16
        ([64, 1, 16, 4], [40.0, 5.0, 12.0, 8.0], [20.0, 10.0, 11.0, 9.0]),   # sizes not in order
        ([1], [5.0], [10.0]),                                     # a single measurement, won
    ]


@exercise(title="where the int8 kernel stops winning", cases=_stops_cases, points=2, partial=True,
          hint=("keep each batch size together with its two times, visit the sizes from the smallest up (the "
                "hidden lists are not always in order) and stop at the first one where int8 does not win. "
                "A tie is not a win; if int8 wins everywhere, return None.",
                "zip(...) pairs the three lists item by item, and sorted(...) orders those tuples by their "
                "first item, the batch size; 'not faster' is the int8 time >= the bf16 time."))
def int8_stops_winning(batch_sizes, int8_ms, bf16_ms):
    for size, t_int8, t_bf16 in sorted(zip(batch_sizes, int8_ms, bf16_ms)):
        if t_int8 >= t_bf16:
            return size
    return None
