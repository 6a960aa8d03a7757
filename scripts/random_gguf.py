"""A GGUF model of a real one's shape and tokenizer with random weights, for the GPU check
(scripts/gpu-check.sh): the real SmolLM2 file (98 MB) is over what travels to the GPU
machine, its header (metadata and tensor list, about 2 MB) is not.

  header SRC DST            copy SRC's header: everything before its tensor data
  fill HEADER DST [--seed]  HEADER's tensors with random weights of their types

The header is kept byte for byte, so tokenizer, chat template and shapes are the real
model's. Quantized blocks get random 4- or 8-bit values and one scale per tensor, sized so
that activations stay in range layer after layer; norm weights are ones. Plain Python: the
GPU machine has no `gguf` package and no network.
"""

import argparse
import random
import struct
import sys

# ggml type: (values per block, bytes per block)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 3: ("Q4_1", 32, 20), 8: ("Q8_0", 32, 34)}
# GGUF metadata value types: struct format of the fixed-size ones.
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self):
        length = self.take("Q")
        self.pos += length
        return self.data[self.pos - length : self.pos].decode()

    def value(self, kind):
        if kind in SCALARS:
            return self.take(SCALARS[kind])
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            item, count = self.take("I"), self.take("Q")
            return [self.value(item) for _ in range(count)]
        sys.exit(f"unknown GGUF value type {kind}")


def parse(data):
    """(metadata, tensors as (name, dims, type, offset), where tensor data starts)."""
    r = Reader(data)
    if data[:4] != b"GGUF":
        sys.exit("not a GGUF file")
    r.pos = 4
    version, tensors, entries = r.take("I"), r.take("Q"), r.take("Q")
    if version < 2:
        sys.exit(f"GGUF version {version} is not supported")
    metadata = {}
    for _ in range(entries):
        key = r.string()
        metadata[key] = r.value(r.take("I"))
    infos = []
    for _ in range(tensors):
        name = r.string()
        dims = [r.take("Q") for _ in range(r.take("I"))]
        infos.append((name, dims, r.take("I"), r.take("Q")))
    alignment = metadata.get("general.alignment", 32)
    start = (r.pos + alignment - 1) // alignment * alignment
    return metadata, infos, start


def header(args):
    data = open(args.src, "rb").read()
    _, infos, start = parse(data)
    open(args.dst, "wb").write(data[:start])
    print(f"{args.dst}: {start} bytes of header, {len(infos)} tensors")


def f16(value):
    return struct.pack("<e", value)


def random_tensor(rng, name, dims, kind):
    values = 1
    for d in dims:
        values *= d
    if kind not in TYPES:
        sys.exit(f"{name}: ggml type {kind} is not one this script writes")
    label, per_block, size = TYPES[kind]
    blocks = values // per_block
    if label in ("F32", "F16"):
        # Norm weights: ones, so each norm leaves unit root mean square.
        return (struct.pack("<f", 1.0) if label == "F32" else f16(1.0)) * values
    # A weight's spread about 1/sqrt(columns), so products stay about unit size.
    spread = dims[0] ** -0.5
    data = bytearray(rng.randbytes(blocks * size))
    if label == "Q4_1":
        # Uniform 4-bit q has standard deviation 4.6: w = d * q + m, centred.
        d = spread / 4.6
        for offset, byte in enumerate(f16(d) + f16(-7.5 * d)):
            data[offset::size] = bytes([byte]) * blocks
    else:
        # Uniform 8-bit q has standard deviation 74.
        for offset, byte in enumerate(f16(spread / 74)):
            data[offset::size] = bytes([byte]) * blocks
    return bytes(data)


def fill(args):
    data = open(args.header, "rb").read()
    _, infos, start = parse(data)
    rng = random.Random(args.seed)
    alignment = 32
    with open(args.dst, "wb") as out:
        out.write(data[:start])
        written = 0
        for name, dims, kind, offset in sorted(infos, key=lambda info: info[3]):
            if offset < written:
                sys.exit(f"{name}: tensors overlap")
            out.write(b"\0" * (offset - written))
            tensor = random_tensor(rng, name, dims, kind)
            out.write(tensor)
            written = offset + len(tensor)
        out.write(b"\0" * (-written % alignment))
    print(f"{args.dst}: {len(infos)} tensors of random weights (seed {args.seed})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("header")
    p.add_argument("src")
    p.add_argument("dst")
    p = commands.add_parser("fill")
    p.add_argument("header")
    p.add_argument("dst")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    {"header": header, "fill": fill}[args.command](args)


if __name__ == "__main__":
    main()
