"""The grammar's expressions: operators by precedence, primaries, variables, hashtables and strings."""

from __future__ import annotations

import re

from tests.lab.pwsh.parser.scanner import BITWISE_OPS, CASE_PREFIXED, COMPARISON_OPS, EOF, LOGICAL_OPS, Node, NUM_RE, Scanner, VAR_NAME_RE


class ExpressionParser(Scanner):
    """Expression mode, from the lowest-precedence operator down to literals and strings."""

    # ---- expressions -----------------------------------------------------------------------------
    def parse_expression(self) -> Node:
        self.enter()
        try:
            return self.parse_logical()
        finally:
            self.leave()

    def match_dash_op(self, ops: set[str]) -> str | None:
        self.skip_ws()
        if self.peek() != "-":
            return None
        m = re.compile(r"-([A-Za-z]+)").match(self.s, self.i)
        if not m:
            return None
        op = m.group(1).lower()
        if op in ops:
            end = m.end()
            if end < self.n and (self.s[end].isalnum() or self.s[end] == "_"):
                return None
            self.i = end
            self.skip_ws(newlines=True)
            return op
        return None

    def parse_logical(self) -> Node:
        left = self.parse_bitwise()
        while True:
            pos = self.i
            op = self.match_dash_op(LOGICAL_OPS)
            if not op:
                return left
            right = self.require(self.parse_bitwise, op)
            left = Node("binop", pos, op=op, left=left, right=right)

    def require(self, fn, op: str) -> Node:  # type: ignore[no-untyped-def]
        if self.at_statement_end() or self.peek() in (",",):
            raise self.err("ExpectedValueExpression", f"You must provide a value expression following the '-{op}' operator.")
        return fn()

    def parse_bitwise(self) -> Node:
        left = self.parse_comparison()
        while True:
            pos = self.i
            op = self.match_dash_op(BITWISE_OPS)
            if not op:
                return left
            left = Node("binop", pos, op=op, left=left, right=self.require(self.parse_comparison, op))

    def parse_comparison(self) -> Node:
        left = self.parse_additive()
        while True:
            pos = self.i
            op = self.match_dash_op(COMPARISON_OPS | CASE_PREFIXED)
            if not op:
                return left
            if op in ("is", "isnot", "as"):
                self.skip_ws()
                if self.peek() == "[":
                    right = Node("typelit", self.i, name=self.read_type_name())
                else:
                    right = self.require(self.parse_additive, op)
            else:
                right = self.require(self.parse_additive, op)
            left = Node("binop", pos, op=op, left=left, right=right)

    def parse_additive(self) -> Node:
        left = self.parse_multiplicative()
        while True:
            self.skip_ws()
            c = self.peek()
            if c in "+-" and self.peek(1) != "=" and not (c == "-" and self.peek(1).isalpha()) \
                    and not (c == self.peek(1)):
                pos = self.i
                self.i += 1
                self.skip_ws(newlines=True)
                right = self.require(self.parse_multiplicative, c)
                left = Node("binop", pos, op=c, left=left, right=right)
            else:
                return left

    def parse_multiplicative(self) -> Node:
        left = self.parse_format()
        while True:
            self.skip_ws()
            c = self.peek()
            if c in "*/%" and self.peek(1) != "=" and not (c == "*" and self.peek(1) == ">"):
                pos = self.i
                self.i += 1
                self.skip_ws(newlines=True)
                left = Node("binop", pos, op=c, left=left, right=self.require(self.parse_format, c))
            else:
                return left

    def parse_format(self) -> Node:
        left = self.parse_range()
        while True:
            pos = self.i
            op = self.match_dash_op({"f"})
            if not op:
                return left
            left = Node("binop", pos, op="f", left=left, right=self.require(self.parse_range, "f"))

    def parse_range(self) -> Node:
        left = self.parse_array_literal()
        self.skip_ws()
        if self.startswith(".."):
            pos = self.i
            self.i += 2
            self.skip_ws(newlines=True)
            return Node("range", pos, left=left, right=self.parse_array_literal())
        return left

    def parse_array_literal(self) -> Node:
        pos = self.i
        first = self.parse_unary()
        if self.no_comma:
            return first
        items = [first]
        while True:
            save = self.i
            self.skip_ws()
            if self.peek() == ",":
                self.i += 1
                self.skip_ws(newlines=True)
                items.append(self.require(self.parse_unary, ","))
            else:
                self.i = save
                break
        if len(items) == 1:
            return first
        return Node("array", pos, items=items)

    def parse_unary(self) -> Node:
        self.skip_ws()
        pos = self.i
        c = self.peek()
        if c == "!":
            self.i += 1
            self.skip_ws(newlines=True)
            return Node("not", pos, operand=self.parse_unary())
        if c == ",":
            self.i += 1
            self.skip_ws(newlines=True)
            return Node("unary_comma", pos, operand=self.parse_unary())
        if c == "-" and self.peek(1) == "-" and self.peek(2) == "$":
            self.i += 2
            return Node("incdec", pos, target=self.parse_primary_with_postfix(), op="-", prefix=True)
        if c == "+" and self.peek(1) == "+" and self.peek(2) == "$":
            self.i += 2
            return Node("incdec", pos, target=self.parse_primary_with_postfix(), op="+", prefix=True)
        if c == "-":
            m = re.compile(r"-(not|join|split|bnot)(?![A-Za-z0-9_])", re.I).match(self.s, self.i)
            if m:
                self.i = m.end()
                self.skip_ws(newlines=True)
                op = m.group(1).lower()
                return Node("not" if op == "not" else "unop", pos, op=op, operand=self.parse_unary())
            if not self.peek(1).isalpha():
                self.i += 1
                self.skip_ws()
                return Node("neg", pos, operand=self.parse_unary())
        if c == "+" and not self.peek(1).isalpha():
            self.i += 1
            self.skip_ws()
            return Node("pos", pos, operand=self.parse_unary())
        if c == "[":
            save = self.i
            tname = self.read_type_name()
            if self.startswith("::"):
                self.i = save
                return self.parse_primary_with_postfix()
            nxt = self.peek()
            if nxt != EOF and nxt not in " \t\n;)}|,=.]" and not (nxt == "-" and self.peek(1).isalpha()) \
                    or (nxt == "-" and self.peek(1).isdigit()):
                operand = self.parse_unary()
                return Node("cast", pos, type=tname, operand=operand)
            if nxt in " \t":  # `[type] $x`: a cast may be separated from its operand by blanks
                after = self.i
                while self.peek() in " \t":
                    self.i += 1
                c2 = self.peek()
                if c2 in "$'\"(@[{" or c2.isdigit() or (c2 == "-" and self.peek(1).isdigit()):
                    operand = self.parse_unary()
                    return Node("cast", pos, type=tname, operand=operand)
                self.i = after
            self.i = save
            return self.parse_primary_with_postfix()
        node = self.parse_primary_with_postfix()
        if self.startswith("++") or self.startswith("--"):
            op = self.peek()
            self.i += 2
            return Node("incdec", pos, target=node, op=op, prefix=False)
        return node

    def parse_primary_with_postfix(self, command_mode: bool = False) -> Node:
        node = self.parse_primary()
        while True:
            c = self.peek()
            pos = self.i
            if c == "." and not self.startswith("..") or self.startswith("::"):
                static = self.startswith("::")
                self.i += 2 if static else 1
                if self.peek() in "'\"":
                    name: object = self.parse_string()
                elif self.peek() == "$":
                    name = self.parse_variable()
                else:
                    m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(self.s, self.i)
                    if not m:
                        if command_mode:
                            self.i = pos
                            return node
                        raise self.err("MissingPropertyName", "Missing property name after reference operator.")
                    name = m.group(0)
                    self.i = m.end()
                if self.peek() == "(":
                    args = self.parse_call_args()
                    node = Node("call", pos, obj=node, name=name, args=args, static=static)
                else:
                    node = Node("member", pos, obj=node, name=name, static=static)
                continue
            if c == "[" and node.k not in ("typelit",):
                self.i += 1
                self.skip_ws(newlines=True)
                idx = self.parse_expression()
                self.skip_ws(newlines=True)
                self.expect("]", "MissingEndSquareBracket", "Array index expression is missing or not valid.")
                node = Node("index", pos, obj=node, index=idx)
                continue
            return node

    def parse_call_args(self) -> list[Node]:
        self.i += 1
        args: list[Node] = []
        self.skip_ws(newlines=True)
        if self.peek() == ")":
            self.i += 1
            return args
        while True:
            self.skip_ws(newlines=True)
            args.append(self.parse_logical_no_comma())
            self.skip_ws(newlines=True)
            if self.peek() == ",":
                self.i += 1
                continue
            self.expect(")", "MissingEndParenthesisInMethodCall", "Missing closing ')' in method call.")
            return args

    def parse_logical_no_comma(self) -> Node:
        """An expression where ',' separates arguments (method calls, attributes, defaults)."""
        saved, self.no_comma = self.no_comma, True
        try:
            return self.parse_expression()
        finally:
            self.no_comma = saved

    def nested(self, fn):  # type: ignore[no-untyped-def]
        """Runs fn with ',' building arrays again (inside (), @(), $(), {} and @{})."""
        saved, self.no_comma = self.no_comma, False
        try:
            return fn()
        finally:
            self.no_comma = saved

    def parse_primary(self) -> Node:
        return self.nested(self._parse_primary)

    def _parse_primary(self) -> Node:
        pos = self.i
        c = self.peek()
        if c == "$":
            if self.peek(1) == "(":
                self.i += 2
                body = self.parse_statements(stop=")")
                self.skip_ws(newlines=True)
                self.expect(")", "MissingEndParenthesisInSubexpression", "Missing closing ')' in subexpression.")
                return Node("subexpr", pos, body=body)
            return self.parse_variable()
        if c == "@":
            nxt = self.peek(1)
            if nxt == "(":
                self.i += 2
                body = self.parse_statements(stop=")")
                self.skip_ws(newlines=True)
                self.expect(")", "MissingEndParenthesisInSubexpression", "Missing closing ')' in array expression.")
                return Node("arrayexpr", pos, body=body)
            if nxt == "{":
                return self.parse_hashtable()
            if nxt in "'\"":
                return self.parse_here_string()
            raise self.err("UnexpectedToken", "Unrecognized token in source text.")
        if c in "'\"\u2018\u2019\u201c\u201d":
            return self.parse_string()
        if c == "(":
            self.i += 1
            self.skip_ws(newlines=True)
            if self.peek() == ")":
                raise self.err("ExpectedExpression", "An expression was expected after '('.")
            inner = self.parse_pipeline()
            self.skip_ws(newlines=True)
            self.expect(")", "MissingEndParenthesisInExpression", "Missing closing ')' in expression.")
            return Node("paren", pos, pipeline=inner)
        if c == "{":
            start = self.i
            self.i += 1
            self.enter()
            body = self.parse_block_body()
            self.skip_terminators()
            if self.peek() != "}":
                raise self.err("MissingEndCurlyBrace", "Missing closing '}' in statement block or type definition.",
                               start)
            self.i += 1
            self.leave()
            body.a["text"] = self.s[start + 1:self.i - 1]
            return Node("scriptblock", pos, body=body)
        if c == "[":
            name = self.read_type_name()
            return Node("typelit", pos, name=name)
        if c.isdigit() or c == ".":
            m = NUM_RE.match(self.s, self.i)
            if m:
                self.i = m.end()
                return Node("const", pos, value=self.number_value(m))
        if c == EOF:
            raise self.err("ExpectedExpression", "An expression was expected.")
        raise self.err("UnexpectedToken", f"Unexpected token '{self.rest_token()}' in expression or statement.")

    @staticmethod
    def number_value(m: re.Match[str]) -> int | float:
        text, suffix, mult = m.group(1), m.group(2).lower(), (m.group(3) or "").lower()
        if text.lower().startswith("0x"):
            value: int | float = int(text, 16)
        elif re.fullmatch(r"\d+", text):
            value = int(text)
        else:
            value = float(text)
        if mult:
            value = value * 1024 ** ("kmgtp".index(mult[0]) + 1)
        if suffix == "d":
            value = float(value)
        return value

    def parse_variable(self) -> Node:
        pos = self.i
        self.i += 1  # $
        if self.peek() == "{":
            end = self.s.find("}", self.i)
            if end < 0:
                raise self.err("IncompleteDollarVariableReference", "Variable reference is not valid.")
            name = self.s[self.i + 1:end]
            self.i = end + 1
            scope = None
            if ":" in name:
                scope, name = name.split(":", 1)
            return Node("var", pos, name=name, scope=(scope or "").lower() or None)
        if self.peek() in "$^?_" and not (self.peek() == "_" and (self.peek(1).isalnum() or self.peek(1) == "_")):
            name = self.peek()
            self.i += 1
            return Node("var", pos, name=name, scope=None)
        m = VAR_NAME_RE.match(self.s, self.i)
        if not m:
            raise self.err("InvalidVariableReference",
                           "Variable reference is not valid. '$' was not followed by a valid variable name character.")
        scope = (m.group(1) or "").lower() or None
        name = m.group(2)
        self.i = m.end()
        return Node("var", pos, name=name, scope=scope)

    def parse_variable_or_subexpr(self) -> Node:
        if self.peek(1) == "(":
            return self.parse_primary()
        return self.parse_variable()

    def parse_hashtable(self) -> Node:
        pos = self.i
        self.i += 2
        entries: list[tuple[Node, Node]] = []
        while True:
            self.skip_terminators()
            if self.peek() == "}":
                self.i += 1
                return Node("hashtable", pos, entries=entries)
            if self.peek() in "'\"":
                key: Node = self.parse_string()
            elif self.peek() == "$" or self.peek() == "(":
                key = self.parse_primary_with_postfix()
            else:
                m = re.compile(r"[^\s=;}]+").match(self.s, self.i)
                if not m:
                    raise self.err("MissingEndCurlyBrace", "Missing closing '}' in hash literal.", pos)
                text = m.group(0)
                self.i = m.end()
                key = Node("const", m.start(), value=int(text) if text.isdigit() else text)
            self.skip_ws()
            self.expect("=", "MissingEqualsInHashLiteral", "Missing '=' operator after key in hash literal.")
            self.skip_ws(newlines=True)
            value = self.parse_statement()
            entries.append((key, value))
            self.skip_ws()
            if self.peek() not in ";\n}":
                raise self.err("MissingEndCurlyBrace", "Missing closing '}' in hash literal.", pos)

    # ---- strings ---------------------------------------------------------------------------------
    def parse_string(self) -> Node:
        pos = self.i
        q = self.peek()
        if q in "'\u2018\u2019":
            self.i += 1
            buf: list[str] = []
            while True:
                if self.i >= self.n:
                    raise self.err("TerminatorExpectedAtEndOfString", "The string is missing the terminator: '.", pos)
                ch = self.s[self.i]
                if ch in "'\u2018\u2019":
                    if self.peek(1) in "'\u2018\u2019" and self.peek(1):
                        buf.append("'")
                        self.i += 2
                        continue
                    self.i += 1
                    break
                buf.append(ch)
                self.i += 1
            return Node("const", pos, value="".join(buf))
        self.i += 1
        return self.parse_expandable(pos, terminator='"')

    def parse_expandable(self, pos: int, terminator: str) -> Node:
        parts: list[object] = []
        buf: list[str] = []
        escapes = {"0": "\0", "a": "\a", "b": "\b", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v"}
        here = terminator == '\n"@'
        while True:
            if self.i >= self.n:
                raise self.err("TerminatorExpectedAtEndOfString",
                               f"The string is missing the terminator: {terminator.strip()}.", pos)
            ch = self.s[self.i]
            if here and self.startswith('\n"@'):
                self.i += 3
                break
            if not here and ch in '"\u201c\u201d':
                if self.peek(1) in '"\u201c\u201d' and self.peek(1):
                    buf.append('"')
                    self.i += 2
                    continue
                self.i += 1
                break
            if ch == "`" and self.i + 1 < self.n:
                nxt = self.s[self.i + 1]
                if nxt == "u" and self.peek(2) == "{":
                    end = self.s.find("}", self.i + 3)
                    buf.append(chr(int(self.s[self.i + 3:end], 16)))
                    self.i = end + 1
                    continue
                buf.append(escapes.get(nxt, nxt))
                self.i += 2
                continue
            if ch == "$" and self.i + 1 < self.n and (self.s[self.i + 1].isalnum() or self.s[self.i + 1] in "_{(?$^"):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                if self.peek(1) == "(":
                    parts.append(self.parse_primary())
                else:
                    var = self.parse_variable()
                    parts.append(var)
                continue
            buf.append(ch)
            self.i += 1
        if buf:
            parts.append("".join(buf))
        if all(isinstance(p, str) for p in parts):
            return Node("const", pos, value="".join(parts))  # type: ignore[arg-type]
        return Node("expand", pos, parts=parts)

    def parse_here_string(self) -> Node:
        pos = self.i
        q = self.peek(1)
        self.i += 2
        while self.peek() in " \t":
            self.i += 1
        if self.peek() != "\n":
            raise self.err("UnexpectedCharactersAfterHereStringHeader",
                           "No characters are allowed after a here-string header but before the end of the line.")
        self.i += 1
        if q == "'":
            end = self.s.find("\n'@", self.i - 1)
            if end < 0:
                raise self.err("TerminatorExpectedAtEndOfString", "The string is missing the terminator: '@.", pos)
            text = self.s[self.i:end] if end >= self.i else ""
            self.i = end + 3
            return Node("const", pos, value=text)
        if self.startswith('"@'):
            self.i += 2
            return Node("const", pos, value="")
        self.i -= 1
        if self.startswith('\n"@'):
            self.i += 3
            return Node("const", pos, value="")
        self.i += 1
        return self.parse_expandable(pos, terminator='\n"@')
