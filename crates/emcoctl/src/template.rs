//! A subset of Go's `text/template`, the language upstream emcoctl applies to resource files given `-v values.yaml`.
//!
//! Supported: text and `{{ pipeline }}` actions, `{{- -}}` trim markers, `{{/* comments */}}`, fields (`.A.B`),
//! variables (`$`, `$x := ...`, `$x = ...`, `$x.A`), literals (strings, raw strings, chars, numbers, `true`,
//! `false`, `nil`), parenthesised pipelines with field chains, `|` pipes, `if`/`else if`/`else`, `range` (lists,
//! maps in key order, integers; `$i, $e :=`; `else`; `break`; `continue`), `with`/`else with`/`else`, and the
//! builtins `and or not len index slice eq ne lt le gt ge print printf println`.
//!
//! Upstream parses with Go's default options, so a missing map key prints `<no value>` instead of failing
//! (`missingkey=default`); this engine does the same and also reports every missing key to the caller, who can
//! warn about it. `define`, `template` and `block` are not supported and fail with a clear message.

use serde_json::{Map, Number, Value};

/// Nesting of blocks and parentheses a template may use; deeper input is refused instead of risking the stack.
const MAX_NESTING: usize = 100;
/// Output a template may produce; a runaway `range` stops with an error instead of filling memory.
const MAX_OUTPUT_BYTES: usize = 64 << 20;
/// Evaluation steps a template may take (loop iterations plus actions).
const MAX_STEPS: u64 = 10_000_000;

/// Why a template could not be parsed or executed; `line` is 1-based in the template source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {name}:{line}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub line: usize,
    pub message: String,
}

/// A key the template asked for that the data does not have; it was rendered as `<no value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    /// The expression as written, e.g. `.ProjectName` or `$app.Name`.
    pub key: String,
    pub line: usize,
}

/// The text a template produced and the missing keys met on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub missing_keys: Vec<MissingKey>,
}

/// Parses `source` (named `name` in errors) and executes it with `data` as both `.` and `$`.
pub fn render(name: &str, source: &str, data: &Value) -> Result<Rendered, TemplateError> {
    Template::parse(name, source)?.execute(data)
}

/// A parsed template, ready to execute any number of times.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    root: Vec<Node>,
}

impl Template {
    pub fn parse(name: &str, source: &str) -> Result<Template, TemplateError> {
        let items = lex(name, source)?;
        let mut parser = Parser {
            name,
            items: items.into_iter().peekable(),
            range_depth: 0,
            depth: 0,
        };
        let (root, end) = parser.parse_list()?;
        match end {
            ListEnd::Eof => Ok(Template {
                name: name.to_string(),
                root,
            }),
            ListEnd::End(line) => Err(error(name, line, "unexpected {{end}}")),
            ListEnd::Else(line, _) => Err(error(name, line, "unexpected {{else}}")),
        }
    }

    pub fn execute(&self, data: &Value) -> Result<Rendered, TemplateError> {
        let mut exec = Exec {
            name: &self.name,
            vars: vec![("$".to_string(), Some(data.clone()))],
            out: String::new(),
            missing_keys: Vec::new(),
            steps: 0,
        };
        exec.walk_list(&Some(data.clone()), &self.root)?;
        Ok(Rendered {
            text: exec.out,
            missing_keys: exec.missing_keys,
        })
    }
}

fn error(name: &str, line: usize, message: impl Into<String>) -> TemplateError {
    TemplateError {
        name: name.to_string(),
        line,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Lexer: splits the source into text and actions, applying trim markers and dropping comments.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot,
    /// `.A.B` written against dot.
    Field(Vec<String>),
    /// `$name` with an optional field chain `$name.A.B`.
    Var(String, Vec<String>),
    /// `.A.B` written right after `)`; chains onto the parenthesised value.
    ChainFields(Vec<String>),
    Ident(String),
    Literal(Value),
    Nil,
    LParen,
    RParen,
    Pipe,
    Comma,
    Declare,
    Assign,
}

#[derive(Debug)]
enum Item {
    Text(String),
    Action {
        line: usize,
        source: String,
        tokens: Vec<Tok>,
    },
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn lex(name: &str, source: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = source;
    let mut line = 1usize;
    let mut trim_next_text = false;
    loop {
        let Some(open) = rest.find("{{") else {
            push_text(&mut items, rest, trim_next_text);
            return Ok(items);
        };
        let mut text = &rest[..open];
        let after_open = &rest[open + 2..];
        let trim_left = after_open.starts_with('-') && after_open[1..].starts_with(is_space);
        if trim_left {
            text = text.trim_end_matches(is_space);
        }
        push_text(&mut items, text, trim_next_text);
        line += rest[..open].matches('\n').count();
        let action_line = line;
        let mut body = if trim_left {
            &after_open[2..]
        } else {
            after_open
        };

        if let Some(comment) = body.strip_prefix("/*") {
            let Some(close) = comment.find("*/") else {
                return Err(error(name, action_line, "unclosed comment"));
            };
            let after = &comment[close + 2..];
            let (consumed, trim_right) = if after.starts_with("}}") {
                (2, false)
            } else if after.starts_with(is_space) && after[1..].starts_with("-}}") {
                (4, true)
            } else {
                return Err(error(
                    name,
                    action_line,
                    "comment ends before closing delimiter",
                ));
            };
            let comment_len = 2 + close + 2;
            let total = (body.as_ptr() as usize - rest.as_ptr() as usize) + comment_len + consumed;
            line += rest[open..total].matches('\n').count();
            rest = &rest[total..];
            trim_next_text = trim_right;
            continue;
        }

        let mut tokens = Vec::new();
        let body_start = body;
        let trim_right;
        loop {
            let trimmed = body.trim_start_matches(is_space);
            let had_space = trimmed.len() != body.len();
            body = trimmed;
            if body.starts_with("}}") {
                trim_right = false;
                body = &body[2..];
                break;
            }
            if had_space && body.starts_with("-}}") {
                trim_right = true;
                body = &body[3..];
                break;
            }
            if body.is_empty() {
                return Err(error(name, action_line, "unclosed action"));
            }
            let (tok, used) = lex_token(body, tokens.last(), had_space)
                .map_err(|message| error(name, action_line, message))?;
            tokens.push(tok);
            body = &body[used..];
        }
        let action_source = &body_start[..body_start.len() - body.len()];
        let source_text = action_source
            .trim_end_matches("}}")
            .trim_end_matches('-')
            .trim()
            .to_string();
        let consumed = body.as_ptr() as usize - rest.as_ptr() as usize;
        line += rest[open..consumed].matches('\n').count();
        rest = &rest[consumed..];
        trim_next_text = trim_right;
        items.push(Item::Action {
            line: action_line,
            source: source_text,
            tokens,
        });
    }
}

fn push_text(items: &mut Vec<Item>, text: &str, trim_leading: bool) {
    let text = if trim_leading {
        text.trim_start_matches(is_space)
    } else {
        text
    };
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
}

/// Reads one token at the start of `input`, returning it and the bytes it used.
fn lex_token(
    input: &str,
    previous: Option<&Tok>,
    after_space: bool,
) -> Result<(Tok, usize), String> {
    let mut chars = input.chars();
    let Some(first) = chars.next() else {
        return Err("unclosed action".to_string());
    };
    let second = chars.next();
    match first {
        '(' => Ok((Tok::LParen, 1)),
        ')' => Ok((Tok::RParen, 1)),
        '|' => Ok((Tok::Pipe, 1)),
        ',' => Ok((Tok::Comma, 1)),
        '=' => Ok((Tok::Assign, 1)),
        ':' if second == Some('=') => Ok((Tok::Declare, 2)),
        ':' => Err("expected :=".to_string()),
        '"' => lex_quoted(input),
        '`' => match input[1..].find('`') {
            Some(end) => Ok((
                Tok::Literal(Value::String(input[1..1 + end].to_string())),
                end + 2,
            )),
            None => Err("unterminated raw quoted string".to_string()),
        },
        '\'' => lex_char(input),
        '.' if second.is_some_and(|c| c.is_ascii_digit()) => lex_number(input),
        '.' => {
            let (fields, used) = lex_fields(input)?;
            if fields.is_empty() {
                return Ok((Tok::Dot, 1));
            }
            let chains = !after_space && matches!(previous, Some(Tok::RParen));
            if chains {
                Ok((Tok::ChainFields(fields), used))
            } else {
                Ok((Tok::Field(fields), used))
            }
        }
        '$' => {
            let name_len: usize = input[1..]
                .chars()
                .take_while(|c| is_ident_char(*c))
                .map(char::len_utf8)
                .sum();
            let name = input[..1 + name_len].to_string();
            let (fields, used) = if input[1 + name_len..].starts_with('.') {
                lex_fields(&input[1 + name_len..])?
            } else {
                (Vec::new(), 0)
            };
            if fields.is_empty() && used > 0 {
                return Err(format!("bad character after {name}"));
            }
            Ok((Tok::Var(name, fields), 1 + name_len + used))
        }
        '+' | '-' | '0'..='9' => lex_number(input),
        c if is_ident_char(c) => {
            let len: usize = input
                .chars()
                .take_while(|c| is_ident_char(*c))
                .map(char::len_utf8)
                .sum();
            let word = &input[..len];
            let tok = match word {
                "true" => Tok::Literal(Value::Bool(true)),
                "false" => Tok::Literal(Value::Bool(false)),
                "nil" => Tok::Nil,
                _ => Tok::Ident(word.to_string()),
            };
            Ok((tok, len))
        }
        other => Err(format!("unexpected {other:?} in command")),
    }
}

/// Reads `.A.B.C`; a lone `.` yields no fields and one byte used.
fn lex_fields(input: &str) -> Result<(Vec<String>, usize), String> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while input[pos..].starts_with('.') {
        let len: usize = input[pos + 1..]
            .chars()
            .take_while(|c| is_ident_char(*c))
            .map(char::len_utf8)
            .sum();
        if len == 0 {
            if fields.is_empty() && pos == 0 {
                return Ok((Vec::new(), 1));
            }
            return Err("unexpected . after term".to_string());
        }
        fields.push(input[pos + 1..pos + 1 + len].to_string());
        pos += 1 + len;
    }
    Ok((fields, pos))
}

fn lex_quoted(input: &str) -> Result<(Tok, usize), String> {
    let mut out = String::new();
    let mut iter = input.char_indices().skip(1).peekable();
    while let Some((i, c)) = iter.next() {
        match c {
            '"' => return Ok((Tok::Literal(Value::String(out)), i + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, esc)) = iter.next() else { break };
                match esc {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(esc),
                    'x' | 'u' | 'U' => {
                        let digits = match esc {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut code = 0u32;
                        for _ in 0..digits {
                            let digit = iter.next().and_then(|(_, d)| d.to_digit(16));
                            let Some(digit) = digit else {
                                return Err("invalid escape in quoted string".to_string());
                            };
                            code = code * 16 + digit;
                        }
                        match char::from_u32(code) {
                            Some(ch) => out.push(ch),
                            None => return Err("invalid escape in quoted string".to_string()),
                        }
                    }
                    '0'..='7' => {
                        let mut code = esc.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let digit = iter.next().and_then(|(_, d)| d.to_digit(8));
                            let Some(digit) = digit else {
                                return Err("invalid escape in quoted string".to_string());
                            };
                            code = code * 8 + digit;
                        }
                        match char::from_u32(code) {
                            Some(ch) if code < 256 => out.push(ch),
                            _ => return Err("invalid escape in quoted string".to_string()),
                        }
                    }
                    _ => return Err("invalid escape in quoted string".to_string()),
                }
            }
            _ => out.push(c),
        }
    }
    Err("unterminated quoted string".to_string())
}

fn lex_char(input: &str) -> Result<(Tok, usize), String> {
    let mut iter = input.char_indices().skip(1);
    let value = match iter.next() {
        Some((_, '\\')) => match iter.next() {
            Some((_, 'n')) => '\n',
            Some((_, 't')) => '\t',
            Some((_, 'r')) => '\r',
            Some((_, '0')) => '\0',
            Some((_, c @ ('\\' | '\'' | '"'))) => c,
            _ => return Err("unsupported escape in character constant".to_string()),
        },
        Some((_, '\'')) | None => return Err("empty character constant".to_string()),
        Some((_, c)) => c,
    };
    match iter.next() {
        Some((i, '\'')) => Ok((Tok::Literal(Value::from(u32::from(value))), i + 1)),
        _ => Err("unterminated character constant".to_string()),
    }
}

fn lex_number(input: &str) -> Result<(Tok, usize), String> {
    let len: usize = input
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_alphanumeric()
                || *c == '_'
                || *c == '.'
                || (*i == 0 && (*c == '+' || *c == '-'))
                || ((*c == '+' || *c == '-')
                    && *i > 0
                    && matches!(input.as_bytes()[i - 1], b'e' | b'E' | b'p' | b'P'))
        })
        .map(|(_, c)| c.len_utf8())
        .sum();
    let text = &input[..len];
    parse_number(text)
        .map(|value| (Tok::Literal(value), len))
        .ok_or_else(|| format!("bad number syntax: {text:?}"))
}

fn parse_number(text: &str) -> Option<Value> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, unsigned) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    if unsigned.is_empty() {
        return None;
    }
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = lower.strip_prefix("0o") {
        (8, oct)
    } else if let Some(bin) = lower.strip_prefix("0b") {
        (2, bin)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit())
    {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if radix != 10 || !digits.contains(['.', 'e']) {
        let magnitude = u128::from_str_radix(digits, radix).ok()?;
        let value = if negative {
            let signed = -i128::try_from(magnitude).ok()?;
            Value::from(i64::try_from(signed).ok()?)
        } else if let Ok(small) = i64::try_from(magnitude) {
            Value::from(small)
        } else {
            Value::from(u64::try_from(magnitude).ok()?)
        };
        return Some(value);
    }
    if !digits
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        return None;
    }
    let float: f64 = digits.parse().ok()?;
    let float = if negative { -float } else { float };
    Number::from_f64(float).map(Value::Number)
}

// ---------------------------------------------------------------------------------------------------------------
// Parser: turns the item stream into a tree of nodes.

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action {
        line: usize,
        pipe: Pipeline,
    },
    If {
        line: usize,
        pipe: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        line: usize,
        pipe: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        line: usize,
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Break,
    Continue,
}

#[derive(Debug, Clone)]
struct Pipeline {
    source: String,
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Literal(Value),
    Nil,
    Sub(Box<Pipeline>, Vec<String>),
}

enum ListEnd {
    Eof,
    End(usize),
    /// `{{else}}` with the tokens after `else` (empty, or `if ...` / `with ...`).
    Else(usize, Vec<Tok>),
}

struct Parser<'a> {
    name: &'a str,
    items: std::iter::Peekable<std::vec::IntoIter<Item>>,
    range_depth: usize,
    depth: usize,
}

const FUNCTIONS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge", "print",
    "printf", "println",
];

impl Parser<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> TemplateError {
        error(self.name, line, message)
    }

    fn parse_list(&mut self) -> Result<(Vec<Node>, ListEnd), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (line, source, tokens) = match item {
                Item::Text(text) => {
                    nodes.push(Node::Text(text));
                    continue;
                }
                Item::Action {
                    line,
                    source,
                    tokens,
                } => (line, source, tokens),
            };
            let keyword = match tokens.first() {
                Some(Tok::Ident(word)) => word.as_str(),
                _ => "",
            };
            match keyword {
                "end" => {
                    if tokens.len() > 1 {
                        return Err(self.err(line, "unexpected tokens after end"));
                    }
                    return Ok((nodes, ListEnd::End(line)));
                }
                "else" => return Ok((nodes, ListEnd::Else(line, tokens[1..].to_vec()))),
                "if" | "with" | "range" => {
                    let pipe = self.pipeline(line, &source, &tokens[1..], keyword == "range")?;
                    nodes.push(self.parse_block(keyword, line, pipe)?);
                }
                "break" | "continue" => {
                    if self.range_depth == 0 {
                        return Err(
                            self.err(line, format!("{{{{{keyword}}}}} outside {{{{range}}}}"))
                        );
                    }
                    if tokens.len() > 1 {
                        return Err(self.err(line, format!("unexpected tokens after {keyword}")));
                    }
                    nodes.push(if keyword == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                "define" | "template" | "block" => {
                    return Err(self.err(
                        line,
                        format!("{{{{{keyword}}}}} is not supported by emcoctl templates"),
                    ));
                }
                _ => {
                    let pipe = self.pipeline(line, &source, &tokens, false)?;
                    nodes.push(Node::Action { line, pipe });
                }
            }
        }
        Ok((nodes, ListEnd::Eof))
    }

    /// Parses the body of an `if`/`with`/`range` whose pipeline is already read, through its `{{end}}`.
    fn parse_block(
        &mut self,
        keyword: &str,
        line: usize,
        pipe: Pipeline,
    ) -> Result<Node, TemplateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.err(line, "blocks nested too deeply"));
        }
        if keyword == "range" {
            self.range_depth += 1;
        }
        let (then, end) = self.parse_list()?;
        if keyword == "range" {
            self.range_depth -= 1;
        }
        let otherwise = match end {
            ListEnd::End(_) => Vec::new(),
            ListEnd::Eof => {
                return Err(self.err(
                    line,
                    format!("unexpected EOF: {{{{{keyword}}}}} has no {{{{end}}}}"),
                ));
            }
            ListEnd::Else(else_line, rest) => match rest.first() {
                None => {
                    let (otherwise, end) = self.parse_list()?;
                    match end {
                        ListEnd::End(_) => otherwise,
                        ListEnd::Eof => {
                            return Err(self.err(
                                line,
                                format!("unexpected EOF: {{{{{keyword}}}}} has no {{{{end}}}}"),
                            ));
                        }
                        ListEnd::Else(again, _) => {
                            return Err(self.err(again, "expected end; found {{else}}"));
                        }
                    }
                }
                Some(Tok::Ident(chained))
                    if (chained == "if" || chained == "with") && keyword != "range" =>
                {
                    let chained = chained.clone();
                    let source = format!("{chained} ...");
                    let pipe = self.pipeline(else_line, &source, &rest[1..], false)?;
                    vec![self.parse_block(&chained, else_line, pipe)?]
                }
                Some(_) => return Err(self.err(else_line, "unexpected tokens after else")),
            },
        };
        self.depth -= 1;
        Ok(match keyword {
            "if" => Node::If {
                line,
                pipe,
                then,
                otherwise,
            },
            "with" => Node::With {
                line,
                pipe,
                then,
                otherwise,
            },
            _ => Node::Range {
                line,
                pipe,
                body: then,
                otherwise,
            },
        })
    }

    fn pipeline(
        &self,
        line: usize,
        source: &str,
        tokens: &[Tok],
        in_range: bool,
    ) -> Result<Pipeline, TemplateError> {
        let mut decl = Vec::new();
        let mut assign = false;
        let mut rest = tokens;
        // Declarations: `$x :=`, `$x =`, or `$i, $e :=` (range only).
        match tokens {
            [
                Tok::Var(a, fa),
                Tok::Comma,
                Tok::Var(b, fb),
                Tok::Declare | Tok::Assign,
                ..,
            ] if fa.is_empty() && fb.is_empty() => {
                if !in_range {
                    return Err(self.err(line, "too many declarations"));
                }
                assign = tokens[3] == Tok::Assign;
                decl = vec![a.clone(), b.clone()];
                rest = &tokens[4..];
            }
            [Tok::Var(a, fa), Tok::Declare | Tok::Assign, ..] if fa.is_empty() => {
                assign = tokens[1] == Tok::Assign;
                decl = vec![a.clone()];
                rest = &tokens[2..];
            }
            _ => {}
        }
        if decl.iter().any(|name| name == "$") && !assign {
            return Err(self.err(line, "cannot redeclare $"));
        }
        let mut pos = 0;
        let (cmds, used) = self.commands(line, rest, &mut pos, 0)?;
        if used < rest.len() {
            return Err(self.err(line, format!("unexpected {:?} in {source}", rest[used])));
        }
        if cmds.is_empty() {
            return Err(self.err(
                line,
                format!("missing value for command in {{{{{source}}}}}"),
            ));
        }
        Ok(Pipeline {
            source: source.to_string(),
            decl,
            assign,
            cmds,
        })
    }

    /// Reads `cmd | cmd | ...` until the end of `tokens` or an unmatched `)`; returns the commands and the index
    /// where reading stopped.
    fn commands(
        &self,
        line: usize,
        tokens: &[Tok],
        pos: &mut usize,
        depth: usize,
    ) -> Result<(Vec<Vec<Arg>>, usize), TemplateError> {
        if depth > MAX_NESTING {
            return Err(self.err(line, "parentheses nested too deeply"));
        }
        let mut cmds = Vec::new();
        let mut current: Vec<Arg> = Vec::new();
        while *pos < tokens.len() {
            let tok = &tokens[*pos];
            *pos += 1;
            let arg = match tok {
                Tok::RParen => {
                    *pos -= 1;
                    break;
                }
                Tok::Pipe => {
                    if current.is_empty() {
                        return Err(self.err(line, "missing command before |"));
                    }
                    cmds.push(std::mem::take(&mut current));
                    continue;
                }
                Tok::Dot => Arg::Dot,
                Tok::Field(fields) => Arg::Field(fields.clone()),
                Tok::Var(name, fields) => Arg::Var(name.clone(), fields.clone()),
                Tok::Ident(name) => {
                    if !FUNCTIONS.contains(&name.as_str()) {
                        return Err(self.err(line, format!("function {name:?} not defined")));
                    }
                    Arg::Ident(name.clone())
                }
                Tok::Literal(value) => Arg::Literal(value.clone()),
                Tok::Nil => Arg::Nil,
                Tok::LParen => {
                    let (inner, _) = self.commands(line, tokens, pos, depth + 1)?;
                    if tokens.get(*pos) != Some(&Tok::RParen) {
                        return Err(self.err(line, "unclosed left paren"));
                    }
                    *pos += 1;
                    if inner.is_empty() {
                        return Err(self.err(line, "missing value in parentheses"));
                    }
                    let mut fields = Vec::new();
                    if let Some(Tok::ChainFields(chain)) = tokens.get(*pos) {
                        fields = chain.clone();
                        *pos += 1;
                    }
                    let sub = Pipeline {
                        source: "(...)".to_string(),
                        decl: Vec::new(),
                        assign: false,
                        cmds: inner,
                    };
                    Arg::Sub(Box::new(sub), fields)
                }
                Tok::ChainFields(_) => return Err(self.err(line, "unexpected field chain")),
                Tok::Comma | Tok::Declare | Tok::Assign => {
                    return Err(self.err(line, format!("unexpected {tok:?} in operand")));
                }
            };
            current.push(arg);
        }
        if !current.is_empty() {
            cmds.push(current);
        } else if !cmds.is_empty() {
            return Err(self.err(line, "missing command after |"));
        }
        Ok((cmds, *pos))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Execution.

/// A value during execution; `None` is Go's "invalid" value, what a missing map key yields.
type Val = Option<Value>;

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'a> {
    name: &'a str,
    vars: Vec<(String, Val)>,
    out: String,
    missing_keys: Vec<MissingKey>,
    steps: u64,
}

impl Exec<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> TemplateError {
        error(self.name, line, message)
    }

    fn step(&mut self, line: usize) -> Result<(), TemplateError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(self.err(line, "template took too many steps"));
        }
        if self.out.len() > MAX_OUTPUT_BYTES {
            return Err(self.err(line, "template output is too large"));
        }
        Ok(())
    }

    fn walk_list(&mut self, dot: &Val, nodes: &[Node]) -> Result<Flow, TemplateError> {
        for node in nodes {
            match self.walk(dot, node)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Val, node: &Node) -> Result<Flow, TemplateError> {
        match node {
            Node::Text(text) => self.out.push_str(text),
            Node::Action { line, pipe } => {
                self.step(*line)?;
                let value = self.eval_pipeline(*line, dot, pipe)?;
                if pipe.decl.is_empty() {
                    match &value {
                        None | Some(Value::Null) => self.out.push_str("<no value>"),
                        Some(value) => self.out.push_str(&format_value(value)),
                    }
                }
            }
            Node::If {
                line,
                pipe,
                then,
                otherwise,
            } => {
                let mark = self.vars.len();
                let value = self.eval_pipeline(*line, dot, pipe)?;
                let flow = if is_true(&value) {
                    self.walk_list(dot, then)?
                } else {
                    self.walk_list(dot, otherwise)?
                };
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::With {
                line,
                pipe,
                then,
                otherwise,
            } => {
                let mark = self.vars.len();
                let value = self.eval_pipeline(*line, dot, pipe)?;
                let flow = if is_true(&value) {
                    self.walk_list(&value, then)?
                } else {
                    self.walk_list(dot, otherwise)?
                };
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::Range {
                line,
                pipe,
                body,
                otherwise,
            } => return self.walk_range(*line, dot, pipe, body, otherwise),
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn walk_range(
        &mut self,
        line: usize,
        dot: &Val,
        pipe: &Pipeline,
        body: &[Node],
        otherwise: &[Node],
    ) -> Result<Flow, TemplateError> {
        let mark = self.vars.len();
        let value = self
            .eval_commands(line, dot, &pipe.cmds)
            .map_err(|err| in_action(err, pipe))?;
        let entries: Vec<(Value, Value)> = match &value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (Value::from(i), item.clone()))
                .collect(),
            Some(Value::Object(map)) => sorted_entries(map)
                .into_iter()
                .map(|(key, item)| (Value::String(key.clone()), item.clone()))
                .collect(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                if pipe.decl.len() > 1 {
                    return Err(
                        self.err(line, "can't use two variables when ranging over an integer")
                    );
                }
                let count = n.as_i64().unwrap_or(i64::MAX).max(0);
                if u64::try_from(count).unwrap_or(u64::MAX) > MAX_STEPS {
                    return Err(self.err(line, "template took too many steps"));
                }
                (0..count)
                    .map(|i| (Value::from(i), Value::from(i)))
                    .collect()
            }
            Some(other) => {
                return Err(self.err(
                    line,
                    format!("range can't iterate over {}", format_value(other)),
                ));
            }
        };
        if entries.is_empty() {
            let flow = self.walk_list(dot, otherwise)?;
            self.vars.truncate(mark);
            return Ok(flow);
        }
        for (key, item) in entries {
            self.step(line)?;
            // Each iteration starts from the variables in scope before the range, then binds its own.
            self.vars.truncate(mark);
            match pipe.decl.as_slice() {
                [] => {}
                [element] => self.bind(line, element, Some(item.clone()), pipe.assign)?,
                [index, element] => {
                    self.bind(line, index, Some(key), pipe.assign)?;
                    self.bind(line, element, Some(item.clone()), pipe.assign)?;
                }
                _ => return Err(self.err(line, "too many declarations")),
            }
            let flow = self.walk_list(&Some(item), body)?;
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    fn bind(
        &mut self,
        line: usize,
        name: &str,
        value: Val,
        assign: bool,
    ) -> Result<(), TemplateError> {
        if assign {
            match self.vars.iter_mut().rev().find(|(var, _)| var == name) {
                Some(slot) => slot.1 = value,
                None => return Err(self.err(line, format!("undefined variable: {name}"))),
            }
        } else {
            self.vars.push((name.to_string(), value));
        }
        Ok(())
    }

    fn eval_pipeline(
        &mut self,
        line: usize,
        dot: &Val,
        pipe: &Pipeline,
    ) -> Result<Val, TemplateError> {
        let value = self
            .eval_commands(line, dot, &pipe.cmds)
            .map_err(|err| in_action(err, pipe))?;
        for name in &pipe.decl {
            self.bind(line, name, value.clone(), pipe.assign)?;
        }
        Ok(value)
    }

    fn eval_commands(
        &mut self,
        line: usize,
        dot: &Val,
        cmds: &[Vec<Arg>],
    ) -> Result<Val, TemplateError> {
        let mut piped: Option<Val> = None;
        for cmd in cmds {
            piped = Some(self.eval_command(line, dot, cmd, piped)?);
        }
        Ok(piped.unwrap_or(None))
    }

    fn eval_command(
        &mut self,
        line: usize,
        dot: &Val,
        cmd: &[Arg],
        piped: Option<Val>,
    ) -> Result<Val, TemplateError> {
        let Some(first) = cmd.first() else {
            return Err(self.err(line, "empty command"));
        };
        if let Arg::Ident(function) = first {
            return self.call(line, dot, function, &cmd[1..], piped);
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(self.err(
                line,
                format!(
                    "can't give argument to non-function {}",
                    describe_arg(first)
                ),
            ));
        }
        if matches!(first, Arg::Nil) {
            return Err(self.err(line, "nil is not a command"));
        }
        self.eval_arg(line, dot, first)
    }

    fn eval_arg(&mut self, line: usize, dot: &Val, arg: &Arg) -> Result<Val, TemplateError> {
        match arg {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(fields) => self.eval_fields(line, dot.clone(), "", fields),
            Arg::Var(name, fields) => {
                let Some((_, value)) = self.vars.iter().rev().find(|(var, _)| var == name) else {
                    return Err(self.err(line, format!("undefined variable: {name}")));
                };
                let value = value.clone();
                self.eval_fields(line, value, name, fields)
            }
            Arg::Ident(function) => self.call(line, dot, function, &[], None),
            Arg::Literal(value) => Ok(Some(value.clone())),
            Arg::Nil => Ok(Some(Value::Null)),
            Arg::Sub(pipe, fields) => {
                let value = self.eval_commands(line, dot, &pipe.cmds)?;
                self.eval_fields(line, value, "(...)", fields)
            }
        }
    }

    /// Follows a field chain; a missing key yields `None` (and is recorded), as Go does by default.
    fn eval_fields(
        &mut self,
        line: usize,
        mut receiver: Val,
        base: &str,
        fields: &[String],
    ) -> Result<Val, TemplateError> {
        let mut path = base.to_string();
        for field in fields {
            path.push('.');
            path.push_str(field);
            receiver = match receiver {
                None => return Ok(None),
                Some(Value::Null) => {
                    return Err(self.err(
                        line,
                        format!("nil pointer evaluating interface {{}}.{field} (at {path})"),
                    ));
                }
                Some(Value::Object(mut map)) => match map.remove(field.as_str()) {
                    Some(value) => Some(value),
                    None => {
                        self.missing_keys.push(MissingKey {
                            key: path.clone(),
                            line,
                        });
                        None
                    }
                },
                Some(other) => {
                    return Err(self.err(
                        line,
                        format!(
                            "can't evaluate field {field} in type {} (at {path})",
                            type_name(&other)
                        ),
                    ));
                }
            };
        }
        Ok(receiver)
    }

    fn call(
        &mut self,
        line: usize,
        dot: &Val,
        function: &str,
        args: &[Arg],
        piped: Option<Val>,
    ) -> Result<Val, TemplateError> {
        if function == "and" || function == "or" {
            let count = args.len() + usize::from(piped.is_some());
            if count == 0 {
                return Err(self.err(
                    line,
                    format!("wrong number of args for {function}: want at least 1 got 0"),
                ));
            }
            let mut last: Val = None;
            for arg in args {
                last = self.eval_arg(line, dot, arg)?;
                if is_true(&last) != (function == "and") {
                    return Ok(last);
                }
            }
            if let Some(value) = piped {
                last = value;
            }
            return Ok(last);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for arg in args {
            values.push(self.eval_arg(line, dot, arg)?);
        }
        if let Some(value) = piped {
            values.push(value);
        }
        builtin(function, &values)
            .map_err(|message| self.err(line, format!("error calling {function}: {message}")))
    }
}

/// Names the action an execution error happened in, once (nested pipelines keep the outermost action).
fn in_action(mut err: TemplateError, pipe: &Pipeline) -> TemplateError {
    if !err.message.contains(" in {{") {
        err.message
            .push_str(&format!(" in {{{{{}}}}}", pipe.source));
    }
    err
}

fn describe_arg(arg: &Arg) -> String {
    match arg {
        Arg::Dot => ".".to_string(),
        Arg::Field(fields) => fields.iter().map(|f| format!(".{f}")).collect(),
        Arg::Var(name, fields) => format!(
            "{name}{}",
            fields.iter().map(|f| format!(".{f}")).collect::<String>()
        ),
        Arg::Ident(name) => name.clone(),
        Arg::Literal(value) => format_value(value),
        Arg::Nil => "nil".to_string(),
        Arg::Sub(..) => "(...)".to_string(),
    }
}

fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Go's notion of truth: false, 0, nil and empty strings, lists and maps are false.
fn is_true(value: &Val) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
    }
}

/// Go's name for the dynamic type of a value decoded from YAML into `interface{}`.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int",
        Value::Number(n) if n.is_u64() => "uint64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Formats a value as Go's `%v` does for data decoded from YAML.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format_number(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(format_value).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => format!(
            "map[{}]",
            sorted_entries(map)
                .into_iter()
                .map(|(k, v)| format!("{k}:{}", format_value(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn format_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    format_float_g(n.as_f64().unwrap_or(0.0))
}

/// Go's `%v` for a float64: the shortest digits that round-trip, in exponent form (`1e+06`) when the exponent is
/// below -4 or at least 6, as Go decides for shortest-precision `%g`.
fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, e.g. "1.5e6".
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..6).contains(&exponent) {
        return go_exponent_form(mantissa, exponent);
    }
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = usize::try_from(exponent).unwrap_or(0) + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

fn go_exponent_form(mantissa: &str, exponent: i32) -> String {
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

// ---------------------------------------------------------------------------------------------------------------
// Builtin functions. Errors are plain messages; the caller adds the line and function name.

fn builtin(function: &str, args: &[Val]) -> Result<Val, String> {
    let want = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("wrong number of args: want {n} got {}", args.len()))
        }
    };
    match function {
        "not" => {
            want(1)?;
            Ok(Some(Value::Bool(!is_true(&args[0]))))
        }
        "len" => {
            want(1)?;
            let len = match &args[0] {
                Some(Value::String(s)) => s.len(),
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(m)) => m.len(),
                Some(other) => return Err(format!("len of type {}", type_name(other))),
                None => return Err("len of nil pointer".to_string()),
            };
            Ok(Some(Value::from(len)))
        }
        "index" => {
            let Some((item, indices)) = args.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".to_string());
            };
            let mut current = item.clone();
            for index in indices {
                current = index_one(current, index)?;
            }
            Ok(current)
        }
        "slice" => builtin_slice(args),
        "eq" => {
            let Some((first, others)) = args.split_first() else {
                return Err("missing argument for comparison".to_string());
            };
            if others.is_empty() {
                return Err("missing argument for comparison".to_string());
            }
            for other in others {
                if compare(first, other)? == Some(std::cmp::Ordering::Equal) {
                    return Ok(Some(Value::Bool(true)));
                }
            }
            Ok(Some(Value::Bool(false)))
        }
        "ne" => {
            want(2)?;
            Ok(Some(Value::Bool(
                compare(&args[0], &args[1])? != Some(std::cmp::Ordering::Equal),
            )))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let ordering = ordered_compare(&args[0], &args[1])?;
            let result = match function {
                "lt" => ordering.is_lt(),
                "le" => ordering.is_le(),
                "gt" => ordering.is_gt(),
                _ => ordering.is_ge(),
            };
            Ok(Some(Value::Bool(result)))
        }
        "print" => Ok(Some(Value::String(sprint(args)))),
        "println" => {
            let mut text = args.iter().map(format_arg).collect::<Vec<_>>().join(" ");
            text.push('\n');
            Ok(Some(Value::String(text)))
        }
        "printf" => {
            let Some((format, rest)) = args.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".to_string());
            };
            let Some(Value::String(format)) = format else {
                return Err("printf format must be a string".to_string());
            };
            Ok(Some(Value::String(sprintf(format, rest))))
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

fn index_one(item: Val, index: &Val) -> Result<Val, String> {
    match item {
        None | Some(Value::Null) => Err("index of untyped nil".to_string()),
        Some(Value::Object(mut map)) => match index {
            Some(Value::String(key)) => Ok(Some(map.remove(key.as_str()).unwrap_or(Value::Null))),
            Some(other) => Err(format!(
                "value has type {}; should be string",
                type_name(other)
            )),
            None => Ok(Some(Value::Null)),
        },
        Some(Value::Array(mut items)) => {
            let position = integer_index(index)?;
            if position >= items.len() {
                return Err(format!("index out of range: {position}"));
            }
            Ok(Some(items.swap_remove(position)))
        }
        Some(Value::String(text)) => {
            let position = integer_index(index)?;
            match text.as_bytes().get(position) {
                Some(byte) => Ok(Some(Value::from(*byte))),
                None => Err(format!("index out of range: {position}")),
            }
        }
        Some(other) => Err(format!("can't index item of type {}", type_name(&other))),
    }
}

fn integer_index(index: &Val) -> Result<usize, String> {
    match index {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) if i < 0 => Err(format!("index out of range: {i}")),
            Some(i) => usize::try_from(i).map_err(|_| format!("index out of range: {i}")),
            None => Err("cannot index slice/array with type float64".to_string()),
        },
        Some(other) => Err(format!(
            "cannot index slice/array with type {}",
            type_name(other)
        )),
        None => Err("cannot index slice/array with nil".to_string()),
    }
}

fn builtin_slice(args: &[Val]) -> Result<Val, String> {
    let Some((item, bounds)) = args.split_first() else {
        return Err("wrong number of args: want at least 1 got 0".to_string());
    };
    if bounds.len() > 2 {
        return Err("too many slice indexes".to_string());
    }
    let indexes: Vec<usize> = bounds.iter().map(integer_index).collect::<Result<_, _>>()?;
    let check = |len: usize| -> Result<(usize, usize), String> {
        let start = indexes.first().copied().unwrap_or(0);
        let end = indexes.get(1).copied().unwrap_or(len);
        if start > end || end > len {
            return Err(format!("index out of range: {start}:{end}"));
        }
        Ok((start, end))
    };
    match item {
        Some(Value::Array(items)) => {
            let (start, end) = check(items.len())?;
            Ok(Some(Value::Array(items[start..end].to_vec())))
        }
        Some(Value::String(text)) => {
            let (start, end) = check(text.len())?;
            match text.get(start..end) {
                Some(part) => Ok(Some(Value::String(part.to_string()))),
                None => Err("slice splits a UTF-8 character".to_string()),
            }
        }
        Some(other) => Err(format!("can't slice item of type {}", type_name(other))),
        None => Err("slice of untyped nil".to_string()),
    }
}

/// Equality as Go's `eq` sees it: `Some(Equal)` when equal, `Some(Less)` as a stand-in for "different".
fn compare(a: &Val, b: &Val) -> Result<Option<std::cmp::Ordering>, String> {
    use std::cmp::Ordering::{Equal, Less};
    let a_nil = matches!(a, None | Some(Value::Null));
    let b_nil = matches!(b, None | Some(Value::Null));
    if a_nil || b_nil {
        return Ok(Some(if a_nil && b_nil { Equal } else { Less }));
    }
    match (a, b) {
        (Some(Value::Array(_) | Value::Object(_)), _)
        | (_, Some(Value::Array(_) | Value::Object(_))) => Err("non-comparable types".to_string()),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => Ok(Some(if x == y { Equal } else { Less })),
        _ => ordered_compare(a, b).map(Some),
    }
}

fn ordered_compare(a: &Val, b: &Val) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => Ok(x.cmp(y)),
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let x_int = x.is_i64() || x.is_u64();
            let y_int = y.is_i64() || y.is_u64();
            if x_int && y_int {
                let wide = |n: &Number| {
                    n.as_i64()
                        .map(i128::from)
                        .or_else(|| n.as_u64().map(i128::from))
                        .unwrap_or(0)
                };
                Ok(wide(x).cmp(&wide(y)))
            } else if !x_int && !y_int {
                x.as_f64()
                    .unwrap_or(0.0)
                    .partial_cmp(&y.as_f64().unwrap_or(0.0))
                    .ok_or_else(|| "incomparable NaN".to_string())
            } else {
                Err("incompatible types for comparison".to_string())
            }
        }
        (Some(Value::Bool(_)), Some(Value::Bool(_))) => {
            Err("invalid type for comparison".to_string())
        }
        (None | Some(Value::Null), _) | (_, None | Some(Value::Null)) => {
            Err("invalid type for comparison".to_string())
        }
        _ => Err("incompatible types for comparison".to_string()),
    }
}

/// An operand as `print` shows it: nil is `<nil>`.
fn format_arg(value: &Val) -> String {
    match value {
        None => "<nil>".to_string(),
        Some(value) => format_value(value),
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither side is a string.
fn sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        let is_string = matches!(arg, Some(Value::String(_)));
        if i > 0 && !is_string && !matches!(args[i - 1], Some(Value::String(_))) {
            out.push(' ');
        }
        out.push_str(&format_arg(arg));
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %t %f %e %g %x %X %%`, with flags, width and
/// precision. Mismatches print Go's `%!verb(type=value)` markers.
fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut minus = false;
        let mut plus = false;
        let mut zero = false;
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = None;
        while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = Some(
                width
                    .unwrap_or(0usize)
                    .saturating_mul(10)
                    .saturating_add(digit as usize)
                    .min(1024),
            );
            chars.next();
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            precision = Some(0usize);
            while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
                precision = Some(
                    precision
                        .unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(digit as usize)
                        .min(1024),
                );
                chars.next();
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next_arg += 1;
        let text = format_verb(verb, arg, precision, plus);
        let pad = width.unwrap_or(0).saturating_sub(text.chars().count());
        if minus {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if zero && matches!(arg, Some(Value::Number(_))) && !matches!(verb, 's' | 'q' | 'v')
        {
            let (sign, digits) = match text.strip_prefix('-') {
                Some(rest) => ("-", rest),
                None => ("", text.as_str()),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&text);
        }
    }
    if next_arg < args.len() {
        let extra: Vec<String> = args[next_arg..]
            .iter()
            .map(|arg| match arg {
                None | Some(Value::Null) => "<nil>".to_string(),
                Some(value) => format!("{}={}", type_name(value), format_value(value)),
            })
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn format_verb(verb: char, arg: &Val, precision: Option<usize>, plus: bool) -> String {
    let bad = |value: &Value| format!("%!{verb}({}={})", type_name(value), format_value(value));
    let Some(value) = arg.as_ref().filter(|v| !v.is_null()) else {
        return if verb == 'v' {
            "<nil>".to_string()
        } else {
            format!("%!{verb}(<nil>)")
        };
    };
    match verb {
        'v' => format_value(value),
        's' => match value {
            Value::String(s) => match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            Value::Array(_) | Value::Object(_) => format_value(value),
            other => bad(other),
        },
        'q' => match value {
            Value::String(s) => go_quote(s),
            other => bad(other),
        },
        't' => match value {
            Value::Bool(b) => b.to_string(),
            other => bad(other),
        },
        'd' => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                let text = format_number(n);
                if plus && !text.starts_with('-') {
                    format!("+{text}")
                } else {
                    text
                }
            }
            other => bad(other),
        },
        'x' | 'X' => {
            let text = match value {
                Value::Number(n) if n.is_i64() => {
                    let i = n.as_i64().unwrap_or(0);
                    if i < 0 {
                        format!("-{:x}", i.unsigned_abs())
                    } else {
                        format!("{i:x}")
                    }
                }
                Value::Number(n) if n.is_u64() => format!("{:x}", n.as_u64().unwrap_or(0)),
                Value::String(s) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                other => return bad(other),
            };
            if verb == 'X' {
                text.to_uppercase()
            } else {
                text
            }
        }
        'f' | 'F' | 'e' | 'g' => match value {
            Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
                let f = n.as_f64().unwrap_or(0.0);
                let text = match verb {
                    'f' | 'F' => format!("{f:.*}", precision.unwrap_or(6)),
                    'e' => {
                        let sci = format!("{f:.*e}", precision.unwrap_or(6));
                        let (mantissa, exponent) =
                            sci.split_once('e').unwrap_or((sci.as_str(), "0"));
                        go_exponent_form(mantissa, exponent.parse().unwrap_or(0))
                    }
                    _ => format_float_g(f),
                };
                if plus && !text.starts_with('-') {
                    format!("+{text}")
                } else {
                    text
                }
            }
            other => bad(other),
        },
        _ => bad(value),
    }
}

/// Go's `strconv.Quote` for the characters YAML values contain.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(source: &str, data: Value) -> String {
        match render("t", source, &data) {
            Ok(rendered) => rendered.text,
            Err(err) => panic!("render failed: {err}"),
        }
    }

    fn fails(source: &str, data: Value) -> TemplateError {
        match render("t", source, &data) {
            Ok(rendered) => panic!("expected an error, got {:?}", rendered.text),
            Err(err) => err,
        }
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(run("a: b\n---\nc: {d}\n", json!({})), "a: b\n---\nc: {d}\n");
    }

    #[test]
    fn fields_with_and_without_spaces() {
        let data = json!({"ProjectName": "proj1", "Port": 9031});
        assert_eq!(
            run("name: {{.ProjectName}} port: {{ .Port }}", data),
            "name: proj1 port: 9031"
        );
    }

    #[test]
    fn nested_fields_and_root_variable() {
        let data = json!({"A": {"B": {"C": "deep"}}, "X": "root"});
        assert_eq!(
            run("{{.A.B.C}} {{with .A}}{{.B.C}}-{{$.X}}{{end}}", data),
            "deep deep-root"
        );
    }

    #[test]
    fn missing_keys_render_no_value_and_are_reported() {
        let rendered =
            render("t", "a: {{.Nope}}\nb: {{.Also.Deeper}}\n", &json!({"X": 1})).unwrap();
        assert_eq!(rendered.text, "a: <no value>\nb: <no value>\n");
        assert_eq!(
            rendered.missing_keys,
            vec![
                MissingKey {
                    key: ".Nope".to_string(),
                    line: 1
                },
                MissingKey {
                    key: ".Also".to_string(),
                    line: 2
                },
            ]
        );
    }

    #[test]
    fn null_values_print_no_value_but_fail_on_field_access() {
        let data = json!({"N": null});
        assert_eq!(run("{{.N}}", data.clone()), "<no value>");
        let err = fails("{{.N.X}}", data);
        assert!(
            err.message
                .contains("nil pointer evaluating interface {}.X"),
            "{err}"
        );
    }

    #[test]
    fn field_of_a_string_names_the_field_and_type() {
        let err = fails("line1\n{{ .Name.First }}", json!({"Name": "bob"}));
        assert_eq!(err.line, 2);
        assert!(
            err.message
                .contains("can't evaluate field First in type string"),
            "{err}"
        );
        assert!(err.to_string().starts_with("template t:2:"), "{err}");
    }

    #[test]
    fn range_over_list_with_index_and_element() {
        let data = json!({"Project": "p", "Applist": [{"Name": "a1"}, {"Name": "a2"}]});
        let source = "{{- range $index, $app := .Applist }}\n- {{ $index }} {{ $app.Name }} {{ .Name }} {{ $.Project }}\n{{- end }}\n";
        assert_eq!(run(source, data), "\n- 0 a1 a1 p\n- 1 a2 a2 p\n");
    }

    #[test]
    fn range_over_map_is_in_key_order() {
        let data = json!({"M": {"b": 2, "a": 1, "c": 3}});
        assert_eq!(
            run("{{range $k, $v := .M}}{{$k}}={{$v}};{{end}}", data.clone()),
            "a=1;b=2;c=3;"
        );
        assert_eq!(run("{{range .M}}{{.}}{{end}}", data), "123");
    }

    #[test]
    fn range_else_break_continue_and_integers() {
        assert_eq!(
            run("{{range .L}}x{{else}}empty{{end}}", json!({"L": []})),
            "empty"
        );
        assert_eq!(
            run("{{range .Missing}}x{{else}}none{{end}}", json!({})),
            "none"
        );
        let data = json!({"L": [1, 2, 3, 4]});
        assert_eq!(
            run(
                "{{range .L}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}",
                data
            ),
            "13"
        );
        assert_eq!(run("{{range $i := 3}}{{$i}}{{end}}", json!({})), "012");
    }

    #[test]
    fn trim_markers_remove_adjacent_whitespace() {
        assert_eq!(run("a  \n {{- .X -}} \n  b", json!({"X": "x"})), "axb");
        assert_eq!(run("a {{- 3}}", json!({})), "a3");
        // `{{-3}}` is the number -3, not a trim marker.
        assert_eq!(run("a {{-3}}", json!({})), "a -3");
    }

    #[test]
    fn comments_are_dropped() {
        assert_eq!(
            run("a {{/* note */}} b {{- /* trimmed */ -}} c", json!({})),
            "a  bc"
        );
        assert!(
            fails("{{/* open", json!({}))
                .message
                .contains("unclosed comment")
        );
    }

    #[test]
    fn if_else_if_else_and_not() {
        let source = "{{if .A}}a{{else if .B}}b{{else}}c{{end}}|{{- if not .PublicCluster2 }}private{{- end }}";
        assert_eq!(run(source, json!({"A": true})), "a|private");
        assert_eq!(
            run(source, json!({"B": "yes", "PublicCluster2": true})),
            "b|"
        );
        assert_eq!(run(source, json!({"A": 0, "B": ""})), "c|private");
    }

    #[test]
    fn with_changes_dot_and_has_else() {
        let data = json!({"C": {"Name": "c1"}});
        assert_eq!(
            run(
                "{{with .C}}{{.Name}}{{end}}{{with .D}}x{{else}}no-d{{end}}",
                data
            ),
            "c1no-d"
        );
    }

    #[test]
    fn index_len_and_slice() {
        let data = json!({"L": ["a", "b"], "M": {"k-1": "v"}});
        assert_eq!(
            run(
                "{{index .L 1}} {{index .M \"k-1\"}} {{len .L}} {{index .M \"none\"}}",
                data.clone()
            ),
            "b v 2 <no value>"
        );
        assert_eq!(run("{{slice .L 1}}", data.clone()), "[b]");
        assert!(
            fails("{{index .L 5}}", data)
                .message
                .contains("index out of range: 5")
        );
    }

    #[test]
    fn range_variables_are_scoped_to_the_range() {
        let source = "{{$x := \"outer\"}}{{range $i, $x := .L}}{{$x}}{{$y := $i}}{{end}}{{$x}}";
        assert_eq!(run(source, json!({"L": ["a", "b"]})), "abouter");
        assert!(
            fails("{{range .L}}{{$y := 1}}{{end}}{{$y}}", json!({"L": [1]}))
                .message
                .contains("undefined variable: $y")
        );
    }

    #[test]
    fn variables_declare_and_assign() {
        assert_eq!(
            run("{{$x := .A}}{{$x}}{{$x = \"z\"}}{{$x}}", json!({"A": "y"})),
            "yz"
        );
        assert!(
            fails("{{$nope}}", json!({}))
                .message
                .contains("undefined variable: $nope")
        );
    }

    #[test]
    fn pipes_parens_and_printf() {
        let data = json!({"Name": "web", "N": 3, "F": 1.5, "L": [{"Name": "x"}]});
        assert_eq!(
            run("{{printf \"%s-%03d\" .Name .N}}", data.clone()),
            "web-003"
        );
        assert_eq!(run("{{.Name | printf \"%q\"}}", data.clone()), "\"web\"");
        assert_eq!(run("{{(index .L 0).Name}}", data.clone()), "x");
        assert_eq!(run("{{print .N .F \"s\" 1}}", data.clone()), "3 1.5s1");
        assert_eq!(
            run("{{printf \"%d %v\" .Name}}", data),
            "%!d(string=web) %!v(MISSING)"
        );
    }

    #[test]
    fn comparisons_follow_go() {
        let data = json!({"I": 2, "S": "b"});
        assert_eq!(
            run(
                "{{eq .I 2}} {{eq .S \"a\" \"b\"}} {{ne .I 3}} {{lt .I 3}} {{ge .S \"c\"}}",
                data.clone()
            ),
            "true true true true false"
        );
        assert!(
            fails("{{eq .I \"2\"}}", data.clone())
                .message
                .contains("incompatible types")
        );
        assert_eq!(run("{{eq .Missing nil}}", data), "true");
    }

    #[test]
    fn and_or_short_circuit_and_return_operands() {
        let data = json!({"A": "a", "E": ""});
        assert_eq!(
            run("{{and .A .E}}|{{or .E .A}}|{{or .E .Missing}}", data),
            "|a|<no value>"
        );
        // The right side is not evaluated once the answer is known.
        assert_eq!(run("{{or .A (index .A 99)}}", json!({"A": "x"})), "x");
    }

    #[test]
    fn go_value_formatting() {
        let data = json!({"L": [1, "a", true], "M": {"b": 1, "a": [2]}, "F": 1000000.0, "G": 0.5, "H": 123456.0});
        assert_eq!(
            run("{{.L}} {{.M}} {{.F}} {{.G}} {{.H}}", data),
            "[1 a true] map[a:[2] b:1] 1e+06 0.5 123456"
        );
        assert_eq!(format_float_g(1.234567e-5), "1.234567e-05");
        assert_eq!(format_float_g(-0.001), "-0.001");
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = fails("ok\n\n{{ if .A }}x", json!({}));
        assert_eq!(err.line, 3);
        assert!(err.message.contains("has no {{end}}"), "{err}");
        assert!(
            fails("{{end}}", json!({}))
                .message
                .contains("unexpected {{end}}")
        );
        assert!(
            fails("{{ .A", json!({}))
                .message
                .contains("unclosed action")
        );
        assert!(
            fails("{{ nosuch .A }}", json!({}))
                .message
                .contains("function \"nosuch\" not defined")
        );
        assert!(
            fails("{{ break }}", json!({}))
                .message
                .contains("outside {{range}}")
        );
        assert!(
            fails("{{ define \"x\" }}{{end}}", json!({}))
                .message
                .contains("not supported")
        );
        assert!(
            fails("{{ .A B }}", json!({}))
                .message
                .contains("function \"B\" not defined")
        );
    }

    #[test]
    fn strings_with_braces_and_escapes() {
        assert_eq!(
            run(
                "{{ \"}}\" }} {{ `raw\\n` }} {{ \"a\\tb\\u00e9\" }} {{ 'a' }}",
                json!({})
            ),
            "}} raw\\n a\tbé 97"
        );
    }

    #[test]
    fn actions_may_span_lines_and_lines_are_counted() {
        let err = fails("a\n{{ .X\n }}\n{{ .Y.Z }}", json!({"X": 1, "Y": "s"}));
        assert_eq!(err.line, 4);
    }

    #[test]
    fn deep_nesting_is_refused_not_crashing() {
        let source = "{{if 1}}".repeat(MAX_NESTING + 5) + &"{{end}}".repeat(MAX_NESTING + 5);
        assert!(
            fails(&source, json!({}))
                .message
                .contains("nested too deeply")
        );
        let parens = format!("{{{{{}1{}}}}}", "(".repeat(500), ")".repeat(500));
        assert!(
            fails(&parens, json!({}))
                .message
                .contains("nested too deeply")
        );
    }

    #[test]
    fn runaway_ranges_stop() {
        assert!(
            fails("{{range 100000000000}}x{{end}}", json!({}))
                .message
                .contains("too many steps")
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn fragment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("{{".to_string()),
                Just("}}".to_string()),
                Just("{{- ".to_string()),
                Just(" -}}".to_string()),
                Just("{{end}}".to_string()),
                Just("{{else}}".to_string()),
                Just("{{ range $i, $e := .L }}".to_string()),
                Just("{{if .A}}".to_string()),
                Just("{{with .M}}".to_string()),
                Just("{{/*".to_string()),
                Just("*/}}".to_string()),
                Just("{{ index .L 0 }}".to_string()),
                Just("{{ printf \"%d%s%q\" . }}".to_string()),
                Just("{{break}}".to_string()),
                Just("$".to_string()),
                Just("(".to_string()),
                Just(")".to_string()),
                Just("|".to_string()),
                Just(".A.B".to_string()),
                Just("\"".to_string()),
                Just("`".to_string()),
                Just("'".to_string()),
                "[ -~\\n\\té]{0,8}",
            ]
        }

        proptest! {
            #[test]
            fn arbitrary_text_never_panics(source in "\\PC{0,200}") {
                let _ = render("p", &source, &json!({"A": {"B": 1}, "L": [1, "x"], "M": {"k": null}}));
            }

            #[test]
            fn template_like_text_never_panics(parts in proptest::collection::vec(fragment(), 0..40)) {
                let source = parts.concat();
                let _ = render("p", &source, &json!({"A": {"B": 1}, "L": [1, "x"], "M": {"k": null}}));
            }

            #[test]
            fn text_without_delimiters_is_unchanged(source in "[^{}]{0,200}") {
                let rendered = render("p", &source, &json!({})).unwrap();
                prop_assert_eq!(rendered.text, source);
            }
        }
    }
}
