//! Intrinsic functions (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::If`, ...) evaluated
//! over the long-form JSON tree, against parameters, pseudo parameters, conditions and the
//! resources planned so far.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};

use super::params::{scalar, ResolvedParameter};

const PSEUDO_PARAMETERS: &[&str] = &[
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
];

pub fn is_pseudo_parameter(name: &str) -> bool {
    PSEUDO_PARAMETERS.contains(&name)
}

/// A name an expression refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Ref(String),
    GetAtt(String),
    Condition(String),
}

impl Reference {
    pub fn name(&self) -> &str {
        match self {
            Reference::Ref(n) | Reference::GetAtt(n) | Reference::Condition(n) => n,
        }
    }
}

/// Every reference inside `value` (including `Fn::Sub` variables not bound by its map).
pub fn collect_references(value: &Value, out: &mut Vec<Reference>) {
    match value {
        Value::Array(a) => a.iter().for_each(|v| collect_references(v, out)),
        Value::Object(m) => {
            if m.len() == 1 {
                if let Some((k, v)) = m.iter().next() {
                    match (k.as_str(), v) {
                        ("Ref", Value::String(s)) => out.push(Reference::Ref(s.clone())),
                        ("Condition", Value::String(s)) => {
                            out.push(Reference::Condition(s.clone()))
                        }
                        ("Fn::GetAtt", Value::Array(a)) => {
                            if let Some(Value::String(s)) = a.first() {
                                out.push(Reference::GetAtt(s.clone()));
                            }
                        }
                        ("Fn::Sub", v) => {
                            let (text, bound) = match v {
                                Value::String(s) => (Some(s.as_str()), Map::new()),
                                Value::Array(a) => (
                                    a.first().and_then(Value::as_str),
                                    a.get(1)
                                        .and_then(Value::as_object)
                                        .cloned()
                                        .unwrap_or_default(),
                                ),
                                _ => (None, Map::new()),
                            };
                            for var in text.map(sub_variables).unwrap_or_default() {
                                if bound.contains_key(&var) {
                                    continue;
                                }
                                match var.split_once('.') {
                                    Some((res, _)) => out.push(Reference::GetAtt(res.to_string())),
                                    None => out.push(Reference::Ref(var)),
                                }
                            }
                            if let Value::Array(a) = v {
                                a.iter().skip(1).for_each(|x| collect_references(x, out));
                            }
                        }
                        _ => collect_references(v, out),
                    }
                    return;
                }
            }
            for (k, v) in m {
                // A resource's own `Condition` key names a condition.
                if k == "Condition" {
                    if let Value::String(s) = v {
                        out.push(Reference::Condition(s.clone()));
                    }
                    continue;
                }
                collect_references(v, out);
            }
        }
        _ => {}
    }
}

/// The `${...}` variable names of a `Fn::Sub` string, skipping `${!literal}`.
pub fn sub_variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let var = &after[..end];
        if !var.starts_with('!') {
            out.push(var.trim().to_string());
        }
        rest = &after[end + 1..];
    }
    out
}

/// What a planned resource offers to `Ref` and `Fn::GetAtt`.
#[derive(Debug, Clone, Default)]
pub struct ResourceFacts {
    pub ty: String,
    pub ref_value: String,
    pub attributes: BTreeMap<String, Value>,
}

/// Stack-wide values every expression may use.
#[derive(Debug, Clone)]
pub struct Pseudo {
    pub region: String,
    pub account: String,
    pub stack_name: String,
    pub stack_id: String,
}

/// Everything an expression is evaluated against.
pub struct Scope<'a> {
    pub params: &'a BTreeMap<String, ResolvedParameter>,
    pub pseudo: &'a Pseudo,
    pub mappings: &'a Map<String, Value>,
    pub conditions: &'a Map<String, Value>,
    pub resources: &'a BTreeMap<String, ResourceFacts>,
}

type EvalResult = Result<Option<Value>, String>;

/// Condition nesting deeper than this is a cycle.
const MAX_DEPTH: usize = 64;

impl Scope<'_> {
    /// Evaluates `value`; `None` is `AWS::NoValue` (the key or element disappears).
    pub fn eval(&self, value: &Value) -> EvalResult {
        self.eval_at(value, 0)
    }

    /// Evaluates a named condition.
    pub fn condition(&self, name: &str) -> Result<bool, String> {
        self.condition_at(name, 0)
    }

    fn condition_at(&self, name: &str, depth: usize) -> Result<bool, String> {
        if depth > MAX_DEPTH {
            return Err(format!("Template error: condition {name} refers to itself"));
        }
        let raw = self
            .conditions
            .get(name)
            .ok_or_else(|| format!("Template error: unresolved condition dependency {name}"))?;
        let v = self.eval_at(raw, depth + 1)?;
        v.as_ref().and_then(as_bool).ok_or_else(|| {
            format!("Template error: condition {name} does not evaluate to a boolean")
        })
    }

    fn eval_at(&self, value: &Value, depth: usize) -> EvalResult {
        if depth > MAX_DEPTH {
            return Err("Template error: expression nested too deeply".into());
        }
        match value {
            Value::Array(a) => {
                let mut out = Vec::new();
                for v in a {
                    if let Some(v) = self.eval_at(v, depth + 1)? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(m) if m.len() == 1 => {
                let Some((k, arg)) = m.iter().next() else {
                    return Ok(Some(Value::Object(Map::new())));
                };
                if k == "Ref" || k == "Condition" || k.starts_with("Fn::") {
                    self.intrinsic(k, arg, depth)
                } else {
                    self.object(m, depth)
                }
            }
            Value::Object(m) => self.object(m, depth),
            other => Ok(Some(other.clone())),
        }
    }

    fn object(&self, m: &Map<String, Value>, depth: usize) -> EvalResult {
        let mut out = Map::new();
        for (k, v) in m {
            if let Some(v) = self.eval_at(v, depth + 1)? {
                out.insert(k.clone(), v);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    /// Evaluates to a value that must be present.
    fn some(&self, value: &Value, depth: usize, what: &str) -> Result<Value, String> {
        self.eval_at(value, depth + 1)?
            .ok_or_else(|| format!("Template error: {what} cannot be AWS::NoValue"))
    }

    fn string(&self, value: &Value, depth: usize, what: &str) -> Result<String, String> {
        let v = self.some(value, depth, what)?;
        match v {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!(
                "Template error: {what} must be a string, got {other}"
            )),
        }
    }

    fn list(&self, value: &Value, depth: usize, what: &str) -> Result<Vec<Value>, String> {
        match self.some(value, depth, what)? {
            Value::Array(a) => Ok(a),
            other => Err(format!(
                "Template error: {what} must be a list, got {other}"
            )),
        }
    }

    fn args<'v>(arg: &'v Value, n: usize, name: &str) -> Result<&'v [Value], String> {
        match arg {
            Value::Array(a) if a.len() == n => Ok(a),
            _ => Err(format!(
                "Template error: {name} takes a list of {n} arguments"
            )),
        }
    }

    fn intrinsic(&self, name: &str, arg: &Value, depth: usize) -> EvalResult {
        let s = |v: Value| Ok(Some(v));
        match name {
            "Ref" => {
                let target = self.string(arg, depth, "Ref")?;
                self.reference(&target)
            }
            "Condition" => {
                let c = self.string(arg, depth, "Condition")?;
                s(Value::Bool(self.condition_at(&c, depth + 1)?))
            }
            "Fn::GetAtt" => {
                let a = Self::args(arg, 2, name)?;
                let resource = self.string(&a[0], depth, "Fn::GetAtt resource")?;
                let attr = self.string(&a[1], depth, "Fn::GetAtt attribute")?;
                s(self.get_att(&resource, &attr)?)
            }
            "Fn::Sub" => s(Value::String(self.sub(arg, depth)?)),
            "Fn::Join" => {
                let a = Self::args(arg, 2, name)?;
                let delim = self.string(&a[0], depth, "Fn::Join delimiter")?;
                let items = self.list(&a[1], depth, "Fn::Join list")?;
                let parts: Result<Vec<String>, String> = items
                    .iter()
                    .map(|v| {
                        scalar(v).ok_or_else(|| {
                            format!("Template error: Fn::Join element {v} is not a string")
                        })
                    })
                    .collect();
                s(Value::String(parts?.join(&delim)))
            }
            "Fn::Select" => {
                let a = Self::args(arg, 2, name)?;
                let index = self.string(&a[0], depth, "Fn::Select index")?;
                let items = self.list(&a[1], depth, "Fn::Select list")?;
                let i: usize = index.parse().map_err(|_| {
                    format!("Template error: Fn::Select index {index} is not a number")
                })?;
                items.get(i).cloned().map(Some).ok_or_else(|| {
                    "Template error: Fn::Select cannot select nonexistent value at index "
                        .to_string()
                        + &index
                })
            }
            "Fn::Split" => {
                let a = Self::args(arg, 2, name)?;
                let delim = self.string(&a[0], depth, "Fn::Split delimiter")?;
                let text = self.string(&a[1], depth, "Fn::Split source")?;
                s(Value::Array(
                    text.split(delim.as_str())
                        .map(|p| Value::String(p.into()))
                        .collect(),
                ))
            }
            "Fn::GetAZs" => {
                let region = self.string(arg, depth, "Fn::GetAZs")?;
                let region = if region.is_empty() {
                    self.pseudo.region.clone()
                } else {
                    region
                };
                s(Value::Array(
                    ["a", "b", "c"]
                        .iter()
                        .map(|z| Value::String(format!("{region}{z}")))
                        .collect(),
                ))
            }
            "Fn::Base64" => {
                let text = self.string(arg, depth, "Fn::Base64")?;
                s(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(text),
                ))
            }
            "Fn::FindInMap" => {
                let a = match arg {
                    Value::Array(a) if a.len() >= 3 => a,
                    _ => return Err("Template error: Fn::FindInMap takes [map, top-level key, second-level key]".into()),
                };
                let map = self.string(&a[0], depth, "Fn::FindInMap map")?;
                let top = self.string(&a[1], depth, "Fn::FindInMap key")?;
                let second = self.string(&a[2], depth, "Fn::FindInMap key")?;
                match self
                    .mappings
                    .get(&map)
                    .and_then(|m| m.get(&top))
                    .and_then(|m| m.get(&second))
                {
                    Some(v) => s(v.clone()),
                    None => match a.get(3).and_then(|d| d.get("DefaultValue")) {
                        Some(d) => self.eval_at(d, depth + 1),
                        None => Err(format!(
                            "Template error: Unable to get mapping for {map}::{top}::{second}"
                        )),
                    },
                }
            }
            "Fn::ImportValue" => {
                let export = self.string(arg, depth, "Fn::ImportValue")?;
                Err(format!(
                    "No export named {export} found. Rollback requested by user."
                ))
            }
            "Fn::If" => {
                let a = Self::args(arg, 3, name)?;
                let c = self.string(&a[0], depth, "Fn::If condition")?;
                if self.condition_at(&c, depth + 1)? {
                    self.eval_at(&a[1], depth + 1)
                } else {
                    self.eval_at(&a[2], depth + 1)
                }
            }
            "Fn::Equals" => {
                let a = Self::args(arg, 2, name)?;
                let l = self.some(&a[0], depth, "Fn::Equals")?;
                let r = self.some(&a[1], depth, "Fn::Equals")?;
                s(Value::Bool(scalar(&l) == scalar(&r)))
            }
            "Fn::Not" => {
                let a = Self::args(arg, 1, name)?;
                let v = self.some(&a[0], depth, "Fn::Not")?;
                let b = as_bool(&v).ok_or("Template error: Fn::Not takes a condition")?;
                s(Value::Bool(!b))
            }
            "Fn::And" | "Fn::Or" => {
                let items = match arg {
                    Value::Array(a) if !a.is_empty() => a,
                    _ => return Err(format!("Template error: {name} takes a list of conditions")),
                };
                let mut bools = Vec::new();
                for v in items {
                    let v = self.some(v, depth, name)?;
                    bools.push(
                        as_bool(&v)
                            .ok_or_else(|| format!("Template error: {name} takes conditions"))?,
                    );
                }
                let r = if name == "Fn::And" {
                    bools.iter().all(|b| *b)
                } else {
                    bools.iter().any(|b| *b)
                };
                s(Value::Bool(r))
            }
            "Fn::Cidr" => {
                let a = Self::args(arg, 3, name)?;
                let block = self.string(&a[0], depth, "Fn::Cidr block")?;
                let count = self.string(&a[1], depth, "Fn::Cidr count")?;
                let bits = self.string(&a[2], depth, "Fn::Cidr bits")?;
                s(Value::Array(
                    cidr_subnets(&block, &count, &bits)?
                        .into_iter()
                        .map(Value::String)
                        .collect(),
                ))
            }
            "Fn::Length" => s(Value::from(self.list(arg, depth, name)?.len())),
            "Fn::ToJsonString" => s(Value::String(self.some(arg, depth, name)?.to_string())),
            other => Err(format!("Template error: {other} is not supported")),
        }
    }

    fn reference(&self, target: &str) -> EvalResult {
        if let Some(p) = self.params.get(target) {
            return Ok(Some(p.ref_value.clone()));
        }
        if let Some(r) = self.resources.get(target) {
            return Ok(Some(Value::String(r.ref_value.clone())));
        }
        let p = self.pseudo;
        let v = match target {
            "AWS::NoValue" => return Ok(None),
            "AWS::Region" => p.region.clone(),
            "AWS::AccountId" => p.account.clone(),
            "AWS::StackName" => p.stack_name.clone(),
            "AWS::StackId" => p.stack_id.clone(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::NotificationARNs" => return Ok(Some(Value::Array(Vec::new()))),
            other => return Err(format!("Template format error: Unresolved resource dependencies [{other}] in the Resources block of the template")),
        };
        Ok(Some(Value::String(v)))
    }

    fn get_att(&self, resource: &str, attr: &str) -> Result<Value, String> {
        let facts = self.resources.get(resource).ok_or_else(|| {
            format!("Template format error: Unresolved resource dependencies [{resource}] in the Resources block of the template")
        })?;
        facts.attributes.get(attr).cloned().ok_or_else(|| {
            format!(
                "Template error: resource {resource} does not support attribute type {attr} in Fn::GetAtt"
            )
        })
    }

    fn sub(&self, arg: &Value, depth: usize) -> Result<String, String> {
        let (text, vars) = match arg {
            Value::String(s) => (s.clone(), Map::new()),
            Value::Array(a) if a.len() == 2 => {
                let text = self.string(&a[0], depth, "Fn::Sub string")?;
                let vars = match self.some(&a[1], depth, "Fn::Sub variables")? {
                    Value::Object(m) => m,
                    _ => return Err("Template error: Fn::Sub variables must be a map".into()),
                };
                (text, vars)
            }
            _ => return Err("Template error: Fn::Sub takes a string or [string, map]".into()),
        };
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let var = after[..end].trim();
            if let Some(literal) = var.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let v = match vars.get(var) {
                    Some(v) => v.clone(),
                    None => match var.split_once('.') {
                        Some((res, attr))
                            if !self.params.contains_key(var) && !is_pseudo_parameter(var) =>
                        {
                            self.get_att(res, attr)?
                        }
                        _ => self
                            .reference(var)?
                            .ok_or("Template error: Fn::Sub variable cannot be AWS::NoValue")?,
                    },
                };
                let text = match &v {
                    Value::Array(a) => a.iter().filter_map(scalar).collect::<Vec<_>>().join(","),
                    other => scalar(other).ok_or_else(|| {
                        format!("Template error: Fn::Sub variable {var} is not a string")
                    })?,
                };
                out.push_str(&text);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// `Fn::Cidr` for IPv4: `count` blocks with `bits` host bits each, carved from `block`.
fn cidr_subnets(block: &str, count: &str, bits: &str) -> Result<Vec<String>, String> {
    let bad = || {
        format!("Template error: Fn::Cidr cannot split {block} into {count} blocks of {bits} bits")
    };
    let (addr, prefix) = block.split_once('/').ok_or_else(bad)?;
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    let count: u32 = count.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    let base: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let new_prefix = 32u32
        .checked_sub(bits)
        .filter(|p| *p >= prefix && *p <= 32)
        .ok_or_else(bad)?;
    if u64::from(count) > 1u64 << (new_prefix - prefix) {
        return Err(bad());
    }
    let base = u32::from(base);
    (0..count)
        .map(|i| {
            let offset = u64::from(i) << bits;
            let a = u64::from(base) + offset;
            u32::try_from(a)
                .map(|a| format!("{}/{new_prefix}", std::net::Ipv4Addr::from(a)))
                .map_err(|_| bad())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_scope<T>(f: impl FnOnce(&Scope) -> T) -> T {
        let mut params = BTreeMap::new();
        params.insert(
            "Env".to_string(),
            ResolvedParameter {
                key: "Env".into(),
                value: "prod".into(),
                resolved: None,
                no_echo: false,
                ref_value: json!("prod"),
            },
        );
        let pseudo = Pseudo {
            region: "eu-west-1".into(),
            account: "123456789012".into(),
            stack_name: "s".into(),
            stack_id: "arn:s".into(),
        };
        let mappings = json!({"M": {"prod": {"Size": "big"}}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let conditions = json!({
            "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
            "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]}
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        let mut resources = BTreeMap::new();
        let mut attributes = BTreeMap::new();
        attributes.insert("PublicIp".to_string(), json!("127.0.0.1"));
        resources.insert(
            "Server".to_string(),
            ResourceFacts {
                ty: "AWS::EC2::Instance".into(),
                ref_value: "i-1".into(),
                attributes,
            },
        );
        let scope = Scope {
            params: &params,
            pseudo: &pseudo,
            mappings: &mappings,
            conditions: &conditions,
            resources: &resources,
        };
        f(&scope)
    }

    #[test]
    fn evaluates_the_common_functions() {
        with_scope(|s| {
            let e = |v: Value| s.eval(&v).expect("eval");
            assert_eq!(
                e(json!({"Fn::Sub": "${Server}@${Server.PublicIp}:${AWS::Region}/${!Lit}"})),
                Some(json!("i-1@127.0.0.1:eu-west-1/${Lit}"))
            );
            assert_eq!(
                e(json!({"Fn::Sub": ["${X}-${Env}", {"X": {"Ref": "AWS::AccountId"}}]})),
                Some(json!("123456789012-prod"))
            );
            assert_eq!(
                e(json!({"Fn::Join": ["-", ["a", {"Ref": "Env"}]]})),
                Some(json!("a-prod"))
            );
            assert_eq!(
                e(json!({"Fn::Select": ["1", {"Fn::GetAZs": ""}]})),
                Some(json!("eu-west-1b"))
            );
            assert_eq!(
                e(json!({"Fn::Select": [0, {"Fn::Split": [",", "x,y"]}]})),
                Some(json!("x"))
            );
            assert_eq!(
                e(
                    json!({"Fn::If": ["NotProd", "a", {"Fn::FindInMap": ["M", {"Ref": "Env"}, "Size"]}]})
                ),
                Some(json!("big"))
            );
            assert_eq!(e(json!({"Fn::Base64": "hi"})), Some(json!("aGk=")));
            assert_eq!(
                e(json!({"Fn::Cidr": ["10.0.0.0/16", 2, 8]})),
                Some(json!(["10.0.0.0/24", "10.0.1.0/24"]))
            );
            assert_eq!(
                e(json!({"A": {"Ref": "AWS::NoValue"}, "B": [1, {"Ref": "AWS::NoValue"}]})),
                Some(json!({"B": [1]}))
            );
            assert!(s.condition("IsProd").expect("cond"));
            assert!(s.eval(&json!({"Fn::GetAtt": ["Server", "Nope"]})).is_err());
        });
    }

    #[test]
    fn sub_variables_skip_literals() {
        assert_eq!(
            sub_variables("${A}x${!B}${C.D}"),
            vec!["A".to_string(), "C.D".to_string()]
        );
    }
}
