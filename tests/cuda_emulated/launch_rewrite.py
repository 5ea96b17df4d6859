#!/usr/bin/env python3
"""Copies CUDA sources into a build directory, rewritten for the emulator (emu.h).

    launch_rewrite.py OUT_DIR SOURCE...

Each launch statement `kernel<...><<<grid, block[, smem[, stream]]>>>(args);` becomes

    ::emu::launch(::emu::Site{"kernel<...>", __FILE__, __LINE__, (long)(BOUNDS)}, dim3(grid),
                  dim3(block), (size_t)(smem), (cudaStream_t)(stream),
                  [&](const auto&... emu_a_) { kernel<...>(emu_a_...); }, args);

where BOUNDS is the kernel's __launch_bounds__ expression when the kernel is defined in the same
file (0 otherwise). Each `__shared__` declaration also tells the emulator where the variable is,
so that it can fill it with 0xCD bytes before every block (see rewrite_shared). Each output starts
with `#include "emu.h"` and a #line directive naming the original file, and the rewrite keeps
the line count, so compiler messages and the emulator's reports point at the real source lines.
Nothing else is changed. Refuses to write over a source.

Anything that looks like a launch but does not parse (no kernel name before `<<<`, no `>>>`, a
configuration of other than 2 to 4 parts, no argument list, no `;` after it), or a __shared__
declaration of more than one variable or with an initializer, is an error naming the file, the
line and the text, exit status 2: nothing is skipped silently.
"""
import os
import re
import sys


class RewriteError(Exception):
    pass


def code_mask(src):
    """A list of booleans: True where src[i] is code (not inside a comment, string or char)."""
    mask = [True] * len(src)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                mask[k] = False
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                mask[k] = False
            i = j
        elif c == 'R' and src.startswith('R"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'R"([^(\s]{0,16})\(', src[i:])
            if not m:
                raise RewriteError(f"unparsed raw string at offset {i}")
            end = src.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            for k in range(i, j):
                mask[k] = False
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and src[i - 1].isalnum():  # digit separator: 1'000'000
                i += 1
                continue
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            j = min(n, j + 1)
            for k in range(i, j):
                mask[k] = False
            i = j
        else:
            i += 1
    return mask


def line_of(src, pos):
    return src.count("\n", 0, pos) + 1


def skip_ws(src, i, step=1):
    while 0 <= i < len(src) and src[i].isspace():
        i += step
    return i


def match_forward(src, mask, i, open_ch, close_ch):
    """Index of the bracket closing the one at src[i], counting (), [] and {} alike."""
    depth = 0
    opens, closes = "([{", ")]}"
    j = i
    while j < len(src):
        if mask[j]:
            if src[j] in opens:
                depth += 1
            elif src[j] in closes:
                depth -= 1
                if depth == 0:
                    if src[j] != close_ch:
                        raise RewriteError(f"unbalanced brackets: {src[j]!r} closes {open_ch!r}")
                    return j
        j += 1
    raise RewriteError(f"no {close_ch!r} closing the {open_ch!r}")


def split_top_level(text):
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def kernel_name_before(src, mask, j):
    """(start, callee text, base identifier) of the kernel expression that ends just before j."""
    k = skip_ws(src, j - 1, -1)
    end = k + 1
    if k >= 0 and src[k] == ">":  # explicit template arguments: walk back to the matching '<'
        depth = 0
        while k >= 0:
            if mask[k]:
                if src[k] == ">":
                    depth += 1
                elif src[k] == "<":
                    depth -= 1
                    if depth == 0:
                        break
                elif src[k] in ";{}":
                    raise RewriteError("no '<' opening the kernel's template arguments")
            k -= 1
        if k < 0:
            raise RewriteError("no '<' opening the kernel's template arguments")
        k = skip_ws(src, k - 1, -1)
    # identifier, possibly qualified (ns::name, ::name)
    m = k
    while m >= 0 and (src[m].isalnum() or src[m] in "_:"):
        m -= 1
    start = m + 1
    callee = src[start:end]
    name = re.match(r"(?:::)?(?:[A-Za-z_]\w*::)*([A-Za-z_]\w*)\s*(<|$)", callee)
    if not name:
        raise RewriteError("no kernel name before '<<<'")
    return start, " ".join(callee.split()), name.group(1)


def launch_bounds(src):
    """{kernel name: first __launch_bounds__ argument} for the kernels defined in src."""
    bounds = {}
    for m in re.finditer(r"__global__\s+(?:void\s+)?__launch_bounds__\s*\(", src):
        j = m.end() - 1
        depth, k = 0, j
        while k < len(src):
            if src[k] == "(":
                depth += 1
            elif src[k] == ")":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        args = split_top_level(src[j + 1:k])
        name = re.match(r"\s*(?:void\s+)?(\w+)\s*\(", src[k + 1:])
        if name:
            bounds[name.group(1)] = args[0].strip()
    return bounds


SHARED_DECL = re.compile(r"^(?P<type>.*?\S)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$", re.S)


def rewrite_shared(src, path):
    """Rewrites each `__shared__ TYPE NAME[DIMS];` so the emulator can poison it before every block.

    Becomes `static TYPE NAME[DIMS]; [[maybe_unused]] const bool emu_shared_NAME =
    ::emu::touch_shared(&NAME, sizeof(NAME));`: in a function the second declaration runs on every
    pass and tells the emulator which variables the running kernel uses; at namespace scope it
    runs once at start-up and registers the variable for every block. `extern __shared__ T x[];`
    (dynamic shared memory) becomes a pointer to the emulator's buffer of the launch's bytes.
    """
    mask = code_mask(src)
    out, i, count = [], 0, 0
    for m in re.finditer(r"\b__shared__\b", src):
        j = m.start()
        if not mask[j] or j < i:
            continue
        line = line_of(src, j)
        k = j
        while k < len(src) and not (mask[k] and src[k] == ";"):
            if mask[k] and src[k] in "{}=,(":
                if src[k] == "(" and re.search(r"__align__\s*$|alignas\s*$|__attribute__\s*$|__attribute__\s*\($", src[j:k]):
                    k = match_forward(src, mask, k, "(", ")") + 1
                    continue
                raise RewriteError(f"{path}:{line}: cannot parse __shared__ declaration "
                                   f"(one variable without initializer per declaration, please): "
                                   f"{src[j:k + 1].strip()!r}")
            k += 1
        decl = src[m.end():k]
        ext = re.search(r"\bextern\s*$", src[max(0, j - 40):j])
        start = j - len(ext.group(0)) if ext else j
        d = SHARED_DECL.match(decl.strip())
        if not d or d.group("type").strip() in ("", "extern", "static"):
            raise RewriteError(f"{path}:{line}: cannot parse __shared__ declaration {decl.strip()!r}")
        name, typ, dims = d.group("name"), d.group("type"), d.group("dims").strip()
        if ext:
            if dims.replace(" ", "") != "[]":
                raise RewriteError(f"{path}:{line}: extern __shared__ must be an array of unknown size")
            rep = (f"static {typ}* const {name} = reinterpret_cast<{typ}*>(::emu::dynamic_shared())")
        else:
            rep = (f"static {typ} {name}{dims}; [[maybe_unused]] const bool emu_shared_{name} = "
                   f"::emu::touch_shared(&{name}, sizeof({name}))")
        rep = " ".join(rep.split())
        out.append(src[i:start])
        out.append(rep + "\n" * src[start:k].count("\n"))
        i = k
        count += 1
    out.append(src[i:])
    return "".join(out), count


def rewrite(src, path):
    """The rewritten text and the number of launches."""
    mask = code_mask(src)
    bounds = launch_bounds(src)
    out, i, count = [], 0, 0
    while True:
        j = src.find("<<<", i)
        while j >= 0 and not mask[j]:
            j = src.find("<<<", j + 3)
        if j < 0:
            out.append(src[i:])
            break
        line = line_of(src, j)
        snippet = src[max(0, j - 60):j + 60].replace("\n", " ")
        try:
            start, callee, base = kernel_name_before(src, mask, j)
            if start < i:
                raise RewriteError("kernel name overlaps the previous launch")
            e = src.find(">>>", j + 3)
            while e >= 0 and not mask[e]:
                e = src.find(">>>", e + 3)
            if e < 0:
                raise RewriteError("no '>>>' closing the launch configuration")
            cfg = split_top_level(src[j + 3:e])
            if not 2 <= len(cfg) <= 4 or any(not p.strip() for p in cfg):
                raise RewriteError(f"launch configuration has {len(cfg)} parts, expected 2 to 4 "
                                   "(grid, block[, shared bytes[, stream]])")
            cfg = [p.strip() for p in cfg] + ["0", "0"][: 4 - len(cfg)]
            a0 = skip_ws(src, e + 3)
            if a0 >= len(src) or src[a0] != "(":
                raise RewriteError("no argument list after '>>>'")
            a1 = match_forward(src, mask, a0, "(", ")")
            semi = skip_ws(src, a1 + 1)
            if semi >= len(src) or src[semi] != ";":
                raise RewriteError("the launch is not a statement of its own (no ';' after it)")
        except RewriteError as err:
            raise RewriteError(f"{path}:{line}: cannot parse kernel launch: {err}\n    near: {snippet}")
        args = src[a0 + 1:a1]
        bound = bounds.get(base, "0")
        kernel_str = callee.replace("\\", "\\\\").replace('"', '\\"')
        # Parenthesized so a '<'/'>' or comma in an expression cannot confuse the call.
        rep = (f'::emu::launch(::emu::Site{{"{kernel_str}", __FILE__, __LINE__, (long)({bound})}}, '
               f"dim3({cfg[0]}), dim3({cfg[1]}), (size_t)({cfg[2]}), (cudaStream_t)({cfg[3]}), "
               f"[&](const auto&... emu_a_) {{ {callee}(emu_a_...); }}"
               + (f", {args})" if args.strip() else ")"))
        missing = src[start:a1 + 1].count("\n") - rep.count("\n")
        if missing < 0:
            raise RewriteError(f"{path}:{line}: internal: the rewrite of the launch adds lines")
        out.append(src[i:start])
        out.append(rep + "\n" * missing)
        i = a1 + 1
        count += 1
    text = "".join(out)
    mask2 = code_mask(text)
    for tok in ("<<<", ">>>"):
        k = text.find(tok)
        while k >= 0:
            if mask2[k]:
                raise RewriteError(f"{path}:{line_of(text, k)}: '{tok}' left after the rewrite")
            k = text.find(tok, k + 3)
    return text, count


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir, sources = argv[1], argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    for path in sources:
        real = os.path.abspath(path)
        dest = os.path.join(out_dir, os.path.basename(path))
        if os.path.exists(dest) and os.path.samefile(dest, real):
            print(f"launch_rewrite: refusing to overwrite the source {path}", file=sys.stderr)
            return 2
        with open(real, encoding="utf-8") as f:
            src = f.read()
        try:
            text, count = rewrite(src, path)
            text, n_shared = rewrite_shared(text, path)
        except RewriteError as err:
            print(f"launch_rewrite: {err}", file=sys.stderr)
            return 2
        header = f'#include "emu.h"\n#line 1 "{real}"\n'
        with open(dest, "w", encoding="utf-8") as f:
            f.write(header + text)
        print(f"launch_rewrite: {path}: {count} launch{'es' if count != 1 else ''}, "
              f"{n_shared} __shared__ variable{'s' if n_shared != 1 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
