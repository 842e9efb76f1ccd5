#!/usr/bin/python3
"""Writes the safetensors case folders: <case>/input.bin and <case>/expect (line 1: status name
as rr_status_str prints it, "ok" for a valid file; line 2: a substring of the error message).
Run once to regenerate the committed files: /usr/bin/python3 tests/cases/safetensors/make_cases.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def raw(header, data=b"", pad=True, n=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def f32(*v):
    return struct.pack(f"<{len(v)}f", *v)


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}
GOOD_DATA = f32(1, 2, 3)
good = raw(GOOD, GOOD_DATA)


def entry(dtype="F32", shape=(1,), offs=(0, 4)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)}


CASES = {
    # valid files
    "ok_empty_header": (raw({}), "ok", ""),
    "ok_metadata_only": (raw({"__metadata__": {"k": "v"}}), "ok", ""),
    "ok_two_tensors": (good, "ok", ""),
    "ok_scalar_and_empty": (raw({"s": entry(shape=(), offs=(0, 4)),
                                 "e": entry(shape=(0, 3), offs=(4, 4))}, f32(5)), "ok", ""),
    "ok_f16_bf16_f64": (raw({"h": entry("F16", (2,), (0, 4)), "b": entry("BF16", (1,), (4, 6)),
                             "d": entry("F64", (1,), (6, 14))}, b"\x00\x3c\x00\xc0" + b"\x80\x3f"
                            + struct.pack("<d", 0.5)), "ok", ""),
    "ok_unpadded_header": (raw(GOOD, GOOD_DATA, pad=False), "ok", ""),
    # header length and file size
    "short_file": (b"\x01\x00\x00", "malformed input", "shorter than its 8-byte header"),
    "header_bomb": (struct.pack("<Q", 0xFFFFFFFFFFFFFFFF) + b"{}", "malformed input",
                    "exceeds the limit"),
    "header_2_to_40": (struct.pack("<Q", 1 << 40) + b"{}", "malformed input", "exceeds the limit"),
    "header_past_end": (struct.pack("<Q", 100) + b"{}      ", "malformed input",
                        "runs past the end"),
    "truncated_data": (good[:-2], "malformed input", "beyond the"),
    "truncated_header": (good[:20], "malformed input", "runs past the end"),
    "trailing_byte": (good + b"\x00", "malformed input", "cover 12 bytes but the file holds 13"),
    "length_off_by_one": (raw(GOOD, GOOD_DATA, n=len(json.dumps(GOOD)) - 1), "malformed input",
                          "not valid JSON"),
    # header JSON
    "not_json": (raw(b"{hello"), "malformed input", "not valid JSON"),
    "array_header": (raw([1, 2]), "malformed input", "not a JSON object"),
    "string_header": (raw(b'"x"'), "malformed input", "not valid JSON"),
    "duplicate_key": (raw(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                          b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', f32(1)),
                      "malformed input", "duplicate"),
    "invalid_utf8": (raw(b'{"\xff\xfe": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
                         f32(1)), "malformed input", "not valid JSON"),
    "nul_in_string": (raw(b'{"a\\u0000b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
                          f32(1)), "malformed input", "not valid JSON"),
    "metadata_number": (raw({"__metadata__": {"k": 1}}), "malformed input",
                        "value for 'k' is not a string"),
    "metadata_nested": (raw({"__metadata__": {"k": {"x": "y"}}}), "malformed input",
                        "not a string"),
    "metadata_array": (raw({"__metadata__": ["k"]}), "malformed input",
                       "__metadata__ must be an object"),
    # tensor entries
    "entry_not_object": (raw({"a": [1, 2]}), "malformed input", "is not an object"),
    "entry_missing_dtype": (raw({"a": {"shape": [1], "data_offsets": [0, 4]}}, f32(1)),
                            "malformed input", "needs dtype, shape and data_offsets"),
    "entry_extra_key": (raw({"a": dict(entry(), extra=1)}, f32(1)), "malformed input",
                        "unknown member 'extra'"),
    "dtype_unknown": (raw({"a": entry("F33")}, f32(1)), "malformed input", "unknown dtype 'F33'"),
    "dtype_not_string": (raw({"a": dict(entry(), dtype=32)}, f32(1)), "malformed input",
                         "dtype must be a string"),
    "shape_negative": (raw({"a": entry(shape=(-1,))}, f32(1)), "malformed input",
                       "non-negative integers"),
    "shape_real": (raw(b'{"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}', f32(1)),
                   "malformed input", "non-negative integers"),
    "shape_2_to_64": (raw(b'{"a": {"dtype": "F32", "shape": [18446744073709551616], '
                          b'"data_offsets": [0, 4]}}', f32(1)), "malformed input",
                      "not valid JSON"),
    "shape_overflow": (raw({"a": entry(shape=(1 << 62, 1 << 62))}, f32(1)), "malformed input",
                       "overflows"),
    "shape_nine_dims": (raw({"a": entry(shape=(1,) * 9)}, f32(1)), "unsupported",
                        "9 dimensions"),
    "shape_not_array": (raw({"a": dict(entry(), shape=3)}, f32(1)), "malformed input",
                        "shape must be an array"),
    "bytes_mismatch_shape": (raw({"a": entry(shape=(2,), offs=(0, 4))}, f32(1)), "malformed input",
                             "4 bytes for 2 elements of F32 (expected 8)"),
    # offsets
    "offsets_reversed": (raw({"a": entry(offs=(5, 2))}, f32(1, 2)), "malformed input",
                         "end before they begin"),
    "offsets_beyond_data": (raw({"a": entry(offs=(0, 400))}, f32(1)), "malformed input",
                            "beyond the 4 data bytes"),
    "offsets_three": (raw({"a": dict(entry(), data_offsets=[0, 4, 8])}, f32(1)), "malformed input",
                      "data_offsets must be two non-negative integers"),
    "offsets_negative": (raw({"a": dict(entry(), data_offsets=[-4, 0])}, f32(1)), "malformed input",
                         "non-negative integers"),
    "offsets_overlap": (raw({"a": entry(shape=(2,), offs=(0, 8)), "b": entry(offs=(4, 8))},
                            f32(1, 2)), "malformed input", "contiguous"),
    "offsets_gap": (raw({"a": entry(offs=(0, 4)), "b": entry(offs=(8, 12))}, f32(1, 2, 3)),
                    "malformed input", "contiguous"),
    "offsets_alias_amplification": (raw({f"t{i}": entry(offs=(0, 4)) for i in range(50)}, f32(1)),
                                    "malformed input", "contiguous"),
}


def main():
    for name, (data, status, needle) in CASES.items():
        d = os.path.join(HERE, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "input.bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(d, "expect"), "w") as f:
            f.write(f"{status}\n{needle}\n")
    print(f"{len(CASES)} cases")


if __name__ == "__main__":
    main()
