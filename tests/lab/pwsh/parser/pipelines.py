"""The grammar's pipelines: commands in command mode, their arguments and redirections."""

from __future__ import annotations

import re

from tests.lab.pwsh.parser.scanner import EOF, Node, NUM_RE, Scanner, WORD_END


class PipelineParser(Scanner):
    """Pipelines and command-mode arguments; expressions come from `ExpressionParser`."""

    # ---- pipelines -------------------------------------------------------------------------------
    def parse_pipeline(self) -> Node:
        pos = self.i
        first = self.parse_pipeline_element(first=True)
        # assignment: only after an expression element
        if first.k == "expr":
            self.skip_ws()
            m = re.compile(r"(=|\+=|-=|\*=|/=|%=)(?!=)").match(self.s, self.i)
            if m and not self.startswith("=="):
                target = first.expr
                if target.k == "array" and all(t.k == "var" for t in target.items) and m.group(1) == "=":
                    self.i = m.end()
                    self.skip_ws(newlines=True)
                    value = self.parse_statement()
                    return Node("multi_assign", pos, targets=target.items, value=value)
                if target.k not in ("var", "member", "index", "cast") or (
                        target.k == "cast" and target.operand.k != "var"):
                    raise self.err("InvalidLeftHandSide", "The assignment expression is not valid. The input to an "
                                   "assignment operator must be an object that is able to accept assignments, "
                                   "such as a variable or a property.")
                self.i = m.end()
                self.skip_ws(newlines=True)
                value = self.parse_statement()
                return Node("assign", pos, target=target, op=m.group(1), value=value)
        elements = [first]
        while True:
            self.skip_ws()
            if self.peek() == "|" and self.peek(1) != "|":
                self.i += 1
                self.skip_ws(newlines=True)
                if self.at_statement_end():
                    raise self.err("EmptyPipeElement", "An empty pipe element is not allowed.")
                elements.append(self.parse_pipeline_element(first=False))
                continue
            if self.peek() == "&" and self.peek(1) == "&" or self.startswith("||"):
                raise self.err("InvalidEndOfLine", "The token '&&' is not a valid statement separator in this version.")
            break
        node = Node("pipeline", pos, elements=elements)
        node.end = self.i
        return node

    def parse_redirections(self, redirs: list[tuple[str, str, Node | None]]) -> bool:
        m = re.compile(r"([1-6*]?)(>>|>)(&1)?").match(self.s, self.i)
        if not m:
            return False
        stream = m.group(1) or "1"
        if m.group(3):
            self.i = m.end()
            redirs.append((stream, "merge", None))
            return True
        self.i = m.end()
        self.skip_ws()
        target = self.parse_command_argument()
        redirs.append((stream, m.group(2), target))
        return True

    def parse_pipeline_element(self, first: bool) -> Node:
        pos = self.i
        c = self.peek()
        redirs: list[tuple[str, str, Node | None]] = []
        if c in ("&", ".") and (self.peek(1) in " \t$'\"({" or (c == "&" and self.peek(1).isalpha())):
            if c == "." and self.peek(1) not in " \t":
                pass
            else:
                self.i += 1
                self.skip_ws()
                return self.parse_command(pos, invoke=c)
        if self.expression_starts():
            expr = self.parse_expression()
            while True:
                self.skip_ws()
                if not self.parse_redirections(redirs):
                    break
            node = Node("expr", pos, expr=expr, redirs=redirs)
            node.end = self.i
            return node
        return self.parse_command(pos, invoke=None)

    def expression_starts(self) -> bool:
        c = self.peek()
        if c in "$'\"([@{,!+\u2018\u2019\u201c\u201d" or c.isdigit():
            return True
        if c == "." and self.peek(1).isdigit():
            return True
        if c == "-":
            nxt = self.peek(1)
            if nxt.isdigit() or nxt in "$(" or (nxt == "-" and self.peek(2) in "$"):
                return True
            word = re.compile(r"-([A-Za-z]+)").match(self.s, self.i)
            if word and word.group(1).lower() in ("not", "join", "split", "bnot"):
                return True
        return False

    def parse_command(self, pos: int, invoke: str | None) -> Node:
        if invoke:
            if self.peek() in "$'\"({":
                name: Node | str = self.parse_primary_with_postfix(command_mode=True)
            else:
                name = self.read_bare_word()
        else:
            name = self.read_bare_word()
            if not name:
                raise self.err("UnexpectedToken", f"Unexpected token '{self.rest_token()}' in expression or statement.")
        args: list[Node] = []
        redirs: list[tuple[str, str, Node | None]] = []
        while True:
            self.skip_ws()
            c = self.peek()
            if c in (EOF, "\n", ";", "|", ")", "}") or (c == "&" and self.peek(1) == "&"):
                break
            if self.parse_redirections(redirs):
                continue
            if c == "-" and (self.peek(1).isalpha() or self.peek(1) == "_") :
                m = re.compile(r"-([A-Za-z_][A-Za-z0-9_\-]*)(:)?").match(self.s, self.i)
                assert m
                self.i = m.end()
                if m.group(2):
                    self.skip_ws()
                    args.append(Node("param_arg", m.start(), name=m.group(1), value=self.parse_command_argument()))
                else:
                    args.append(Node("param_arg", m.start(), name=m.group(1), value=None))
                continue
            if c == "-" and self.peek(1) == "-" and self.peek(2) in (" ", "\t", "\n", EOF):
                self.i += 2
                continue
            if c == "@" and (self.peek(1).isalpha() or self.peek(1) == "_"):
                m = re.compile(r"@([A-Za-z0-9_]+)").match(self.s, self.i)
                assert m
                self.i = m.end()
                args.append(Node("splat", m.start(), name=m.group(1)))
                continue
            args.append(self.parse_command_argument())
        node = Node("command", pos, name=name, args=args, redirs=redirs, invoke=invoke)
        node.end = self.i
        return node

    def read_bare_word(self) -> str:
        start = self.i
        while self.i < self.n:
            c = self.s[self.i]
            if c in WORD_END:
                break
            if c == ">" or (c == "<" and self.peek(1) != "#"):
                break
            self.i += 1
        return self.s[start:self.i]

    def parse_command_argument(self) -> Node:
        """One argument in command mode; `a,b` makes an array."""
        pos = self.i
        items = [self.parse_command_atom()]
        while self.peek() == ",":
            self.i += 1
            self.skip_ws(newlines=True)
            items.append(self.parse_command_atom())
        if len(items) == 1:
            return items[0]
        return Node("array", pos, items=items)

    def parse_command_atom(self) -> Node:
        pos = self.i
        c = self.peek()
        if c in "$'\"(@{" or c in "\u2018\u2019\u201c\u201d":
            if c == "@" and self.peek(1) not in "({'\"":
                pass
            else:
                return self.parse_primary_with_postfix(command_mode=True)
        m = NUM_RE.match(self.s, self.i)
        if (c.isdigit() or (c == "-" and self.peek(1).isdigit()) or c == ".") and True:
            neg = c == "-"
            m = NUM_RE.match(self.s, self.i + (1 if neg else 0))
            if m and (m.end() >= self.n or self.s[m.end()] in WORD_END):
                self.i = m.end()
                value = self.number_value(m)
                return Node("const", pos, value=-value if neg else value)
        word_start = self.i
        parts: list[object] = []
        buf: list[str] = []
        while self.i < self.n:
            ch = self.s[self.i]
            if ch in " \t\n;|(){},&" or ch == ">" or ch == "\u00a0":
                break
            if ch == "`" and self.i + 1 < self.n:
                buf.append(self.s[self.i + 1])
                self.i += 2
                continue
            if ch == "$" and self.i + 1 < self.n and (self.s[self.i + 1].isalnum() or self.s[self.i + 1] in "_{(:"):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(self.parse_variable_or_subexpr())
                continue
            if ch in "'\"":
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(self.parse_string())
                continue
            buf.append(ch)
            self.i += 1
        if buf:
            parts.append("".join(buf))
        if self.i == word_start:
            raise self.err("UnexpectedToken", f"Unexpected token '{self.rest_token()}' in expression or statement.")
        if all(isinstance(p, str) for p in parts):
            return Node("const", pos, value="".join(parts), bare=True)
        return Node("expand", pos, parts=[p if isinstance(p, Node) else p for p in parts])
