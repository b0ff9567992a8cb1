"""Reading generated warehouse SQL as structure (sqlglot), for unit tests of the SQL generators.

- :func:`run_through` replays a statement sequence against the warehouse tables of the DDL files: every statement
  parses structurally in its dialect, every table, alias and column it reads resolves (sqlglot ``qualify``), every
  column it writes exists, and the temporary tables it creates (``CREATE TEMP TABLE … (cols)`` / ``… AS SELECT``)
  are known to the statements after it, dropped ones forgotten.
- :func:`style_errors`: the repository's SQL spelling — keywords upper case, identifiers lower case, a statement's
  data types in one case — so a generator's text is the same statement whatever reads it.
- Small readers of a parsed statement: conjuncts of a condition, ORDER BY keys, string literals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect as SqlglotDialect
from sqlglot.optimizer.qualify import qualify
from sqlglot.tokens import TokenType

from schemas.ddl import table_columns

Schema = dict[str, dict[str, str]]


def parse(statement: str, dialect: str) -> exp.Expression:
    """The statement's tree (PostgreSQL's ``ON COMMIT DROP``, which sqlglot does not read, removed first)."""
    tree = sqlglot.parse_one(statement.replace(" ON COMMIT DROP", ""), read=dialect)
    assert tree is not None, statement
    return tree


def warehouse_schema(dialect: str) -> Schema:
    """Tables of the DDL files: ``table -> {column: type}`` (types are not compared)."""
    return {name: dict(columns) for name, columns in _ddl(dialect).items()}


@cache
def _ddl(dialect: str) -> dict[str, tuple[tuple[str, str], ...]]:
    return {name: tuple((column, "TEXT") for column, _ in columns) for name, columns in table_columns(dialect).items()}


def _created(tree: exp.Create, schema: Schema, dialect: str) -> tuple[str, dict[str, str]]:
    target = tree.this
    if isinstance(target, exp.Schema):
        name = target.this.name
        return name, {c.name: "TEXT" for c in target.expressions if isinstance(c, exp.ColumnDef)}
    query = tree.expression
    assert isinstance(query, exp.Query), tree.sql(dialect)
    resolved = qualify(query.copy(), schema=schema, dialect=dialect, validate_qualify_columns=True)
    assert isinstance(resolved, exp.Query)
    return target.name, {name: "TEXT" for name in resolved.named_selects}


def _written_columns(tree: exp.Expression) -> tuple[str, list[str]] | None:
    """``(table, columns)`` an INSERT names, or None."""
    if isinstance(tree, exp.Insert) and isinstance(tree.this, exp.Schema):
        return tree.this.this.name, [c.name for c in tree.this.expressions]
    return None


def run_through(statements: Iterable[str], dialect: str, schema: Schema | None = None) -> Schema:
    """Replay ``statements`` against ``schema`` (default: the DDL's tables); returns the tables known at the end.

    Statements sqlglot keeps as opaque commands (``LOCK``, ``SET``) are skipped; anything else must resolve.
    """
    known = {k: dict(v) for k, v in (schema or warehouse_schema(dialect)).items()}
    for statement in statements:
        if statement.startswith(("LOCK ", "SET ")):
            continue
        tree = parse(statement, dialect)
        assert not isinstance(tree, exp.Command), statement
        if isinstance(tree, exp.Create):
            name, columns = _created(tree, known, dialect)
            if not (tree.args.get("exists") and name in known):
                known[name] = columns
            continue
        if isinstance(tree, exp.Drop):
            for table in tree.args.get("tables") or [tree.this]:
                assert table.name in known or tree.args.get("exists"), statement
                known.pop(table.name, None)
            continue
        written = _written_columns(tree)
        if written is not None:
            table, columns = written
            assert table in known, statement
            assert set(columns) <= set(known[table]), (sorted(set(columns) - set(known[table])), statement)
        if isinstance(tree, exp.Update):
            table = tree.this.name
            for assignment in tree.expressions:
                assert assignment.this.name in known[table], (assignment.sql(dialect), statement)
        if isinstance(tree, exp.Merge):
            table = tree.this.name
            for column in tree.find_all(exp.Column):
                if not column.table or column.table == table:
                    assert column.name in known[table] or column.table == "s", (column.sql(dialect), statement)
        ctes = {c.alias for c in tree.find_all(exp.CTE)}
        missing = {t.name for t in tree.find_all(exp.Table)} - set(known) - ctes
        assert not missing, (missing, statement)  # e.g. a COUNT(*) of a temp table never created
        unknown = {f.name for f in tree.find_all(exp.Anonymous)} - KNOWN_FUNCTIONS
        assert not unknown, (unknown, statement)  # sqlglot reads every other function it knows
        resolvable = {t: {**SYSTEM_COLUMNS.get(dialect, {}), **c} for t, c in known.items()}
        qualify(tree.copy(), schema=resolvable, dialect=dialect, validate_qualify_columns=True)
    return known


SYSTEM_COLUMNS = {"postgres": {"xmin": "xid"}}
"""System columns every table of a dialect has (PostgreSQL's ``xmin``: the inserting transaction)."""


KNOWN_FUNCTIONS = {"pg_advisory_xact_lock", "hashtextextended", "set_config", "current_setting", "pg_current_xact_id"}
"""PostgreSQL functions the generators call that sqlglot keeps as anonymous calls."""


_FREE_CASE = {TokenType.TRUE, TokenType.FALSE}
_UPPER_WORDS = {"EXCLUDED"}  # PostgreSQL's ON CONFLICT pseudo-table, spelled as the documentation does


def style_errors(statement: str, dialect: str) -> list[str]:
    """Where ``statement`` departs from the repository's SQL spelling: keywords upper case, identifiers lower
    case, function names in one case, the statement's data types all in one case."""
    tree = parse(statement, dialect)
    identifiers = {i.name for i in tree.find_all(exp.Identifier) if not i.quoted}
    errors = [f"identifier {name}" for name in identifiers if name != name.lower() and name not in _UPPER_WORDS]
    errors += [f"identifier {name}" for name in identifiers if name.upper() in _UPPER_WORDS and name != name.upper()]
    tokens = SqlglotDialect.get_or_raise(dialect).tokenize(statement)
    type_cases: set[bool] = set()
    for index, token in enumerate(tokens):
        text = statement[token.start : token.end + 1]  # as written (the tokenizer spells some keywords its way)
        if token.token_type == TokenType.COMMA and index and tokens[index - 1].token_type == TokenType.COMMA:
            errors.append("an empty list item")  # a syntax error sqlglot lets pass
        if token.token_type in (TokenType.STRING, TokenType.NUMBER) or not text[:1].isalpha():
            continue
        call = index + 1 < len(tokens) and tokens[index + 1].token_type == TokenType.L_PAREN
        if text.lower() in identifiers or token.token_type in _FREE_CASE or text in _UPPER_WORDS:
            continue
        if token.token_type.name in _TYPE_TOKENS:
            type_cases.add(text == text.upper())
        elif call and token.token_type == TokenType.VAR:
            if text not in (text.lower(), text.upper()):
                errors.append(f"function {text}")
        elif token.token_type == TokenType.VAR:
            if text != text.upper():  # a keyword sqlglot reads as a word (AT, ZONE, MATCHED, EPOCH …)
                errors.append(f"word {text}")
        elif text != text.upper():
            errors.append(f"keyword {text}")
    if len(type_cases) > 1:
        errors.append("data types in two cases")
    return errors


_TYPE_TOKENS = {t.name for t in exp.DataType.Type} | {"TIMESTAMPTZ", "DOUBLE", "PRECISION"}


def conjuncts(condition: exp.Expression | None, dialect: str) -> set[str]:
    """The AND-ed parts of a condition, each as sqlglot writes it (outer parentheses removed)."""
    if condition is None:
        return set()
    if isinstance(condition, exp.Where):
        condition = condition.this
    parts: list[exp.Expression] = []
    stack = [condition]
    while stack:
        node = stack.pop()
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.And):
            stack += [node.left, node.right]
        else:
            parts.append(node)
    return {p.sql(dialect) for p in parts}


def order_keys(select: exp.Expression, dialect: str) -> list[tuple[str, bool]]:
    """``[(key, descending)]`` of a query's (or window's) ORDER BY."""
    order = select.args.get("order")
    if order is None:
        return []
    return [(o.this.sql(dialect), bool(o.args.get("desc"))) for o in order.expressions]


def strings(tree: exp.Expression) -> set[str]:
    """Every string literal's value in the statement."""
    return {lit.this for lit in tree.find_all(exp.Literal) if lit.is_string}


def tables(tree: exp.Expression) -> set[str]:
    return {t.name for t in tree.find_all(exp.Table)}


def only(items: Sequence[str], prefix: str) -> str:
    """The one statement of ``items`` that starts with ``prefix``."""
    found = [s for s in items if s.startswith(prefix)]
    assert len(found) == 1, (prefix, len(found))
    return found[0]
