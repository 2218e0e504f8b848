//! Evaluating parsed template expressions: ARM's template functions over JSON values.
//!
//! What a function needs from the deployment (parameters, variables, the resource group,
//! `reference()`) comes through [`Scope`], so this module knows nothing about HTTP or state.

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::expr::{classify, parse, Expr, TemplateString};

/// An evaluation failure, worded like ARM's `InvalidTemplate` messages.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl EvalError {
    fn function(name: &str, why: impl std::fmt::Display) -> Self {
        EvalError(format!(
            "Unable to evaluate template language function '{name}': {why}"
        ))
    }
}

impl From<super::expr::ParseError> for EvalError {
    fn from(e: super::expr::ParseError) -> Self {
        EvalError(e.to_string())
    }
}

/// What the deployment being evaluated provides to template functions.
pub trait Scope {
    fn parameter(&self, name: &str) -> Result<Value, EvalError>;
    fn variable(&self, name: &str) -> Result<Value, EvalError>;
    /// `resourceGroup()`: at least `id`, `name`, `location`.
    fn resource_group(&self) -> Value;
    /// `subscription()`: at least `id`, `subscriptionId`.
    fn subscription(&self) -> Value;
    /// `deployment()`.
    fn deployment(&self) -> Value;
    /// `reference(idOrName, apiVersion, 'Full')`: the resource's runtime properties, or the
    /// whole resource object when `full`.
    fn reference(&self, id_or_name: &str, full: bool) -> Result<Value, EvalError>;
    /// `copyIndex()` inside a resource `copy` loop.
    fn copy_index(&self) -> Result<i64, EvalError>;
}

/// Evaluates every expression string inside a template value (objects and arrays recursively).
pub fn eval_value(v: &Value, scope: &dyn Scope) -> Result<Value, EvalError> {
    Ok(match v {
        Value::String(s) => eval_string(s, scope)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| eval_value(x, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, x) in map {
                out.insert(k.clone(), eval_value(x, scope)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// One template string: literal text, or the value of its expression.
pub fn eval_string(s: &str, scope: &dyn Scope) -> Result<Value, EvalError> {
    match classify(s) {
        TemplateString::Literal(text) => Ok(Value::String(text.into_owned())),
        TemplateString::Expression(inner) => eval(&parse(inner)?, scope),
    }
}

/// Evaluates one expression.
pub fn eval(e: &Expr, scope: &dyn Scope) -> Result<Value, EvalError> {
    match e {
        Expr::Str(s) => Ok(Value::String(s.clone())),
        Expr::Int(n) => Ok(json!(n)),
        Expr::Bool(b) => Ok(Value::Bool(*b)),
        Expr::Null => Ok(Value::Null),
        Expr::Property { target, name } => {
            let v = eval(target, scope)?;
            property(&v, name).ok_or_else(|| {
                EvalError(format!(
                    "The language expression property '{name}' doesn't exist, available properties are '{}'.",
                    available(&v)
                ))
            })
        }
        Expr::Index { target, index } => {
            let v = eval(target, scope)?;
            let i = eval(index, scope)?;
            match (&v, &i) {
                (Value::Array(items), Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| items.get(usize::try_from(n).ok()?))
                    .cloned()
                    .ok_or_else(|| {
                        EvalError(format!(
                            "The language expression property array index '{n}' is out of bounds."
                        ))
                    }),
                (Value::Object(_), Value::String(k)) => property(&v, k).ok_or_else(|| {
                    EvalError(format!(
                        "The language expression property '{k}' doesn't exist, available properties are '{}'.",
                        available(&v)
                    ))
                }),
                _ => Err(EvalError(format!(
                    "The language expression index '{}' cannot be applied to a value of type '{}'.",
                    display(&i),
                    type_name(&v)
                ))),
            }
        }
        Expr::Call { name, args } => call(name, args, scope),
    }
}

/// Object property access; ARM matches property names case-insensitively.
fn property(v: &Value, name: &str) -> Option<Value> {
    let map = v.as_object()?;
    map.get(name)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, x)| x)
        })
        .cloned()
}

fn available(v: &Value) -> String {
    v.as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// ARM's name for a JSON value's type, as in its error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "Integer",
        Value::Number(_) => "Float",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

/// How `string()`, `format()` and `concat()` render a value (.NET style booleans).
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn want_str<'v>(f: &str, v: &'v Value) -> Result<&'v str, EvalError> {
    v.as_str().ok_or_else(|| {
        EvalError::function(
            f,
            format!(
                "expected a value of type 'String' but got '{}'.",
                type_name(v)
            ),
        )
    })
}

fn want_int(f: &str, v: &Value) -> Result<i64, EvalError> {
    v.as_i64().ok_or_else(|| {
        EvalError::function(
            f,
            format!(
                "expected a value of type 'Integer' but got '{}'.",
                type_name(v)
            ),
        )
    })
}

fn want_bool(f: &str, v: &Value) -> Result<bool, EvalError> {
    v.as_bool().ok_or_else(|| {
        EvalError::function(
            f,
            format!(
                "expected a value of type 'Boolean' but got '{}'.",
                type_name(v)
            ),
        )
    })
}

fn arity(f: &str, args: &[Value], min: usize, max: usize) -> Result<(), EvalError> {
    if args.len() < min || args.len() > max {
        let want = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(EvalError::function(
            f,
            format!(
                "the function expects {want} parameter(s) but was given {}.",
                args.len()
            ),
        ));
    }
    Ok(())
}

fn call(name: &str, arg_exprs: &[Expr], scope: &dyn Scope) -> Result<Value, EvalError> {
    let lower = name.to_ascii_lowercase();
    // Lazy: only the branch taken is evaluated (ARM short-circuits `if`).
    if lower == "if" {
        if arg_exprs.len() != 3 {
            return Err(EvalError::function(
                name,
                "the function expects 3 parameter(s).",
            ));
        }
        let cond = want_bool(name, &eval(&arg_exprs[0], scope)?)?;
        return eval(&arg_exprs[if cond { 1 } else { 2 }], scope);
    }
    let args: Vec<Value> = arg_exprs
        .iter()
        .map(|a| eval(a, scope))
        .collect::<Result<_, _>>()?;
    let a = &args;
    let f = name;
    match lower.as_str() {
        "parameters" => {
            arity(f, a, 1, 1)?;
            scope.parameter(want_str(f, &a[0])?)
        }
        "variables" => {
            arity(f, a, 1, 1)?;
            scope.variable(want_str(f, &a[0])?)
        }
        "resourcegroup" => Ok(scope.resource_group()),
        "subscription" => Ok(scope.subscription()),
        "deployment" => Ok(scope.deployment()),
        "copyindex" => {
            arity(f, a, 0, 2)?;
            let offset = match a.last() {
                Some(v) if v.is_i64() => v.as_i64().unwrap_or(0),
                _ => 0,
            };
            Ok(json!(scope.copy_index()? + offset))
        }
        "reference" => {
            arity(f, a, 1, 3)?;
            let target = want_str(f, &a[0])?;
            let full = a.get(2).and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("full"));
            scope.reference(target, full)
        }
        "resourceid" => resource_id(f, a, scope),
        "subscriptionresourceid" => {
            arity(f, a, 2, usize::MAX)?;
            let sub = scope.subscription();
            let sub_id = sub.get("subscriptionId").and_then(Value::as_str).unwrap_or_default();
            let path = provider_path(f, &a[0..])?;
            Ok(json!(format!("/subscriptions/{sub_id}/providers/{path}")))
        }
        "concat" => {
            if a.iter().all(|x| x.is_array()) && !a.is_empty() {
                Ok(Value::Array(a.iter().flat_map(|x| x.as_array().cloned().unwrap_or_default()).collect()))
            } else {
                Ok(Value::String(a.iter().map(display).collect()))
            }
        }
        "format" => {
            arity(f, a, 1, usize::MAX)?;
            format_dotnet(want_str(f, &a[0])?, &a[1..]).map(Value::String)
        }
        "string" => {
            arity(f, a, 1, 1)?;
            Ok(Value::String(display(&a[0])))
        }
        "int" => {
            arity(f, a, 1, 1)?;
            match &a[0] {
                Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|x| x as i64)).map(|n| json!(n)),
                Value::String(s) => s.trim().parse::<i64>().ok().map(|n| json!(n)),
                _ => None,
            }
            .ok_or_else(|| EvalError::function(f, format!("'{}' is not a valid integer.", display(&a[0]))))
        }
        "bool" => {
            arity(f, a, 1, 1)?;
            match &a[0] {
                Value::Bool(b) => Some(*b),
                Value::Number(n) => n.as_i64().map(|n| n != 0),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            }
            .map(Value::Bool)
            .ok_or_else(|| EvalError::function(f, format!("'{}' is not a valid boolean.", display(&a[0]))))
        }
        "json" => {
            arity(f, a, 1, 1)?;
            serde_json::from_str(want_str(f, &a[0])?)
                .map_err(|e| EvalError::function(f, format!("the value is not valid JSON: {e}.")))
        }
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        "null" => Ok(Value::Null),
        "tolower" => {
            arity(f, a, 1, 1)?;
            Ok(json!(want_str(f, &a[0])?.to_lowercase()))
        }
        "toupper" => {
            arity(f, a, 1, 1)?;
            Ok(json!(want_str(f, &a[0])?.to_uppercase()))
        }
        "trim" => {
            arity(f, a, 1, 1)?;
            Ok(json!(want_str(f, &a[0])?.trim()))
        }
        "replace" => {
            arity(f, a, 3, 3)?;
            Ok(json!(want_str(f, &a[0])?.replace(want_str(f, &a[1])?, want_str(f, &a[2])?)))
        }
        "split" => {
            arity(f, a, 2, 2)?;
            let s = want_str(f, &a[0])?;
            let seps: Vec<String> = match &a[1] {
                Value::Array(xs) => xs.iter().map(display).collect(),
                other => vec![want_str(f, other)?.to_string()],
            };
            let mut parts = vec![s.to_string()];
            for sep in seps.iter().filter(|x| !x.is_empty()) {
                parts = parts.iter().flat_map(|p| p.split(sep.as_str()).map(String::from).collect::<Vec<_>>()).collect();
            }
            Ok(json!(parts))
        }
        "join" => {
            arity(f, a, 2, 2)?;
            let items = a[0].as_array().ok_or_else(|| EvalError::function(f, "the first parameter must be an array."))?;
            Ok(json!(items.iter().map(display).collect::<Vec<_>>().join(want_str(f, &a[1])?)))
        }
        "substring" => {
            arity(f, a, 2, 3)?;
            let chars: Vec<char> = want_str(f, &a[0])?.chars().collect();
            let start = usize::try_from(want_int(f, &a[1])?).map_err(|_| EvalError::function(f, "the start index is negative."))?;
            let len = match a.get(2) {
                Some(v) => usize::try_from(want_int(f, v)?).map_err(|_| EvalError::function(f, "the length is negative."))?,
                None => chars.len().saturating_sub(start),
            };
            if start + len > chars.len() {
                return Err(EvalError::function(f, "the index and length must refer to a location within the string."));
            }
            Ok(json!(chars[start..start + len].iter().collect::<String>()))
        }
        "padleft" => {
            arity(f, a, 2, 3)?;
            let s = display(&a[0]);
            let width = usize::try_from(want_int(f, &a[1])?).unwrap_or(0);
            let pad = a.get(2).map(display).and_then(|p| p.chars().next()).unwrap_or(' ');
            let missing = width.saturating_sub(s.chars().count());
            Ok(json!(format!("{}{s}", pad.to_string().repeat(missing))))
        }
        "startswith" | "endswith" | "indexof" | "lastindexof" => {
            arity(f, a, 2, 2)?;
            let s = want_str(f, &a[0])?.to_lowercase();
            let t = want_str(f, &a[1])?.to_lowercase();
            Ok(match lower.as_str() {
                "startswith" => json!(s.starts_with(&t)),
                "endswith" => json!(s.ends_with(&t)),
                "indexof" => json!(s.find(&t).map_or(-1, |i| s[..i].chars().count() as i64)),
                _ => json!(s.rfind(&t).map_or(-1, |i| s[..i].chars().count() as i64)),
            })
        }
        "base64" => {
            arity(f, a, 1, 1)?;
            Ok(json!(base64::engine::general_purpose::STANDARD.encode(want_str(f, &a[0])?)))
        }
        "base64tostring" => {
            arity(f, a, 1, 1)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(want_str(f, &a[0])?)
                .map_err(|e| EvalError::function(f, format!("the value is not valid base64: {e}.")))?;
            Ok(json!(String::from_utf8_lossy(&bytes)))
        }
        "uniquestring" => {
            arity(f, a, 1, usize::MAX)?;
            let parts: Vec<&str> = a.iter().map(|x| want_str(f, x)).collect::<Result<_, _>>()?;
            Ok(json!(unique_string(&parts)))
        }
        "guid" => {
            arity(f, a, 1, usize::MAX)?;
            let parts: Vec<&str> = a.iter().map(|x| want_str(f, x)).collect::<Result<_, _>>()?;
            Ok(json!(deterministic_guid(&parts)))
        }
        "equals" => {
            arity(f, a, 2, 2)?;
            Ok(json!(a[0] == a[1]))
        }
        "not" => {
            arity(f, a, 1, 1)?;
            Ok(json!(!want_bool(f, &a[0])?))
        }
        "and" | "or" => {
            arity(f, a, 2, usize::MAX)?;
            let bools: Vec<bool> = a.iter().map(|x| want_bool(f, x)).collect::<Result<_, _>>()?;
            Ok(json!(if lower == "and" { bools.iter().all(|b| *b) } else { bools.iter().any(|b| *b) }))
        }
        "less" | "lessorequals" | "greater" | "greaterorequals" => {
            arity(f, a, 2, 2)?;
            let ord = match (&a[0], &a[1]) {
                (Value::String(x), Value::String(y)) => x.cmp(y),
                (x, y) => want_int(f, x)?.cmp(&want_int(f, y)?),
            };
            use std::cmp::Ordering::*;
            Ok(json!(match lower.as_str() {
                "less" => ord == Less,
                "lessorequals" => ord != Greater,
                "greater" => ord == Greater,
                _ => ord != Less,
            }))
        }
        "add" | "sub" | "mul" | "div" | "mod" => {
            arity(f, a, 2, 2)?;
            let (x, y) = (want_int(f, &a[0])?, want_int(f, &a[1])?);
            let r = match lower.as_str() {
                "add" => x.checked_add(y),
                "sub" => x.checked_sub(y),
                "mul" => x.checked_mul(y),
                "div" => x.checked_div(y),
                _ => x.checked_rem(y),
            };
            r.map(|n| json!(n)).ok_or_else(|| EvalError::function(f, "the result is out of range or divides by zero."))
        }
        "min" | "max" => {
            let nums: Vec<i64> = flatten_args(a).iter().map(|x| want_int(f, x)).collect::<Result<_, _>>()?;
            let r = if lower == "min" { nums.iter().min() } else { nums.iter().max() };
            r.map(|n| json!(n)).ok_or_else(|| EvalError::function(f, "no values were given."))
        }
        "range" => {
            arity(f, a, 2, 2)?;
            let (start, count) = (want_int(f, &a[0])?, want_int(f, &a[1])?);
            Ok(json!((0..count.max(0)).map(|i| start + i).collect::<Vec<_>>()))
        }
        "length" => {
            arity(f, a, 1, 1)?;
            Ok(json!(match &a[0] {
                Value::String(s) => s.chars().count(),
                Value::Array(x) => x.len(),
                Value::Object(m) => m.len(),
                other => return Err(EvalError::function(f, format!("cannot take the length of a '{}'.", type_name(other)))),
            }))
        }
        "empty" => {
            arity(f, a, 1, 1)?;
            Ok(json!(match &a[0] {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(x) => x.is_empty(),
                Value::Object(m) => m.is_empty(),
                _ => false,
            }))
        }
        "contains" => {
            arity(f, a, 2, 2)?;
            Ok(json!(match &a[0] {
                Value::String(s) => s.contains(display(&a[1]).as_str()),
                Value::Array(x) => x.contains(&a[1]),
                Value::Object(m) => {
                    let k = display(&a[1]);
                    m.keys().any(|x| x.eq_ignore_ascii_case(&k))
                }
                other => return Err(EvalError::function(f, format!("cannot search a '{}'.", type_name(other)))),
            }))
        }
        "first" | "last" => {
            arity(f, a, 1, 1)?;
            Ok(match &a[0] {
                Value::Array(x) => (if lower == "first" { x.first() } else { x.last() }).cloned().unwrap_or(Value::Null),
                Value::String(s) => {
                    let c = if lower == "first" { s.chars().next() } else { s.chars().last() };
                    json!(c.map(String::from).unwrap_or_default())
                }
                other => return Err(EvalError::function(f, format!("cannot take an element of a '{}'.", type_name(other)))),
            })
        }
        "skip" | "take" => {
            arity(f, a, 2, 2)?;
            let n = usize::try_from(want_int(f, &a[1])?.max(0)).unwrap_or(0);
            let pick = |len: usize| if lower == "skip" { n.min(len)..len } else { 0..n.min(len) };
            Ok(match &a[0] {
                Value::Array(x) => Value::Array(x[pick(x.len())].to_vec()),
                Value::String(s) => {
                    let chars: Vec<char> = s.chars().collect();
                    json!(chars[pick(chars.len())].iter().collect::<String>())
                }
                other => return Err(EvalError::function(f, format!("cannot slice a '{}'.", type_name(other)))),
            })
        }
        "coalesce" => Ok(a.iter().find(|x| !x.is_null()).cloned().unwrap_or(Value::Null)),
        "array" => {
            arity(f, a, 1, 1)?;
            Ok(match &a[0] {
                Value::Array(_) => a[0].clone(),
                other => json!([other]),
            })
        }
        "createarray" => Ok(Value::Array(a.clone())),
        "createobject" => {
            let pairs = a.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return Err(EvalError::function(f, "the function expects an even number of parameters."));
            }
            let mut m = Map::new();
            for pair in pairs {
                m.insert(want_str(f, &pair[0])?.to_string(), pair[1].clone());
            }
            Ok(Value::Object(m))
        }
        "union" => {
            arity(f, a, 1, usize::MAX)?;
            if a.iter().all(Value::is_object) {
                let mut out = Value::Object(Map::new());
                for x in a {
                    merge_deep(&mut out, x);
                }
                Ok(out)
            } else if a.iter().all(Value::is_array) {
                let mut out: Vec<Value> = Vec::new();
                for x in a.iter().flat_map(|x| x.as_array().cloned().unwrap_or_default()) {
                    if !out.contains(&x) {
                        out.push(x);
                    }
                }
                Ok(Value::Array(out))
            } else {
                Err(EvalError::function(f, "the parameters must all be objects or all be arrays."))
            }
        }
        "intersection" => {
            arity(f, a, 2, usize::MAX)?;
            let first = a[0].as_array().ok_or_else(|| EvalError::function(f, "the parameters must be arrays."))?;
            Ok(Value::Array(
                first
                    .iter()
                    .filter(|x| a[1..].iter().all(|o| o.as_array().is_some_and(|o| o.contains(x))))
                    .cloned()
                    .collect(),
            ))
        }
        "utcnow" => {
            let fmt = a.first().and_then(Value::as_str).unwrap_or("yyyyMMddTHHmmssZ");
            let now = chrono::Utc::now();
            Ok(json!(match fmt {
                "u" => now.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                "yyyyMMddTHHmmssZ" => now.format("%Y%m%dT%H%M%SZ").to_string(),
                _ => now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }))
        }
        "environment" => Ok(json!({
            "name": "AzureCloud",
            "resourceManager": "https://management.azure.com/",
            "authentication": {"loginEndpoint": "https://login.microsoftonline.com/", "audiences": ["https://management.azure.com/"]},
            "suffixes": {"storage": "core.windows.net"}
        })),
        _ => Err(EvalError(format!(
            "The template function '{name}' is not valid. Please see https://aka.ms/arm-functions for usage details."
        ))),
    }
}

fn flatten_args(a: &[Value]) -> Vec<Value> {
    a.iter()
        .flat_map(|x| match x {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        })
        .collect()
}

/// Objects merge key by key (nested objects too); later values win.
fn merge_deep(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(dst), Value::Object(src)) => {
            for (k, v) in src {
                match dst.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_deep(existing, v)
                    }
                    _ => {
                        dst.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (dst, src) => *dst = src.clone(),
    }
}

/// `.NET` composite formatting as `format()` does it: `{0}`, `{1:spec}` (spec ignored),
/// `{{`/`}}` escapes.
fn format_dotnet(fmt: &str, args: &[Value]) -> Result<String, EvalError> {
    let bad = || EvalError::function("format", format!("the format string '{fmt}' is not valid."));
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut spec = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => spec.push(ch),
                        None => return Err(bad()),
                    }
                }
                let index_text = spec.split([':', ',']).next().unwrap_or_default().trim();
                let index: usize = index_text.parse().map_err(|_| bad())?;
                let arg = args.get(index).ok_or_else(|| {
                    EvalError::function(
                        "format",
                        format!(
                            "the format string refers to argument {index} but only {} were given.",
                            args.len()
                        ),
                    )
                })?;
                out.push_str(&display(arg));
            }
            '}' => return Err(bad()),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `resourceId([subscriptionId], [resourceGroupName], type, name1, name2, ...)`.
fn resource_id(f: &str, a: &[Value], scope: &dyn Scope) -> Result<Value, EvalError> {
    arity(f, a, 2, usize::MAX)?;
    let strings: Vec<&str> = a.iter().map(|x| want_str(f, x)).collect::<Result<_, _>>()?;
    let type_at = strings
        .iter()
        .position(|s| s.contains('/') && s.split('/').next().is_some_and(|ns| ns.contains('.')))
        .ok_or_else(|| {
            EvalError::function(
                f,
                "no argument names a resource type such as 'Microsoft.Network/publicIPAddresses'.",
            )
        })?;
    let sub_value = scope.subscription();
    let rg_value = scope.resource_group();
    let mut sub = sub_value
        .get("subscriptionId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut rg = rg_value
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match type_at {
        0 => {}
        1 => rg = strings[0].to_string(),
        2 => {
            sub = strings[0].to_string();
            rg = strings[1].to_string();
        }
        _ => {
            return Err(EvalError::function(
                f,
                "too many arguments before the resource type.",
            ))
        }
    }
    let path = provider_path(f, &a[type_at..])?;
    Ok(json!(format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/{path}"
    )))
}

/// `Namespace/t1/t2` + names `n1`, `n2` → `Namespace/t1/n1/t2/n2`.
fn provider_path(f: &str, a: &[Value]) -> Result<String, EvalError> {
    let type_ = want_str(f, &a[0])?;
    let names: Vec<String> = a[1..]
        .iter()
        .map(|x| want_str(f, x).map(|s| s.split('/').map(String::from).collect::<Vec<_>>()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut segments = type_.split('/');
    let namespace = segments.next().unwrap_or_default();
    let types: Vec<&str> = segments.collect();
    if types.is_empty() || types.len() != names.len() {
        return Err(EvalError::function(
            f,
            format!(
                "the type '{type_}' requires '{}' resource name argument(s) but '{}' were given.",
                types.len(),
                names.len()
            ),
        ));
    }
    let mut path = namespace.to_string();
    for (t, n) in types.iter().zip(&names) {
        path.push_str(&format!("/{t}/{n}"));
    }
    Ok(path)
}

/// A stable 13-character lowercase token from the arguments, the shape of ARM's
/// `uniqueString` (not its exact hash: the emulator only needs determinism).
pub fn unique_string(parts: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = Sha256::digest(parts.join("-").as_bytes());
    let mut n = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    let mut out = String::with_capacity(13);
    for _ in 0..13 {
        out.push(ALPHABET[(n & 31) as usize] as char);
        n >>= 5;
    }
    out
}

/// A stable GUID-shaped value from the arguments (what `guid()` promises).
pub fn deterministic_guid(parts: &[&str]) -> String {
    let d = Sha256::digest(parts.join("-").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestScope;

    impl Scope for TestScope {
        fn parameter(&self, name: &str) -> Result<Value, EvalError> {
            match name.to_ascii_lowercase().as_str() {
                "name" => Ok(json!("vr")),
                "port" => Ok(json!(8000)),
                "spot" => Ok(json!(true)),
                "tags" => Ok(json!({"a": "1"})),
                _ => Err(EvalError(format!("no parameter {name}"))),
            }
        }
        fn variable(&self, name: &str) -> Result<Value, EvalError> {
            match name {
                "list" => Ok(json!(["x", "y"])),
                _ => Err(EvalError(format!("no variable {name}"))),
            }
        }
        fn resource_group(&self) -> Value {
            json!({"id": "/subscriptions/s1/resourceGroups/rg1", "name": "rg1", "location": "westeurope"})
        }
        fn subscription(&self) -> Value {
            json!({"id": "/subscriptions/s1", "subscriptionId": "s1"})
        }
        fn deployment(&self) -> Value {
            json!({"name": "dep"})
        }
        fn reference(&self, id: &str, full: bool) -> Result<Value, EvalError> {
            let props = json!({"ipAddress": format!("ip-of:{id}"), "instanceView": {"statuses": [{"message": "hello"}]}});
            Ok(if full {
                json!({"properties": props})
            } else {
                props
            })
        }
        fn copy_index(&self) -> Result<i64, EvalError> {
            Ok(2)
        }
    }

    #[test]
    fn evaluates_table() {
        let cases: Vec<(&str, Value)> = vec![
            ("plain", json!("plain")),
            ("[[escaped]", json!("[escaped]")),
            ("[parameters('name')]", json!("vr")),
            ("[parameters('PORT')]", json!(8000)),
            ("[variables('list')[1]]", json!("y")),
            ("[concat('a-', parameters('name'), '-', parameters('port'))]", json!("a-vr-8000")),
            ("[concat(variables('list'), createArray('z'))]", json!(["x", "y", "z"])),
            ("[format('https://{0}:{1}/', 'h', parameters('port'))]", json!("https://h:8000/")),
            ("[format('{{{0}}}', 'x')]", json!("{x}")),
            ("[resourceGroup().location]", json!("westeurope")),
            ("[resourceGroup().id]", json!("/subscriptions/s1/resourceGroups/rg1")),
            ("[subscription().subscriptionId]", json!("s1")),
            (
                "[resourceId('Microsoft.Network/publicIPAddresses', concat(parameters('name'), '-ip'))]",
                json!("/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Network/publicIPAddresses/vr-ip"),
            ),
            (
                "[resourceId('Microsoft.Compute/virtualMachines/extensions', 'vm', 'boot')]",
                json!("/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm/extensions/boot"),
            ),
            (
                "[resourceId('other', 'Microsoft.Network/publicIPAddresses', 'ip')]",
                json!("/subscriptions/s1/resourceGroups/other/providers/Microsoft.Network/publicIPAddresses/ip"),
            ),
            ("[reference(resourceId('Microsoft.Network/publicIPAddresses', 'ip')).ipAddress]",
                json!("ip-of:/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Network/publicIPAddresses/ip")),
            ("[reference('x', '2023-03-01', 'Full').properties.instanceView.statuses[0].message]", json!("hello")),
            ("[reference('x').InstanceView.Statuses[0]['message']]", json!("hello")),
            ("[toLower('AbC')]", json!("abc")),
            ("[toUpper('abc')]", json!("ABC")),
            ("[if(parameters('spot'), 'Spot', 'Regular')]", json!("Spot")),
            ("[if(equals(1, 2), parameters('missing'), 'lazy')]", json!("lazy")),
            ("[equals(parameters('name'), 'vr')]", json!(true)),
            ("[base64('hi')]", json!("aGk=")),
            ("[base64ToString('aGk=')]", json!("hi")),
            ("[string(parameters('port'))]", json!("8000")),
            ("[string(parameters('spot'))]", json!("True")),
            ("[string(parameters('tags'))]", json!("{\"a\":\"1\"}")),
            ("[int('42')]", json!(42)),
            ("[bool('False')]", json!(false)),
            ("[union(parameters('tags'), createObject('b', '2'))]", json!({"a": "1", "b": "2"})),
            ("[union(createObject('n', createObject('x', 1)), createObject('n', createObject('y', 2)))]", json!({"n": {"x": 1, "y": 2}})),
            ("[json('{\"k\": [1, 2]}').k[1]]", json!(2)),
            ("[length(uniqueString('a', 'b'))]", json!(13)),
            ("[equals(uniqueString('a'), uniqueString('a'))]", json!(true)),
            ("[concat('vm', copyIndex(1))]", json!("vm3")),
            ("[not(and(true, false))]", json!(true)),
            ("[add(parameters('port'), 1)]", json!(8001)),
            ("[split('a,b;c', createArray(',', ';'))]", json!(["a", "b", "c"])),
            ("[substring('abcdef', 1, 3)]", json!("bcd")),
            ("[length(guid('x'))]", json!(36)),
            ("[coalesce(null(), 'z')]", json!("z")),
            ("[contains(parameters('tags'), 'A')]", json!(true)),
        ];
        for (src, want) in cases {
            let got = eval_string(src, &TestScope).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(got, want, "{src}");
        }
    }

    #[test]
    fn reports_errors_like_arm() {
        let cases = [
            ("[nosuch()]", "The template function 'nosuch' is not valid"),
            (
                "[parameters('name').nope]",
                "The language expression property 'nope' doesn't exist",
            ),
            ("[variables('list')[5]]", "out of bounds"),
            (
                "[resourceId('Microsoft.Compute/virtualMachines/extensions', 'vm')]",
                "requires '2' resource name",
            ),
            ("[int('x')]", "'x' is not a valid integer"),
            ("[format('{1}', 'a')]", "refers to argument 1"),
            ("[concat('a']", "Unable to parse language expression"),
        ];
        for (src, want) in cases {
            let e = eval_string(src, &TestScope).expect_err(src);
            assert!(e.0.contains(want), "{src}: {e}");
        }
    }
}
