"""Checking a SELECT query before DuckDB sees it: parsed with sqlglot (DuckDB dialect),
refused unless it is a read-only query over the allow-listed relations, calling only the
allow-listed functions; regenerated from the checked tree so that DuckDB runs exactly what
was checked. The catalog relations (``models``, ``evaluations``, ...) are defined here, as
SQL over the catalog tables; methods add theirs through their ``registry.Method``.
"""
from __future__ import annotations

import functools
import re
import logging

from zooql.core.sqlerrors import Source
from zooql.core.where import suggest
from zooql.errors import BindError, ParseError

# The catalog as relations: name -> SQL over the catalog tables (documented in docs/language.md).
CORE_RELATIONS = {
    "models": "SELECT name, source, checkpoint, loadable, tree, parent, downloads, task, family, params, "
              "num_logits, input_size, preprocess, tags, description, added_at FROM models",
    "logits": "SELECT m.name AS model, l.idx, l.label FROM logits l JOIN models m ON m.id = l.model_id",
    "trees": "WITH RECURSIVE walk(name, tree, root, depth) AS ("
             "SELECT m.name, m.tree, m.name, 0 FROM models m WHERE m.tree IS NOT NULL AND (m.parent IS NULL "
             "OR m.parent NOT IN (SELECT x.name FROM models x WHERE x.tree = m.tree)) "
             "UNION ALL SELECT c.name, c.tree, w.root, w.depth + 1 FROM models c JOIN walk w "
             "ON c.parent = w.name AND c.tree = w.tree WHERE w.depth < 1000) "
             "SELECT w.tree, w.name AS model, m.parent, w.root, w.depth FROM walk w JOIN models m ON m.name = w.name",
    "datasets": "SELECT name, description, domain, tags FROM datasets",
    "evaluations": "SELECT model, dataset, metric, score, split, source FROM evaluations",
    "outcomes": "SELECT model, dataset, query_id, score, origin FROM outcomes",
    "tasks": "SELECT name, kind, evaluator, n_queries, created_at FROM tasks",
}

AGGREGATES = {"count", "sum", "avg", "mean", "min", "max", "median", "mode", "stddev", "stddev_samp",
              "stddev_pop", "variance", "var_samp", "var_pop", "string_agg", "group_concat", "list",
              "array_agg", "bool_and", "bool_or", "any_value", "first", "last", "arg_max", "arg_min",
              "argmax", "argmin", "max_by", "min_by", "count_if", "countif", "approx_count_distinct",
              "quantile_cont", "quantile_disc", "quantile", "corr", "covar_pop", "covar_samp",
              "logical_and", "logical_or", "percentile_cont", "percentile_disc", "product", "histogram"}
WINDOWS = {"rank", "dense_rank", "row_number", "percent_rank", "cume_dist", "ntile", "lag", "lead",
           "first_value", "last_value", "nth_value"}
SCALARS = {
    # arithmetic
    "abs", "ceil", "ceiling", "floor", "round", "sqrt", "cbrt", "ln", "log", "log10", "log2", "exp", "pow",
    "power", "greatest", "least", "sign", "mod", "trunc", "div", "safe_divide", "isnan", "isinf",
    # strings
    "lower", "upper", "length", "len", "char_length", "substr", "substring", "trim", "ltrim", "rtrim",
    "concat", "concat_ws", "replace", "starts_with", "startswith", "ends_with", "contains", "strpos",
    "instr", "position", "str_position", "regexp_matches", "regexp_like", "regexp_replace",
    "regexp_extract", "split_part", "string_split", "split", "left", "right", "lpad", "rpad", "pad",
    "repeat", "reverse", "format", "printf", "initcap", "md5", "hash", "levenshtein", "jaro_winkler_similarity",
    # conditionals and casts
    "coalesce", "nullif", "ifnull", "if", "case", "cast", "try_cast", "trycast", "iif",
    # dates
    "now", "current_date", "current_timestamp", "currentdate", "currenttimestamp", "date_trunc",
    "timestamp_trunc", "datetrunc", "date_part", "extract", "epoch", "strftime", "strptime",
    "str_to_time", "time_to_str", "age", "date_diff", "datediff", "date_add", "dateadd", "date_sub",
    "year", "month", "day", "hour", "minute", "second", "dayofweek", "to_timestamp", "make_date",
    "unix_to_time", "time_str_to_time", "ts_or_ds_to_date", "date_str_to_date", "interval",
    # JSON (the tags columns)
    "json_extract", "json_extract_string", "json_extract_scalar", "jsonextract", "jsonextractscalar",
    "json_keys", "json_type", "json_valid", "json_array_length", "to_json", "json_object", "parse_json",
    # lists and structs
    "list_value", "array", "list_contains", "list_has", "array_contains", "array_length", "array_size",
    "list_extract", "list_element", "list_sort", "array_sort", "list_distinct", "list_aggregate",
    "list_slice", "array_slice", "unnest", "explode", "struct_pack", "struct", "bracket", "list_position",
    "array_position", "list_reverse", "flatten", "array_to_string", "array_join", "generate_series",
    "range", "list_transform", "list_filter", "transform", "filter", "lambda",
    # DuckDB's type-independent helpers
    "typeof", "row", "tuple", "columns", "star",
}
FUNCTIONS = frozenset(AGGREGATES | WINDOWS | SCALARS)

logging.getLogger("sqlglot").setLevel(logging.ERROR)


def _exp():
    from sqlglot import exp

    return exp


def _refused_kinds():
    exp = _exp()
    names = ("Copy", "Attach", "Detach", "Pragma", "Set", "Install", "Command", "Insert", "Update",
             "Delete", "Create", "Drop", "Alter", "Use", "Describe", "Merge", "Transaction", "Commit",
             "Rollback", "LoadData", "Export", "Summarize", "Show", "Analyze", "Kill", "TruncateTable")
    return tuple(getattr(exp, n) for n in names if hasattr(exp, n))


def _kind(node) -> str:
    exp = _exp()
    if isinstance(node, exp.Command):
        return str(node.this).split()[0].upper()
    return {"LoadData": "LOAD", "TruncateTable": "TRUNCATE"}.get(type(node).__name__, type(node).__name__.upper())


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_sql(sql: str, line: int = 1, column: int = 1, source: Source | None = None):
    """The sqlglot tree of ``sql`` (which starts at ``line``, ``column`` of the statement
    text); errors point into ``source`` (the query as written) when it is given."""
    if source is None:
        source = Source(sql, sql, line, column)
    bad = _SURROGATE.search(sql)
    if bad:     # DuckDB takes UTF-8 only
        abs_line, abs_col = source.position(bad.start())
        raise BindError(f"the query has a character at line {abs_line}, column {abs_col} that is not valid "
                        "Unicode (a lone surrogate)", line=abs_line, column=abs_col)
    from sqlglot.dialects.duckdb import DuckDB
    from sqlglot.errors import ParseError as GlotError, TokenError

    dialect = DuckDB()
    try:
        tokens = dialect.tokenize(sql)
    except TokenError:
        tokens = None       # reported by the parse below
    if tokens is not None:
        _refuse_statements(source, tokens)
    try:
        trees = dialect.parser().parse(tokens, sql) if tokens is not None else dialect.parse(sql)
    except GlotError as exc:
        err = exc.errors[0] if exc.errors else {}
        rel_line, rel_col = err.get("line") or 1, err.get("col") or 1
        what = (err.get("description") or str(exc)).split("\n")[0]
        what = re.sub(r"<Token token_type: [^,]*, text: ([^,]*),[^>]*>", r"'\1'", what)
        what = re.sub(r"Required keyword: '(\w+)' missing for <class '(?:\w+\.)*(\w+)'>",
                      lambda m: f"{m.group(2).upper()} is incomplete (its {m.group(1)} is missing)", what)
        abs_line, abs_col = source.position_at(rel_line, rel_col)
        raise ParseError(f"syntax error at line {abs_line}, column {abs_col}: {what}", line=abs_line,
                         column=abs_col) from None
    except TokenError as exc:
        raise ParseError(f"syntax error at line {line}: {exc}") from None
    except RecursionError:   # sqlglot parses recursively: ~1,000 NOTs or parentheses
        raise ParseError(f"syntax error at line {line}, column {column}: the query is nested too deeply "
                         "(parentheses, NOT or operators); simplify it", line=line, column=column) from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise ParseError("a query must be exactly one SELECT statement")
    return trees[0]


@functools.lru_cache(maxsize=512)
def parse_sql_cached(sql: str, line: int, column: int, source: Source | None = None):
    """:func:`parse_sql`, remembered (errors are not): callers must ``copy()`` the tree
    before changing it."""
    return parse_sql(sql, line, column, source)


STATEMENT_WORDS = frozenset({"PRAGMA", "ATTACH", "DETACH", "INSTALL", "LOAD", "SET", "RESET", "COPY", "CALL",
                             "EXPORT", "IMPORT", "USE", "CHECKPOINT", "VACUUM", "FORCE", "INSERT", "UPDATE",
                             "DELETE", "CREATE", "DROP", "ALTER", "BEGIN", "COMMIT", "ROLLBACK"})


def _refuse_statements(source: Source, tokens) -> None:
    """A DuckDB statement word where a statement would start (after '(') is refused with
    its position, before sqlglot tries to make sense of it (``tokens``: sqlglot's tokens of
    ``source.sql``)."""
    for prev, tok in zip(tokens, tokens[1:]):
        word = tok.text.upper()
        if prev.token_type.name == "L_PAREN" and word in STATEMENT_WORDS and tok.token_type.name != "IDENTIFIER":
            abs_line, abs_col = source.position_at(tok.line, tok.col - len(tok.text) + 1)
            raise BindError(f"{word} is not allowed inside a query (queries are read-only SELECTs) "
                            f"at line {abs_line}, column {abs_col}", line=abs_line, column=abs_col)


def function_names(node) -> set[str]:
    exp = _exp()
    if isinstance(node, exp.Anonymous):
        return {str(node.name).lower()}
    names = {type(node).__name__.lower(), node.sql_name().lower()}
    names.update(n.lower() for n in getattr(type(node), "_sql_names", ()) or ())
    return names


def check(tree, relations: set[str], subs: set[str], more=None) -> list[str]:
    """Refuse anything but a read-only query over known relations and allow-listed functions;
    return the relations the query reads (its CTE names excluded). ``more()``: further
    relation names (the catalog's views), asked for only when the query names a relation
    that is not in ``relations``."""
    exp = _exp()
    if more is not None:
        relations = _Lazy(relations, more)
    if not isinstance(tree, exp.Query):
        raise BindError(f"{_kind(tree)} is not allowed here: a query is a read-only SELECT "
                        f"(use ZooQL statements to change the catalog, COPY (...) TO 'file' to write files)")
    refused = _refused_kinds()
    ctes = {str(c.alias).lower() for c in tree.find_all(exp.CTE)}
    used: list[str] = []
    _json_paths(tree)
    for node in tree.walk():
        if isinstance(node, refused):
            raise BindError(f"{_kind(node)} is not allowed inside a query (queries are read-only)")
        if isinstance(node, exp.Func) and not isinstance(node, (exp.Binary, exp.Connector, exp.Not, exp.Paren)):
            _check_function(node)
        elif isinstance(node, exp.Table):
            _check_table(node, relations, subs, ctes, used)
        elif isinstance(node, (exp.Limit, exp.Offset)):
            arg = node.args.get("expression")
            if isinstance(arg, exp.Literal) and arg.is_string:
                word = "LIMIT" if isinstance(node, exp.Limit) else "OFFSET"
                raise BindError(f"{word} takes a whole number of rows, not the text {arg.sql(dialect='duckdb')}")
    return used


class _Lazy:
    """A set of names: ``known``, and ``more()`` (called once, when first needed)."""

    def __init__(self, known, more):
        self.known, self.more, self.extra = known, more, None

    def _all(self):
        if self.extra is None:
            self.extra = set(self.more())
        return self.known | self.extra

    def __contains__(self, name):
        return name in self.known or name in self._all()

    def __iter__(self):
        return iter(self._all())


JSON_COLUMNS = ("tags", "preprocess")


def _json_paths(tree) -> None:
    """``m.tags.license`` / ``tags.license`` (a key of a JSON column) -> the key's value as a
    string, as in SHOW MODELS WHERE; unless ``tags`` names a relation or alias of the query."""
    exp = _exp()
    names = {str(t.alias_or_name).lower() for t in tree.find_all(exp.Table)}
    names |= {str(s.alias).lower() for s in tree.find_all(exp.Subquery) if s.alias}
    for col in list(tree.find_all(exp.Column)):
        parts = [p.name for p in col.parts]
        idx = next((i for i, p in enumerate(parts[:-1]) if p.lower() in JSON_COLUMNS), None)
        if idx is None or idx + 1 != len(parts) - 1 or (idx == 0 and parts[0].lower() in names):
            continue
        base = exp.column(parts[idx], table=parts[idx - 1] if idx else None)
        key = exp.Literal.string("$." + parts[-1])
        new = exp.Anonymous(this="json_extract_string", expressions=[base, key])
        if isinstance(col.parent, exp.Select) and col.arg_key == "expressions":
            new = exp.alias_(new, parts[-1])
        col.replace(new)


def _check_function(node) -> None:
    names = function_names(node)
    if names & FUNCTIONS:
        return
    shown = str(node.name).lower() if isinstance(node, _exp().Anonymous) else node.sql_name().lower()
    if shown.startswith(("read_", "glob", "parquet_", "sniff_", "duckdb_", "pragma_")) or shown in (
            "getenv", "current_setting", "query", "query_table", "iceberg_scan", "delta_scan", "http_get"):
        raise BindError(f"function {shown}() is not allowed: queries read only the catalog relations "
                        f"and statement results (no files, settings or environment)")
    raise BindError(f"unknown or disallowed function {shown}(){suggest(shown, sorted(FUNCTIONS))}")


def _check_table(node, relations, subs, ctes, used) -> None:
    exp = _exp()
    if not isinstance(node.this, exp.Identifier):
        return   # a table function: its function node is checked on its own
    if node.args.get("db") or node.args.get("catalog"):
        raise BindError(f"qualified relation name {node.sql(dialect='duckdb')!r} is not allowed "
                        f"(relations: {', '.join(sorted(relations))})")
    name = str(node.name)
    low = name.lower()
    if low in ctes:
        return
    if name in subs:
        used.append(name)
        return
    if low not in relations:
        raise BindError(f"unknown relation {name!r}{suggest(low, sorted(relations))} "
                        f"(relations: {', '.join(sorted(relations))})")
    if low not in used:
        used.append(low)


@functools.lru_cache(maxsize=256)
def qualified(sql: str, catalog: str = "cat") -> str:
    """A relation's SQL with its tables read from the attached catalog ``catalog``."""
    import sqlglot

    exp = _exp()
    tree = sqlglot.parse_one(sql, read="duckdb")
    ctes = {str(c.alias).lower() for c in tree.find_all(exp.CTE)}
    for t in tree.find_all(exp.Table):
        if isinstance(t.this, exp.Identifier) and str(t.name).lower() not in ctes and not t.args.get("db"):
            t.set("db", exp.to_identifier("main"))
            t.set("catalog", exp.to_identifier(catalog))
    return tree.sql(dialect="duckdb")


@functools.lru_cache(maxsize=256)
def output_names(sql: str) -> tuple[str, ...] | None:
    """The column names of a relation's SQL, or None when they cannot be told from the text
    alone (a ``*``)."""
    import sqlglot

    names = sqlglot.parse_one(sql, read="duckdb").named_selects
    if not names or "*" in names or "" in names:
        return None
    return tuple(names)


@functools.lru_cache(maxsize=256)
def output_columns(sql: str) -> tuple[str, ...] | None:
    """:func:`output_names` in lower case (DuckDB's names are case-insensitive)."""
    names = output_names(sql)
    return None if names is None else tuple(n.lower() for n in names)


class ColumnError(BindError):
    """An unknown column of a catalog relation; ``offset``: where it is in the query text."""

    def __init__(self, message: str, offset: int | None, name: str):
        super().__init__(message)
        self.offset, self.name = offset, name


PSEUDO_COLUMNS = frozenset({"rowid"})


def check_columns(tree, relations: dict[str, str]) -> None:
    """Refuse a column that no catalog relation in reach has: ``t.col`` where ``t`` is a
    catalog relation of the query (or its alias), and an unqualified ``col`` where every
    relation in reach (its own query's and the enclosing ones') is a catalog relation and
    none has it (nor is it a SELECT alias). Anything else is left to DuckDB."""
    from sqlglot.optimizer.scope import traverse_scope

    exp = _exp()
    try:
        scopes = traverse_scope(tree)
    except Exception:   # sqlglot cannot scope it: DuckDB checks the names
        return
    for scope in scopes:
        for col in scope.columns:
            if isinstance(col.this, exp.Star) or _owner(col) is not scope.expression:
                continue
            name = col.name.lower()
            if name in PSEUDO_COLUMNS:
                continue
            _check_column(col, name, col.table.lower(), scope, relations)


def _owner(col):
    exp = _exp()
    node = col.parent
    while node is not None and not isinstance(node, exp.Query):
        node = node.parent
    return node


def _known(src, relations: dict[str, str]):
    """The columns of ``src`` (a scope's source) when it is a catalog relation, else None."""
    exp = _exp()
    if isinstance(src, exp.Table) and isinstance(src.this, exp.Identifier) and str(src.name).lower() in relations:
        return output_columns(relations[str(src.name).lower()])
    return None


def _check_column(col, name: str, table: str, scope, relations) -> None:
    chain = []
    s = scope
    while s is not None:
        chain.append(s)
        s = s.parent
    offset = col.this.meta.get("start") if hasattr(col.this, "meta") else None
    if table:
        for s in chain:
            if table in s.sources:
                cols = _known(s.sources[table], relations)
                if cols is not None and name not in cols:
                    rel = str(s.sources[table].name).lower()
                    where = rel if rel == table else f"{table} ({rel})"
                    raise ColumnError(f"unknown column {col.name!r} in {where}{_did_you_mean(name, cols)}",
                                      offset, col.name)
                return
        return
    seen: list[str] = []
    rels: list[str] = []
    for s in chain:
        if not s.sources:
            continue
        for src in s.sources.values():
            cols = _known(src, relations)
            if cols is None:
                return          # a CTE, sub-query, view or statement result: DuckDB checks
            rels.append(str(src.name).lower())
            seen.extend(c for c in cols if c not in seen)
        aliases = [str(p.alias).lower() for p in getattr(s.expression, "expressions", ())
                   if isinstance(p, _exp().Alias)] if isinstance(s.expression, _exp().Select) else []
        if name in seen or name in aliases:
            return
        seen.extend(a for a in aliases if a not in seen)
    if rels:
        raise ColumnError(f"unknown column {col.name!r} in {', '.join(dict.fromkeys(rels))}"
                          f"{_did_you_mean(name, seen)}", offset, col.name)


def _did_you_mean(name: str, columns) -> str:
    return suggest(name, columns) or f" (columns: {', '.join(columns)})"
