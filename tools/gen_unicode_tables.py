"""Generate the C++ Unicode tables used by ``csrc/unicode.cpp``.

Usage: ``python gen_unicode_tables.py OUT.inc``

Everything is derived from the running interpreter (``str.lower``, ``str.isspace``,
``unicodedata.unidata_version``) so the native tokenizer matches the Python the
extension is built for, code point for code point.

Per code point we store one ``uint16``: bit 0 ``isspace``, bit 1 cased, bit 2
case-ignorable, bits 3.. an index into the lowercase mapping table (0 = maps to
itself). It lives in a two-stage table (block index, then deduplicated blocks).

"Cased" and "case-ignorable" are the properties CPython's ``handle_capital_sigma``
uses for the Final_Sigma rule of U+03A3; Python does not expose them, so they are
recovered by probing ``str.lower`` around a capital sigma (see ``_sigma_flags``).
"""

from __future__ import annotations

import string
import sys
import unicodedata

MAX_CP = 0x110000
SIGMA = "\u03a3"
FINAL, NONFINAL = "\u03c2", "\u03c3"
SPACE, CASED, IGNORABLE = 1, 2, 4
INDEX_SHIFT = 3
# Characters the MTLD tokenizer deletes or turns into separators; a lowercase mapping
# that produced one of them would need special handling in the C++ tokenizer.
TOKENIZER_SPECIAL = set(string.punctuation) | set("0123456789\u2013\u2014")


def _is_surrogate(cp: int) -> bool:
    return 0xD800 <= cp <= 0xDFFF


def _sigma_flags(ch: str) -> int:
    """Recover (case-ignorable, cased) of ``ch`` from three Final_Sigma probes.

    With ign/cased the properties of ``ch``:
    ``ch+Σ`` is final iff not ign and cased; ``A+ch+Σ`` iff ign or cased;
    ``AΣ+ch`` iff ign or not cased. For ignorable characters "cased" is never
    consulted by CPython, so it is left 0.
    """
    p1 = (ch + SIGMA).lower()[-1] == FINAL
    p2 = ("A" + ch + SIGMA).lower()[-1] == FINAL
    p3 = ("A" + SIGMA + ch).lower()[1] == FINAL
    if p2 and p3 and not p1:
        return IGNORABLE
    if p1 and p2 and not p3:
        return CASED
    if not p1 and not p2 and p3:
        return 0
    raise AssertionError(f"inconsistent Final_Sigma probes for U+{ord(ch):04X}: {p1, p2, p3}")


def _utf8_len(cp: int) -> int:
    return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4


def build():
    values = [0] * MAX_CP
    mappings: list[str] = []
    mapping_index: dict[str, int] = {}
    max_growth = 1
    for cp in range(MAX_CP):
        if _is_surrogate(cp):
            continue
        ch = chr(cp)
        v = _sigma_flags(ch)
        if ch.isspace():
            v |= SPACE
        low = ch.lower()
        if low != ch:
            # LexicalRichness lowercases twice (preprocess runs inside tokenize too);
            # one table suffices only while lower() is idempotent.
            if low.lower() != low:
                raise AssertionError(f"str.lower is not idempotent on U+{cp:04X}")
            if any(c in TOKENIZER_SPECIAL or c.isspace() or c == SIGMA for c in low):
                raise AssertionError(f"lower(U+{cp:04X}) = {low!r} contains a tokenizer-special character")
            if len(low) > 3:
                raise AssertionError(f"lower(U+{cp:04X}) longer than 3 code points")
            idx = mapping_index.get(low)
            if idx is None:
                mappings.append(low)
                idx = mapping_index[low] = len(mappings)
            v |= idx << INDEX_SHIFT
            max_growth = max(max_growth, -(-len(low.encode()) // _utf8_len(cp)))
        values[cp] = v
    if len(mappings) >= 1 << (16 - INDEX_SHIFT):
        raise AssertionError("too many lowercase mappings for a uint16 table")
    if SIGMA.lower() != NONFINAL or ("A" + SIGMA).lower()[-1] != FINAL:
        raise AssertionError("unexpected capital sigma behaviour")
    return values, mappings, max_growth


def two_stage(values, shift):
    block = 1 << shift
    blocks: dict[tuple, int] = {}
    stage1, stage2 = [], []
    for start in range(0, MAX_CP, block):
        key = tuple(values[start : start + block])
        idx = blocks.get(key)
        if idx is None:
            idx = blocks[key] = len(blocks)
            stage2.extend(key)
        stage1.append(idx)
    return stage1, stage2


def _c_array(ctype, name, items, per_line=24):
    lines = [f"const {ctype} {name}[{len(items)}] = {{"]
    for i in range(0, len(items), per_line):
        lines.append("  " + ",".join(str(x) for x in items[i : i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def render(values, mappings, max_growth) -> str:
    # Pick the block size with the smallest footprint (stage1 is uint16 if needed).
    best = None
    for shift in range(5, 10):
        s1, s2 = two_stage(values, shift)
        s1_bytes = len(s1) * (1 if max(s1) < 256 else 2)
        size = s1_bytes + 2 * len(s2)
        if best is None or size < best[0]:
            best = (size, shift, s1, s2)
    _, shift, s1, s2 = best
    s1_type = "uint8_t" if max(s1) < 256 else "uint16_t"

    map_rows = ["  {0, 0, {0, 0, 0}, {0}},  // index 0: identity"]
    for low in mappings:
        cps = [ord(c) for c in low] + [0] * (3 - len(low))
        enc = low.encode()
        map_rows.append(
            f"  {{{len(low)}, {len(enc)}, {{{', '.join(hex(c) for c in cps)}}}, {{{', '.join(hex(b) for b in enc)}}}}},"
        )
    return "\n".join(
        [
            "// Generated by tools/gen_unicode_tables.py from Python "
            f"{sys.version.split()[0]} (Unicode {unicodedata.unidata_version}). Do not edit.",
            "// Included by csrc/unicode.cpp only.",
            "namespace instructfast::unicode::tables {",
            f'const char kUnicodeVersion[] = "{unicodedata.unidata_version}";',
            f"const int kShift = {shift};",
            f"const int kMaxLowerUtf8Growth = {max_growth};",
            f"const {s1_type} kStage1[{len(s1)}] = {{",
            *("  " + ",".join(map(str, s1[i : i + 32])) + "," for i in range(0, len(s1), 32)),
            "};",
            _c_array("uint16_t", "kStage2", s2),
            f"const LowerMapping kLowerMappings[{len(mappings) + 1}] = {{",
            *map_rows,
            "};",
            "}  // namespace instructfast::unicode::tables",
            "",
        ]
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = render(*build())
    with open(argv[1], "w", encoding="ascii") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
