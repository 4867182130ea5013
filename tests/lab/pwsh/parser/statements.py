"""The grammar's statements: script and block structure, param blocks, attributes, if/loops/switch/try/function."""

from __future__ import annotations

import re

from tests.lab.pwsh.parser.scanner import EOF, KEYWORDS_UNSUPPORTED, Node, Scanner, SIMPLE_NAME_RE, VAR_NAME_RE


_BLOCK_STATEMENTS = {"if", "foreach", "for", "while", "do", "switch", "try", "function"}


class StatementParser(Scanner):
    """Scripts, blocks and statements; pipelines and expressions come from the other parts of `Parser`."""

    # ---- script structure ------------------------------------------------------------------------
    def parse_script(self) -> Node:
        node = self.parse_block_body(top=True)
        self.skip_terminators()
        if self.i < self.n:
            c = self.peek()
            if c == "}":
                raise self.err("UnexpectedToken", "Unexpected token '}' in expression or statement.")
            if c == ")":
                raise self.err("UnexpectedToken", "Unexpected token ')' in expression or statement.")
            raise self.err("UnexpectedToken", f"Unexpected token '{c}' in expression or statement.")
        return node

    def parse_block_body(self, top: bool = False) -> Node:
        """A script or scriptblock body: [using] [attributes] [param(...)] then named blocks or statements."""
        pos = self.i
        usings: list[str] = []
        while True:
            self.skip_terminators()
            save = self.i
            if top and self.keyword("using"):
                self.skip_ws()
                if not self.keyword("namespace"):
                    raise self.err("UsingStatementNotSupported", "Only 'using namespace' is supported.")
                self.skip_ws()
                m = re.compile(r"[A-Za-z0-9_.]+").match(self.s, self.i)
                if not m:
                    raise self.err("MissingNamespaceName", "Missing namespace name after 'using namespace'.")
                usings.append(m.group(0))
                self.i = m.end()
                continue
            self.i = save
            break
        attrs = []
        save = self.i
        while self.peek() == "[":
            attr = self.try_attribute()
            if attr is None:
                break
            attrs.append(attr)
            self.skip_terminators()
        params = None
        if self.keyword("param"):
            self.skip_ws(newlines=True)
            params = self.parse_param_list()
        else:
            self.i = save
            attrs = []
        self.skip_terminators()
        blocks: dict[str, Node] = {}
        save = self.i
        while True:
            self.skip_terminators()
            word = self.word_at().lower()
            if word in ("begin", "process", "end") and not blocks.get(word):
                j = self.i
                self.i += len(word)
                self.skip_ws(newlines=True)
                if self.peek() == "{":
                    blocks[word] = self.parse_braced_statements()
                    continue
                self.i = j
            break
        if not blocks:
            self.i = save
            blocks["end"] = self.parse_statements(stop="}" if not top else "")
        node = Node("body", pos, usings=usings, attrs=attrs, params=params, blocks=blocks)
        return node

    def try_attribute(self) -> Node | None:
        """Parses `[Name(...)]` (an attribute); returns None and rewinds for a type literal."""
        save = self.i
        self.i += 1
        m = SIMPLE_NAME_RE.match(self.s, self.i)
        if not m:
            self.i = save
            return None
        name = m.group(0)
        self.i = m.end()
        if self.peek() != "(":
            self.i = save
            return None
        self.i += 1
        args: list[Node] = []
        named: dict[str, Node | None] = {}
        while True:
            self.skip_ws(newlines=True)
            if self.peek() == ")":
                self.i += 1
                break
            m2 = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=)?").match(self.s, self.i)
            if m2 and (m2.group(2) or self.s[m2.end():m2.end() + 1] in (",", ")", "\n", " ")) \
                    and not self.s[self.i].isdigit():
                key = m2.group(1)
                self.i = m2.end()
                if m2.group(2):
                    self.skip_ws(newlines=True)
                    named[key.lower()] = self.parse_logical_no_comma()
                else:
                    named[key.lower()] = None
            else:
                args.append(self.parse_logical_no_comma())
            self.skip_ws(newlines=True)
            if self.peek() == ",":
                self.i += 1
                continue
            self.expect(")", "MissingEndParenthesisInExpression", "Missing ')' in attribute.")
            break
        self.skip_ws()
        self.expect("]", "EndSquareBracketExpectedAtEndOfAttribute", "Missing ']' at end of attribute.")
        return Node("attr", save, name=name.lower(), args=args, named=named)

    def parse_param_list(self) -> list[Node]:
        self.expect("(", "ParamBlockMissingParenthesis", "Missing '(' after 'param'.")
        params: list[Node] = []
        while True:
            self.skip_ws(newlines=True)
            if self.peek() == ")":
                self.i += 1
                return params
            pos = self.i
            attrs: list[Node] = []
            types: list[str] = []
            while self.peek() == "[":
                attr = self.try_attribute()
                if attr is not None:
                    attrs.append(attr)
                else:
                    types.append(self.read_type_name())
                self.skip_ws(newlines=True)
            if self.peek() != "$":
                raise self.err("InvalidFunctionParameter", "Missing parameter variable name in param block.")
            self.i += 1
            m = VAR_NAME_RE.match(self.s, self.i)
            if not m:
                raise self.err("InvalidVariableReference", "Invalid variable reference in param block.")
            name = m.group(2)
            self.i = m.end()
            self.skip_ws(newlines=True)
            default = None
            if self.peek() == "=":
                self.i += 1
                self.skip_ws(newlines=True)
                default = self.parse_logical_no_comma()
                self.skip_ws(newlines=True)
            params.append(Node("param", pos, name=name, attrs=attrs, type=types[-1] if types else None,
                               default=default))
            if self.peek() == ",":
                self.i += 1
                continue
            self.skip_ws(newlines=True)
            if self.peek() != ")":
                raise self.err("MissingEndParenthesisInFunctionParameterList",
                               "Missing ')' in function parameter list.")

    def read_type_name(self) -> str:
        """Reads `[Type.Name[]]` (cursor on '['), returns the text inside the outer brackets."""
        start = self.i
        self.i += 1
        depth = 1
        while self.i < self.n and depth:
            c = self.s[self.i]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif c == "\n":
                break
            self.i += 1
        if depth:
            raise self.err("EndSquareBracketExpectedAtEndOfType", "Missing ] at end of type token.", start)
        return self.s[start + 1:self.i - 1].strip()

    def parse_braced_statements(self) -> Node:
        self.expect("{", "MissingOpenBrace", "Missing opening '{'.")
        start = self.i - 1
        self.enter()
        body = self.parse_statements(stop="}")
        self.skip_terminators()
        if self.peek() != "}":
            raise self.err("MissingEndCurlyBrace", "Missing closing '}' in statement block or type definition.",
                           start)
        self.i += 1
        self.leave()
        return body

    def parse_statements(self, stop: str) -> Node:
        pos = self.i
        stmts: list[Node] = []
        while True:
            self.skip_terminators()
            if self.i >= self.n or (stop and self.peek() in stop) or self.peek() in ")}":
                break
            stmts.append(self.parse_statement())
            self.skip_ws()
            c = self.peek()
            if stmts[-1].k in _BLOCK_STATEMENTS and self.s[self.i - 1:self.i] in ("}", ")"):
                continue  # `foreach(...){...}$next`: a statement ending in a block needs no separator
            if c != EOF and c not in "\n;}" and not (stop and c in stop):
                if c == ")":
                    break
                raise self.err("UnexpectedToken", f"Unexpected token '{self.rest_token()}' in expression or statement.")
        return Node("stmts", pos, list=stmts)

    def rest_token(self) -> str:
        m = re.compile(r"\S+").match(self.s, self.i)
        return m.group(0)[:40] if m else ""

    # ---- statements ------------------------------------------------------------------------------
    def parse_statement(self) -> Node:
        self.enter()
        try:
            node = self._parse_statement()
            if node.end <= node.pos:
                end = self.i
                while end > node.pos and self.s[end - 1] in " \t\n;":
                    end -= 1
                node.end = end
            return node
        finally:
            self.leave()

    def _parse_statement(self) -> Node:
        pos = self.i
        if self.peek() == ":" and self.peek(1).isalpha():  # loop label: accepted, ignored
            self.i += 1
            while self.peek().isalnum() or self.peek() == "_":
                self.i += 1
            self.skip_ws()
        word = self.word_at().lower()
        if word in KEYWORDS_UNSUPPORTED and self._keyword_followed_by_block(word):
            raise self.err("LabUnsupportedStatement",
                           f"The '{word}' statement is outside the lab engine's PowerShell subset.")
        if word == "if" and self.keyword("if"):
            return self.parse_if(pos)
        if word == "foreach" and self.keyword("foreach"):
            self.skip_ws()
            if self.peek() == "(":
                return self.parse_foreach(pos)
            self.i = pos
        if word == "for" and self.keyword("for"):
            return self.parse_for(pos)
        if word == "while" and self.keyword("while"):
            self.skip_ws()
            cond = self.parse_paren_condition("while")
            self.skip_ws(newlines=True)
            return Node("while", pos, cond=cond, body=self.parse_braced_statements())
        if word == "do" and self.keyword("do"):
            self.skip_ws(newlines=True)
            body = self.parse_braced_statements()
            self.skip_ws(newlines=True)
            until = self.keyword("until")
            if not until and not self.keyword("while"):
                raise self.err("MissingWhileOrUntilInDoWhile", "Missing while or until keyword in do loop.")
            self.skip_ws()
            cond = self.parse_paren_condition("do")
            return Node("do", pos, cond=cond, body=body, until=until)
        if word == "try" and self.keyword("try"):
            return self.parse_try(pos)
        if word == "switch" and self.keyword("switch"):
            return self.parse_switch(pos)
        if word in ("function", "filter") and self.keyword(word):
            return self.parse_function(pos, word == "filter")
        if word == "throw" and self.keyword("throw"):
            self.skip_ws()
            value = None if self.at_statement_end() else self.parse_pipeline()
            return Node("throw", pos, value=value)
        if word == "return" and self.keyword("return"):
            self.skip_ws()
            value = None if self.at_statement_end() else self.parse_pipeline()
            return Node("return", pos, value=value)
        if word == "exit" and self.keyword("exit"):
            self.skip_ws()
            value = None if self.at_statement_end() else self.parse_pipeline()
            return Node("exit", pos, value=value)
        if word in ("break", "continue") and self.keyword(word):
            self.skip_ws()
            if self.peek().isalpha():
                self.word_at()
                self.i += len(self.word_at())
            return Node(word, pos)
        if word == "param" and self.keyword("param"):
            raise self.err("UnexpectedToken", "Unexpected attribute or param block: param() must come first.", pos)
        return self.parse_pipeline()

    def _keyword_followed_by_block(self, word: str) -> bool:
        j = self.i + len(word)
        rest = self.s[j:j + 200].lstrip(" \t")
        return rest[:1] in ("(", "{", "-") or (word in ("class", "enum", "trap") and bool(rest[:1].strip()))

    def at_statement_end(self) -> bool:
        c = self.peek()
        return c in (EOF, "\n", ";", "}", ")") or (c == "#")

    def parse_paren_condition(self, what: str) -> Node:
        if self.peek() != "(":
            raise self.err(f"MissingOpenParenthesisAfter{what.capitalize()}",
                           f"Missing '(' after '{what}' in {what} statement.")
        self.i += 1
        self.skip_ws(newlines=True)
        if self.peek() in (")", EOF):
            raise self.err(f"{what.capitalize()}StatementMissingCondition",
                           f"Missing condition in {what} statement after '{what} ('.")
        cond = self.parse_pipeline()
        self.skip_ws(newlines=True)
        self.expect(")", "MissingEndParenthesisAfterStatement",
                    f"Missing closing ')' after expression in '{what}' statement.")
        return cond

    def parse_if(self, pos: int) -> Node:
        clauses: list[tuple[Node, Node]] = []
        self.skip_ws()
        cond = self.parse_paren_condition("if")
        self.skip_ws(newlines=True)
        clauses.append((cond, self.parse_braced_statements()))
        else_body = None
        while True:
            save = self.i
            self.skip_ws(newlines=True)
            if self.keyword("elseif"):
                self.skip_ws()
                cond = self.parse_paren_condition("if")
                self.skip_ws(newlines=True)
                clauses.append((cond, self.parse_braced_statements()))
                continue
            if self.keyword("else"):
                self.skip_ws(newlines=True)
                else_body = self.parse_braced_statements()
            else:
                self.i = save
            break
        return Node("if", pos, clauses=clauses, else_=else_body)

    def parse_foreach(self, pos: int) -> Node:
        self.i += 1
        self.skip_ws(newlines=True)
        if self.peek() != "$":
            raise self.err("MissingVariableNameAfterForeach", "Missing variable name after foreach.")
        var = self.parse_variable()
        self.skip_ws(newlines=True)
        if not self.keyword("in"):
            raise self.err("MissingInInForeach", "Missing 'in' after variable in foreach loop.")
        self.skip_ws(newlines=True)
        coll = self.parse_pipeline()
        self.skip_ws(newlines=True)
        self.expect(")", "MissingEndParenthesisAfterForeach", "Missing closing ')' after expression in 'foreach' statement.")
        self.skip_ws(newlines=True)
        return Node("foreach", pos, var=var, coll=coll, body=self.parse_braced_statements())

    def parse_for(self, pos: int) -> Node:
        self.skip_ws()
        self.expect("(", "MissingOpenParenthesisAfterKeyword", "Missing opening '(' after keyword 'for'.")
        parts: list[Node | None] = []
        for idx, term in enumerate((";", ";", ")")):
            self.skip_ws(newlines=True)
            if self.peek() == term:
                parts.append(None)
            else:
                parts.append(self.parse_pipeline())
                self.skip_ws(newlines=True)
            if self.peek() != term and not (idx < 2 and self.peek() == "\n"):
                raise self.err("MissingEndParenthesisAfterStatement", "Missing closing ')' in 'for' statement.")
            self.i += 1
        self.skip_ws(newlines=True)
        return Node("for", pos, init=parts[0], cond=parts[1], step=parts[2], body=self.parse_braced_statements())

    def parse_try(self, pos: int) -> Node:
        self.skip_ws(newlines=True)
        body = self.parse_braced_statements()
        catches: list[tuple[list[str], Node]] = []
        fin = None
        while True:
            save = self.i
            self.skip_ws(newlines=True)
            if self.keyword("catch"):
                types: list[str] = []
                while True:
                    self.skip_ws(newlines=True)
                    if self.peek() == "[":
                        types.append(self.read_type_name())
                        self.skip_ws(newlines=True)
                        if self.peek() == ",":
                            self.i += 1
                            continue
                    break
                catches.append((types, self.parse_braced_statements()))
                continue
            if self.keyword("finally"):
                self.skip_ws(newlines=True)
                fin = self.parse_braced_statements()
            else:
                self.i = save
            break
        if not catches and fin is None:
            raise self.err("MissingCatchOrFinally", "The Try statement is missing its Catch or Finally block.")
        return Node("try", pos, body=body, catches=catches, fin=fin)

    def parse_switch(self, pos: int) -> Node:
        opts: set[str] = set()
        while True:
            self.skip_ws()
            m = re.compile(r"-(regex|wildcard|exact|casesensitive)\b", re.I).match(self.s, self.i)
            if not m:
                break
            opts.add(m.group(1).lower())
            self.i = m.end()
        if self.peek() != "(":
            raise self.err("LabUnsupportedStatement", "Only 'switch (...) { }' is in the lab engine's subset.")
        self.i += 1
        self.skip_ws(newlines=True)
        value = self.parse_pipeline()
        self.skip_ws(newlines=True)
        self.expect(")", "MissingEndParenthesisInSwitchStatement", "Missing ')' in switch statement.")
        self.skip_ws(newlines=True)
        start = self.i
        self.expect("{", "MissingCurlyBraceInSwitchStatement", "Missing '{' in switch statement.")
        clauses: list[tuple[Node | None, Node]] = []
        while True:
            self.skip_terminators()
            if self.peek() == "}":
                self.i += 1
                break
            if self.peek() == EOF:
                raise self.err("MissingEndCurlyBrace", "Missing closing '}' in statement block.", start)
            cpos = self.i
            if self.keyword("default"):
                cond: Node | None = None
            elif self.peek() in "$'\"({@[" or self.peek().isdigit():
                cond = self.nested(self.parse_unary)
            else:
                word = re.compile(r"[^\s{]+").match(self.s, self.i)
                assert word
                self.i = word.end()
                cond = Node("const", cpos, value=word.group(0))
            self.skip_ws(newlines=True)
            clauses.append((cond, self.parse_braced_statements()))
        return Node("switch", pos, value=value, clauses=clauses, opts=opts)

    def parse_function(self, pos: int, is_filter: bool) -> Node:
        self.skip_ws()
        m = re.compile(r"[^\s(){}]+").match(self.s, self.i)
        if not m:
            raise self.err("MissingNameAfterKeyword", "Missing name after function keyword.")
        name = m.group(0)
        scope = None
        if ":" in name:  # function global:Name / script:Name / local:Name
            scope, name = name.split(":", 1)
        self.i = m.end()
        self.skip_ws(newlines=True)
        params = None
        if self.peek() == "(":
            params = self.parse_param_list()
            self.skip_ws(newlines=True)
        start = self.i
        self.expect("{", "MissingFunctionBody", "Missing function body in function declaration.")
        self.enter()
        body = self.parse_block_body()
        self.skip_terminators()
        if self.peek() != "}":
            raise self.err("MissingEndCurlyBrace", "Missing closing '}' in statement block or type definition.", start)
        self.i += 1
        self.leave()
        if params is not None:
            body.a["params"] = params
        if is_filter and "process" not in body.blocks:
            body.a["blocks"] = {"process": body.blocks.get("end")}
        body.a["text"] = self.s[start:self.i]
        return Node("function", pos, name=name, body=body, scope=scope.lower() if scope else None)
