"""Windows command lines split as CommandLineToArgvW splits them (what a child process sees as its argv).

The program name is read by its own rule: it ends at the first blank, or at its closing quote when it
starts with one, with no escapes. The arguments after it follow the C runtime's rules ("Parsing C++
command-line arguments", Microsoft C++ documentation): 2n backslashes and a quote give n backslashes and
a quote that opens or closes quoting, 2n+1 backslashes and a quote give n backslashes and a literal
quote, other backslashes are literal, and `""` inside quotes is a literal quote.
"""

from __future__ import annotations

_BLANKS = " \t"


def split_program(line: str) -> tuple[str, str]:
    """(program, what follows it without the blanks between) of a command line."""
    if line.startswith('"'):
        end = line.find('"', 1)
        if end < 0:
            return line[1:], ""
        return line[1:end], line[end + 1:].lstrip(_BLANKS)
    cut = next((i for i, c in enumerate(line) if c in _BLANKS), len(line))
    return line[:cut], line[cut:].lstrip(_BLANKS)


def split_tail(text: str) -> list[str]:
    """The arguments in what follows a command line's program name."""
    args: list[str] = []
    cur: list[str] = []
    in_quotes = False
    have = False  # a quoted empty argument ("") still counts as one
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            j = i
            while j < n and text[j] == "\\":
                j += 1
            count = j - i
            if j < n and text[j] == '"':
                cur.append("\\" * (count // 2))
                if count % 2:
                    cur.append('"')
                    i = j + 1
                else:
                    i = j
            else:
                cur.append("\\" * count)
                i = j
            have = True
            continue
        if c == '"':
            if in_quotes and i + 1 < n and text[i + 1] == '"':
                cur.append('"')
                i += 2
                continue
            in_quotes = not in_quotes
            have = True
            i += 1
            continue
        if c in _BLANKS and not in_quotes:
            if have:
                args.append("".join(cur))
                cur, have = [], False
            i += 1
            continue
        cur.append(c)
        have = True
        i += 1
    if have:
        args.append("".join(cur))
    return args


def command_line_to_argv(line: str) -> list[str]:
    """A whole command line, program name first (CommandLineToArgvW of a non-empty line)."""
    program, rest = split_program(line)
    return [program, *split_tail(rest)]
