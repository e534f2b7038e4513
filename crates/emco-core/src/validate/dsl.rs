//! A small declarative schema language for request bodies, and the evaluator that checks a body
//! against one.
//!
//! Upstream EMCO checks a body with a JSON schema only *after* decoding it into a Go struct and
//! encoding that struct again, so its schemas see Go's view of the body rather than the bytes the
//! client sent: unknown members are gone, a field without `omitempty` that the client left out is
//! there with its zero value (`""`, `0`, `false`, `null` for slices and maps), and an `omitempty`
//! field holding its zero value is gone. Every field here therefore says how upstream's struct
//! encodes it ([`Encoding`]); the evaluator applies that view first and the rules second, so that a
//! body is accepted exactly when upstream accepts it.
//!
//! Nested definitions and `$ref`s of the upstream schemas become plain Rust functions returning a
//! [`Schema`]; patterns are compiled once, on first use ([`Pattern`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

/// A regular expression from a schema, compiled on first use and kept for the life of the process.
pub struct Pattern {
    source: &'static str,
    regex: LazyLock<Regex>,
}

impl Pattern {
    /// Use through the [`pattern!`](crate::validate::dsl::pattern) macro, which supplies both halves.
    pub const fn new(source: &'static str, regex: LazyLock<Regex>) -> Self {
        Self { source, regex }
    }

    /// The pattern as written in the schema.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Whether `text` contains a match (JSON schema patterns are not implicitly anchored).
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// Compiles a built-in pattern. The patterns are constants of this crate, checked by a unit test,
/// so failure here is a programming error rather than bad input.
pub fn compile(source: &str) -> Regex {
    #[allow(clippy::expect_used)]
    Regex::new(source).expect("built-in validation pattern must compile")
}

/// Declares a `static` [`Pattern`]: `pattern!(pub NAME = "^...$");`.
macro_rules! pattern {
    ($vis:vis $name:ident = $source:literal) => {
        $vis static $name: $crate::validate::dsl::Pattern = $crate::validate::dsl::Pattern::new(
            $source,
            ::std::sync::LazyLock::new(|| $crate::validate::dsl::compile($source)),
        );
    };
}
pub(crate) use pattern;

/// A named check of a string's content that a regular expression cannot express well
/// (an IPv4 CIDR, a Kubernetes label, ...).
#[derive(Clone, Copy)]
pub struct Format {
    /// Used in messages: "is not a valid {name}".
    pub name: &'static str,
    pub is_valid: fn(&str) -> bool,
}

/// What the rules say about one JSON value.
pub enum Schema {
    /// Anything (Go `interface{}`).
    Any,
    String(StringRule),
    Integer(IntegerRule),
    Boolean,
    Array(Box<ArrayRule>),
    /// A Go struct: a fixed set of fields; members it does not name are ignored, as Go drops them.
    Struct(Box<StructRule>),
    /// A Go map: every member is kept and checked.
    Map(Box<MapRule>),
}

#[derive(Default)]
pub struct StringRule {
    min_chars: Option<usize>,
    max_chars: Option<usize>,
    pattern: Option<&'static Pattern>,
    allowed: Option<&'static [&'static str]>,
    format: Option<Format>,
}

#[derive(Default)]
pub struct IntegerRule {
    minimum: Option<i64>,
    maximum: Option<i64>,
}

pub struct ArrayRule {
    items: Schema,
    /// Whether `null` passes: upstream schemas that give no `type` let a nil slice through.
    null_allowed: bool,
}

pub struct MapRule {
    values: Schema,
    /// Rules for particular members, replacing `values` for them.
    members: Vec<(&'static str, Schema)>,
    required: Vec<&'static str>,
    /// Whether `null` passes: upstream schemas that give no `type` let a nil map through.
    null_allowed: bool,
}

pub struct StructRule {
    fields: Vec<Field>,
    one_of: Vec<Branch>,
    any_of: Vec<Branch>,
    checks: Vec<Check>,
}

/// How upstream's Go struct field is encoded, which decides what its schema saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No `omitempty`: a missing or `null` value is seen as the Go zero value.
    Kept,
    /// `omitempty`: a zero value (`""`, `0`, `false`, `[]`, `{}`) is seen as missing.
    /// Go ignores `omitempty` on struct-typed fields, and so does the evaluator.
    OmitEmpty,
    /// A pointer with `omitempty`: only a missing or `null` value is seen as missing.
    Pointer,
}

pub struct Field {
    name: &'static str,
    schema: Schema,
    encoding: Encoding,
    required: bool,
}

/// One alternative of a `oneOf`/`anyOf` over the members of a struct.
pub struct Branch {
    label: &'static str,
    required: Vec<&'static str>,
    forbidden: Vec<&'static str>,
    rules: Vec<(&'static str, Schema)>,
}

/// A rule across several fields of one struct, run after its fields passed their own rules.
pub struct Check {
    /// Names the rule in [`Rule::Check`].
    pub name: &'static str,
    pub run: fn(&Fields<'_>) -> Result<(), CheckError>,
}

/// What a [`Check`] found wrong: `field` is relative to the struct (empty for the struct itself).
#[derive(Debug)]
pub struct CheckError {
    pub field: String,
    pub message: String,
}

impl CheckError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Builders.

pub fn any() -> Schema {
    Schema::Any
}

pub fn string() -> StringRule {
    StringRule::default()
}

pub fn integer() -> IntegerRule {
    IntegerRule::default()
}

pub fn boolean() -> Schema {
    Schema::Boolean
}

pub fn array(items: impl Into<Schema>) -> ArrayRule {
    ArrayRule {
        items: items.into(),
        null_allowed: false,
    }
}

pub fn map(values: impl Into<Schema>) -> MapRule {
    MapRule {
        values: values.into(),
        members: Vec::new(),
        required: Vec::new(),
        null_allowed: false,
    }
}

pub fn structure(fields: impl IntoIterator<Item = Field>) -> StructRule {
    StructRule {
        fields: fields.into_iter().collect(),
        one_of: Vec::new(),
        any_of: Vec::new(),
        checks: Vec::new(),
    }
}

/// A field without `omitempty`.
pub fn kept(name: &'static str, schema: impl Into<Schema>) -> Field {
    Field {
        name,
        schema: schema.into(),
        encoding: Encoding::Kept,
        required: false,
    }
}

/// A field with `omitempty`.
pub fn omitempty(name: &'static str, schema: impl Into<Schema>) -> Field {
    Field {
        name,
        schema: schema.into(),
        encoding: Encoding::OmitEmpty,
        required: false,
    }
}

/// A pointer field with `omitempty`.
pub fn pointer(name: &'static str, schema: impl Into<Schema>) -> Field {
    Field {
        name,
        schema: schema.into(),
        encoding: Encoding::Pointer,
        required: false,
    }
}

impl Field {
    /// Listed in the schema's `required`.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

impl StringRule {
    pub fn min_chars(mut self, n: usize) -> Self {
        self.min_chars = Some(n);
        self
    }
    pub fn max_chars(mut self, n: usize) -> Self {
        self.max_chars = Some(n);
        self
    }
    pub fn pattern(mut self, pattern: &'static Pattern) -> Self {
        self.pattern = Some(pattern);
        self
    }
    pub fn one_of(mut self, allowed: &'static [&'static str]) -> Self {
        self.allowed = Some(allowed);
        self
    }
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }
}

impl IntegerRule {
    pub fn min(mut self, n: i64) -> Self {
        self.minimum = Some(n);
        self
    }
    pub fn max(mut self, n: i64) -> Self {
        self.maximum = Some(n);
        self
    }
}

impl ArrayRule {
    pub fn null_allowed(mut self) -> Self {
        self.null_allowed = true;
        self
    }
}

impl MapRule {
    pub fn member(mut self, name: &'static str, schema: impl Into<Schema>) -> Self {
        self.members.push((name, schema.into()));
        self
    }
    pub fn require(mut self, names: impl IntoIterator<Item = &'static str>) -> Self {
        self.required.extend(names);
        self
    }
    pub fn null_allowed(mut self) -> Self {
        self.null_allowed = true;
        self
    }
}

impl StructRule {
    /// Exactly one branch must hold.
    pub fn one_of(mut self, branches: impl IntoIterator<Item = Branch>) -> Self {
        self.one_of.extend(branches);
        self
    }
    /// At least one branch must hold.
    pub fn any_of(mut self, branches: impl IntoIterator<Item = Branch>) -> Self {
        self.any_of.extend(branches);
        self
    }
    pub fn check(
        mut self,
        name: &'static str,
        run: fn(&Fields<'_>) -> Result<(), CheckError>,
    ) -> Self {
        self.checks.push(Check { name, run });
        self
    }
}

impl Branch {
    pub fn new(label: &'static str) -> Self {
        Self {
            label,
            required: Vec::new(),
            forbidden: Vec::new(),
            rules: Vec::new(),
        }
    }
    pub fn requires(mut self, names: impl IntoIterator<Item = &'static str>) -> Self {
        self.required.extend(names);
        self
    }
    /// `"not": {"required": [...]}`: none of these may be present.
    pub fn forbids(mut self, names: impl IntoIterator<Item = &'static str>) -> Self {
        self.forbidden.extend(names);
        self
    }
    pub fn rule(mut self, name: &'static str, schema: impl Into<Schema>) -> Self {
        self.rules.push((name, schema.into()));
        self
    }
}

impl From<StringRule> for Schema {
    fn from(rule: StringRule) -> Self {
        Schema::String(rule)
    }
}
impl From<IntegerRule> for Schema {
    fn from(rule: IntegerRule) -> Self {
        Schema::Integer(rule)
    }
}
impl From<ArrayRule> for Schema {
    fn from(rule: ArrayRule) -> Self {
        Schema::Array(Box::new(rule))
    }
}
impl From<MapRule> for Schema {
    fn from(rule: MapRule) -> Self {
        Schema::Map(Box::new(rule))
    }
}
impl From<StructRule> for Schema {
    fn from(rule: StructRule) -> Self {
        Schema::Struct(Box::new(rule))
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// Which rule a body broke; lets tests prove that every rule has a rejecting example.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Type,
    Required,
    MinChars,
    MaxChars,
    Pattern,
    Enum,
    Format,
    Minimum,
    Maximum,
    OneOf,
    AnyOf,
    Check(&'static str),
}

/// A broken rule: where (as a concrete path and as the schema path, with `[]` for any array index
/// and `*` for any map member), which rule, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub path: String,
    pub schema_path: String,
    pub rule: Rule,
    pub message: String,
}

/// Where the evaluator stands: the concrete path and the schema path.
#[derive(Clone)]
struct Loc {
    path: String,
    schema_path: String,
}

impl Loc {
    fn root() -> Self {
        Self {
            path: String::new(),
            schema_path: String::new(),
        }
    }

    fn member(&self, name: &str, schema_name: &str) -> Self {
        Self {
            path: join(&self.path, name),
            schema_path: join(&self.schema_path, schema_name),
        }
    }

    fn field(&self, name: &str) -> Self {
        self.member(name, name)
    }

    fn index(&self, i: usize) -> Self {
        Self {
            path: format!("{}[{i}]", self.path),
            schema_path: format!("{}[]", self.schema_path),
        }
    }

    fn fail(&self, rule: Rule, message: impl Into<String>) -> Failure {
        Failure {
            path: display_path(&self.path),
            schema_path: self.schema_path.clone(),
            rule,
            message: message.into(),
        }
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}.{name}")
    }
}

/// The whole body is called `(root)` in messages, as upstream's validator calls it.
fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(root)".to_owned()
    } else {
        path.to_owned()
    }
}

impl Schema {
    /// Checks a whole request body.
    pub fn check_body(&self, body: &Value) -> Result<(), Failure> {
        self.check(body, &Loc::root(), false)
    }

    /// `substituted`: the value is a zero value standing in for one the client left out, so a
    /// rule it breaks is reported as "is required".
    fn check(&self, value: &Value, loc: &Loc, substituted: bool) -> Result<(), Failure> {
        let result = self.check_present(value, loc);
        match result {
            Err(failure) if substituted && failure.path == display_path(&loc.path) => {
                Err(Failure {
                    rule: Rule::Required,
                    message: "is required".to_owned(),
                    ..failure
                })
            }
            other => other,
        }
    }

    fn check_present(&self, value: &Value, loc: &Loc) -> Result<(), Failure> {
        match self {
            Schema::Any => Ok(()),
            Schema::String(rule) => match value {
                Value::String(text) => rule.check(text, loc),
                _ => Err(loc.fail(Rule::Type, "must be a string")),
            },
            Schema::Integer(rule) => rule.check(value, loc),
            Schema::Boolean => match value {
                Value::Bool(_) => Ok(()),
                _ => Err(loc.fail(Rule::Type, "must be a boolean")),
            },
            Schema::Array(rule) => rule.check(value, loc),
            Schema::Map(rule) => rule.check(value, loc),
            Schema::Struct(rule) => match value {
                Value::Object(members) => rule.check_members(members, loc),
                _ => Err(loc.fail(Rule::Type, "must be an object")),
            },
        }
    }

    /// What Go encodes for a field of this type that was never set.
    fn zero_value(&self) -> Value {
        match self {
            Schema::String(_) => Value::String(String::new()),
            Schema::Integer(_) => Value::from(0),
            Schema::Boolean => Value::Bool(false),
            Schema::Struct(_) => Value::Object(Map::new()),
            Schema::Any | Schema::Array(_) | Schema::Map(_) => Value::Null,
        }
    }

    /// Whether Go's `omitempty` drops this value (a struct is never dropped).
    fn is_empty_value(&self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) => true,
            (Schema::String(_), Value::String(text)) => text.is_empty(),
            (Schema::Integer(_), Value::Number(n)) => n.as_i64() == Some(0),
            (Schema::Boolean, Value::Bool(b)) => !b,
            (Schema::Array(_), Value::Array(items)) => items.is_empty(),
            (Schema::Map(_), Value::Object(members)) => members.is_empty(),
            _ => false,
        }
    }

    fn is_struct(&self) -> bool {
        matches!(self, Schema::Struct(_))
    }
}

impl StringRule {
    fn check(&self, text: &str, loc: &Loc) -> Result<(), Failure> {
        // Upstream counts characters (runes), not bytes.
        let chars = text.chars().count();
        if let Some(max) = self.max_chars
            && chars > max
        {
            return Err(loc.fail(Rule::MaxChars, format!("longer than {max} characters")));
        }
        if let Some(min) = self.min_chars
            && chars < min
        {
            let message = if text.is_empty() {
                "must not be empty".to_owned()
            } else {
                format!("shorter than {min} characters")
            };
            return Err(loc.fail(Rule::MinChars, message));
        }
        if let Some(pattern) = self.pattern
            && !pattern.is_match(text)
        {
            let message = if text.is_empty() {
                "must not be empty".to_owned()
            } else {
                format!("does not match pattern {}", pattern.source())
            };
            return Err(loc.fail(Rule::Pattern, message));
        }
        if let Some(allowed) = self.allowed
            && !allowed.contains(&text)
        {
            let shown: Vec<String> = allowed.iter().map(|v| format!("{v:?}")).collect();
            return Err(loc.fail(Rule::Enum, format!("must be one of {}", shown.join(", "))));
        }
        if let Some(format) = self.format
            && !(format.is_valid)(text)
        {
            return Err(loc.fail(Rule::Format, format!("is not a valid {}", format.name)));
        }
        Ok(())
    }
}

impl IntegerRule {
    fn check(&self, value: &Value, loc: &Loc) -> Result<(), Failure> {
        // Go decodes only integer literals that fit its integer types into integer fields.
        let Some(n) = value.as_i64() else {
            return Err(loc.fail(Rule::Type, "must be an integer"));
        };
        if let Some(min) = self.minimum
            && n < min
        {
            return Err(loc.fail(Rule::Minimum, format!("must be at least {min}")));
        }
        if let Some(max) = self.maximum
            && n > max
        {
            return Err(loc.fail(Rule::Maximum, format!("must be at most {max}")));
        }
        Ok(())
    }
}

impl ArrayRule {
    fn check(&self, value: &Value, loc: &Loc) -> Result<(), Failure> {
        match value {
            Value::Null if self.null_allowed => Ok(()),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    // Go decodes a `null` element as the element type's zero value.
                    let (item, substituted) = match item {
                        Value::Null => (Cow::Owned(self.items.zero_value()), true),
                        other => (Cow::Borrowed(other), false),
                    };
                    self.items.check(&item, &loc.index(i), substituted)?;
                }
                Ok(())
            }
            _ => Err(loc.fail(Rule::Type, "must be an array")),
        }
    }
}

impl MapRule {
    fn check(&self, value: &Value, loc: &Loc) -> Result<(), Failure> {
        let members = match value {
            Value::Null if self.null_allowed => return Ok(()),
            Value::Object(members) => members,
            _ => return Err(loc.fail(Rule::Type, "must be an object")),
        };
        for name in &self.required {
            if !members.contains_key(*name) {
                return Err(loc.field(name).fail(Rule::Required, "is required"));
            }
        }
        for (name, member) in members {
            let (schema, member_loc) = match self.members.iter().find(|(known, _)| known == name) {
                Some((known, schema)) => (schema, loc.field(known)),
                None => (&self.values, loc.member(name, "*")),
            };
            let (member, substituted) = match member {
                Value::Null => (Cow::Owned(schema.zero_value()), true),
                other => (Cow::Borrowed(other), false),
            };
            schema.check(&member, &member_loc, substituted)?;
        }
        Ok(())
    }
}

/// A struct's fields as upstream's schema saw them: after Go's decoding and re-encoding.
pub struct Fields<'a> {
    values: Vec<(&'static str, Option<Cow<'a, Value>>)>,
}

impl<'a> Fields<'a> {
    /// The field's value, `None` when upstream's encoding leaves it out.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(field, _)| *field == name)
            .and_then(|(_, value)| value.as_deref())
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    pub fn i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    fn is_present(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl StructRule {
    fn check_members(&self, members: &Map<String, Value>, loc: &Loc) -> Result<(), Failure> {
        let mut fields = Fields {
            values: Vec::with_capacity(self.fields.len()),
        };
        for field in &self.fields {
            let raw = members.get(field.name).filter(|value| !value.is_null());
            let field_loc = loc.field(field.name);
            let seen = match (raw, field.encoding) {
                (None, Encoding::Kept) => Some((Cow::Owned(field.schema.zero_value()), true)),
                (None, Encoding::OmitEmpty) if field.schema.is_struct() => {
                    Some((Cow::Owned(field.schema.zero_value()), true))
                }
                (None, _) => None,
                (Some(value), Encoding::OmitEmpty)
                    if !field.schema.is_struct() && field.schema.is_empty_value(value) =>
                {
                    None
                }
                (Some(value), _) => Some((Cow::Borrowed(value), false)),
            };
            match &seen {
                None if field.required => return Err(field_loc.fail(Rule::Required, "is required")),
                None => {}
                Some((value, substituted)) => {
                    field.schema.check(value, &field_loc, *substituted)?
                }
            }
            fields
                .values
                .push((field.name, seen.map(|(value, _)| value)));
        }
        if !self.one_of.is_empty() {
            check_branches(&self.one_of, &fields, loc, Combinator::OneOf)?;
        }
        if !self.any_of.is_empty() {
            check_branches(&self.any_of, &fields, loc, Combinator::AnyOf)?;
        }
        for check in &self.checks {
            if let Err(problem) = (check.run)(&fields) {
                let path = if problem.field.is_empty() {
                    loc.path.clone()
                } else {
                    join(&loc.path, &problem.field)
                };
                return Err(Failure {
                    path: display_path(&path),
                    schema_path: loc.schema_path.clone(),
                    rule: Rule::Check(check.name),
                    message: problem.message,
                });
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Combinator {
    OneOf,
    AnyOf,
}

impl Branch {
    /// Whether the branch's presence conditions hold (its `required` and `not required`).
    fn shape_matches(&self, fields: &Fields<'_>) -> bool {
        self.required.iter().all(|name| fields.is_present(name))
            && !self.forbidden.iter().any(|name| fields.is_present(name))
    }

    fn check(&self, fields: &Fields<'_>, loc: &Loc) -> Result<(), Failure> {
        for name in &self.required {
            if !fields.is_present(name) {
                return Err(loc.field(name).fail(Rule::Required, "is required"));
            }
        }
        for name in &self.forbidden {
            if fields.is_present(name) {
                return Err(loc
                    .field(name)
                    .fail(Rule::OneOf, format!("must not be set ({})", self.label)));
            }
        }
        for (name, schema) in &self.rules {
            if let Some(value) = fields.get(name) {
                schema.check(value, &loc.field(name), false)?;
            }
        }
        Ok(())
    }
}

fn check_branches(
    branches: &[Branch],
    fields: &Fields<'_>,
    loc: &Loc,
    combinator: Combinator,
) -> Result<(), Failure> {
    let outcomes: Vec<Result<(), Failure>> = branches
        .iter()
        .map(|branch| branch.check(fields, loc))
        .collect();
    let holding: Vec<&'static str> = branches
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(branch, _)| branch.label)
        .collect();
    let rule = match combinator {
        Combinator::OneOf => Rule::OneOf,
        Combinator::AnyOf => Rule::AnyOf,
    };
    match (combinator, holding.len()) {
        (Combinator::OneOf, 1) | (Combinator::AnyOf, 1..) => Ok(()),
        (Combinator::OneOf, 2..) => Err(loc.fail(
            rule,
            format!("must match exactly one of: {}", holding.join("; ")),
        )),
        _ => {
            // When the body has the shape of exactly one branch, that branch's own complaint is
            // the useful one (say, a number below its minimum); otherwise list the choices.
            let shaped: Vec<usize> = (0..branches.len())
                .filter(|&i| branches[i].shape_matches(fields))
                .collect();
            if let [only] = shaped[..]
                && let Err(failure) = &outcomes[only]
            {
                return Err(failure.clone());
            }
            let labels: Vec<&str> = branches.iter().map(|branch| branch.label).collect();
            let verb = match combinator {
                Combinator::OneOf => "must match exactly one of",
                Combinator::AnyOf => "must match at least one of",
            };
            Err(loc.fail(rule, format!("{verb}: {}", labels.join("; "))))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rule listing, so tests can demand a rejecting example for each rule.

/// One rule a schema can reject a body for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleSite {
    pub schema_path: String,
    pub rule: Rule,
}

impl fmt::Display for RuleSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", display_path(&self.schema_path), self.rule)
    }
}

impl Schema {
    /// Every rule of this schema except type checks (which mirror Go's decoder rather than the
    /// upstream schemas).
    pub fn rule_sites(&self) -> Vec<RuleSite> {
        let mut sites = Vec::new();
        self.collect_sites(&Loc::root(), &mut sites);
        sites.sort();
        sites.dedup();
        sites
    }

    fn collect_sites(&self, loc: &Loc, out: &mut Vec<RuleSite>) {
        let mut add = |rule: Rule| {
            out.push(RuleSite {
                schema_path: loc.schema_path.clone(),
                rule,
            })
        };
        match self {
            Schema::Any | Schema::Boolean => {}
            Schema::String(rule) => {
                if rule.min_chars.is_some() {
                    add(Rule::MinChars);
                }
                if rule.max_chars.is_some() {
                    add(Rule::MaxChars);
                }
                if rule.pattern.is_some() {
                    add(Rule::Pattern);
                }
                if rule.allowed.is_some() {
                    add(Rule::Enum);
                }
                if rule.format.is_some() {
                    add(Rule::Format);
                }
            }
            Schema::Integer(rule) => {
                if rule.minimum.is_some() {
                    add(Rule::Minimum);
                }
                if rule.maximum.is_some() {
                    add(Rule::Maximum);
                }
            }
            Schema::Array(rule) => rule.items.collect_sites(&loc.index(0), out),
            Schema::Map(rule) => {
                for name in &rule.required {
                    out.push(RuleSite {
                        schema_path: loc.field(name).schema_path,
                        rule: Rule::Required,
                    });
                }
                for (name, schema) in &rule.members {
                    schema.collect_sites(&loc.field(name), out);
                }
                rule.values.collect_sites(&loc.member("*", "*"), out);
            }
            Schema::Struct(rule) => {
                for field in &rule.fields {
                    let field_loc = loc.field(field.name);
                    // `required` on a field Go always encodes holds by itself; such a field is
                    // effectively required only when its zero value breaks a rule.
                    let required_holds_by_itself =
                        field.encoding == Encoding::Kept || field.schema.is_struct();
                    if (field.required && !required_holds_by_itself) || field.fails_when_missing() {
                        out.push(RuleSite {
                            schema_path: field_loc.schema_path.clone(),
                            rule: Rule::Required,
                        });
                    }
                    field.schema.collect_sites(&field_loc, out);
                }
                for (branches, rule_kind) in
                    [(&rule.one_of, Rule::OneOf), (&rule.any_of, Rule::AnyOf)]
                {
                    if branches.is_empty() {
                        continue;
                    }
                    out.push(RuleSite {
                        schema_path: loc.schema_path.clone(),
                        rule: rule_kind,
                    });
                    for branch in branches {
                        for (name, schema) in &branch.rules {
                            schema.collect_sites(&loc.field(name), out);
                        }
                    }
                }
                for check in &rule.checks {
                    out.push(RuleSite {
                        schema_path: loc.schema_path.clone(),
                        rule: Rule::Check(check.name),
                    });
                }
            }
        }
    }
}

impl Field {
    /// Whether leaving the field out breaks a rule: its zero value, as upstream sees it, fails.
    fn fails_when_missing(&self) -> bool {
        if self.encoding != Encoding::Kept || self.schema.is_struct() {
            return false;
        }
        self.schema
            .check(&self.schema.zero_value(), &Loc::root(), false)
            .is_err()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod tests {
    use serde_json::json;

    use super::*;

    pattern!(DIGITS = "^[0-9]+$");

    fn sample() -> Schema {
        structure([
            kept("name", string().max_chars(5).pattern(&DIGITS)),
            kept("label", string()),
            omitempty("count", integer().min(1).max(3)).required(),
            pointer("flag", boolean()).required(),
            kept("items", array(string().one_of(&["a", "b"]))),
            kept("tags", map(string().min_chars(2)).null_allowed()),
            kept(
                "choice",
                structure([omitempty("x", string()), omitempty("y", string())]).one_of([
                    Branch::new("x").requires(["x"]),
                    Branch::new("y").requires(["y"]),
                ]),
            ),
        ])
        .into()
    }

    fn failure(body: Value) -> Failure {
        match sample().check_body(&body) {
            Err(failure) => failure,
            Ok(()) => panic!("expected {body} to be rejected"),
        }
    }

    fn good() -> Value {
        json!({"name": "12", "count": 2, "flag": false, "items": ["a"], "choice": {"x": "1"}})
    }

    #[test]
    fn accepts_a_body_that_follows_every_rule() {
        assert_eq!(sample().check_body(&good()), Ok(()));
    }

    #[test]
    fn kept_string_left_out_is_required_when_its_zero_value_fails() {
        let mut body = good();
        body.as_object_mut().map(|o| o.remove("name"));
        let failure = failure(body);
        assert_eq!(
            (failure.path.as_str(), failure.message.as_str()),
            ("name", "is required")
        );
        assert_eq!(failure.rule, Rule::Required);
    }

    #[test]
    fn omitempty_zero_counts_as_missing() {
        let mut body = good();
        body["count"] = json!(0);
        let failure = failure(body);
        assert_eq!(
            (failure.path.as_str(), failure.message.as_str()),
            ("count", "is required")
        );
    }

    #[test]
    fn pointer_false_is_present_but_null_is_missing() {
        let mut body = good();
        body["flag"] = json!(null);
        assert_eq!(failure(body).path, "flag");
    }

    #[test]
    fn kept_slice_left_out_is_null_and_fails_its_array_type() {
        let mut body = good();
        body.as_object_mut().map(|o| o.remove("items"));
        let failure = failure(body);
        assert_eq!(
            (failure.path.as_str(), failure.message.as_str()),
            ("items", "is required")
        );
    }

    #[test]
    fn nullable_map_may_be_left_out_but_members_are_checked() {
        let mut body = good();
        body["tags"] = json!({"k": "v"});
        let failure = failure(body);
        assert_eq!(
            (failure.path.as_str(), failure.schema_path.as_str()),
            ("tags.k", "tags.*")
        );
        assert_eq!(failure.message, "shorter than 2 characters");
    }

    #[test]
    fn array_items_report_their_index() {
        let mut body = good();
        body["items"] = json!(["a", "c"]);
        let failure = failure(body);
        assert_eq!(
            (failure.path.as_str(), failure.schema_path.as_str()),
            ("items[1]", "items[]")
        );
        assert_eq!(failure.message, r#"must be one of "a", "b""#);
    }

    #[test]
    fn one_of_rejects_none_and_both() {
        let mut body = good();
        body["choice"] = json!({});
        assert_eq!(
            failure(body.clone()).message,
            "must match exactly one of: x; y"
        );
        body["choice"] = json!({"x": "1", "y": "2"});
        assert_eq!(failure(body).message, "must match exactly one of: x; y");
    }

    #[test]
    fn unknown_members_of_a_struct_are_ignored_like_go_does() {
        let mut body = good();
        body["whatever"] = json!([1, 2, 3]);
        assert_eq!(sample().check_body(&body), Ok(()));
    }

    #[test]
    fn wrong_types_are_named() {
        let mut body = good();
        body["count"] = json!(1.5);
        assert_eq!(failure(body.clone()).message, "must be an integer");
        body["count"] = json!(2);
        body["name"] = json!(12);
        assert_eq!(failure(body).message, "must be a string");
        assert_eq!(failure(json!([1])).path, "(root)");
    }

    #[test]
    fn characters_are_counted_not_bytes() {
        let schema: Schema = string().max_chars(2).into();
        assert_eq!(schema.check_body(&json!("éé")), Ok(()));
        assert!(schema.check_body(&json!("ééé")).is_err());
    }

    #[test]
    fn rule_sites_list_required_fields_and_constraints() {
        let sites: Vec<String> = sample()
            .rule_sites()
            .iter()
            .map(ToString::to_string)
            .collect();
        for expected in [
            "name Required",
            "name Pattern",
            "count Required",
            "count Maximum",
            "items[] Enum",
            "choice OneOf",
        ] {
            assert!(
                sites.iter().any(|s| s == expected),
                "{expected} missing from {sites:?}"
            );
        }
        // An empty string passes `label`'s rules, so leaving it out is no rule.
        assert!(!sites.iter().any(|s| s == "label Required"));
    }
}
