//! Template parameters: declarations, and resolving the values a `CreateStack` call sends
//! against them with CloudFormation's checks and messages.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::TemplateError;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParameterDecl {
    pub name: String,
    pub ty: String,
    pub default: Option<String>,
    pub no_echo: bool,
    pub description: Option<String>,
    pub allowed_values: Vec<String>,
    pub allowed_pattern: Option<String>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub constraint_description: Option<String>,
}

/// A parameter's value for one stack.
#[derive(Clone, PartialEq)]
pub struct ResolvedParameter {
    pub key: String,
    /// What the caller sent (or the default): `DescribeStacks` shows it unless NoEcho.
    pub value: String,
    /// For SSM parameter types: the value the path resolved to.
    pub resolved: Option<String>,
    pub no_echo: bool,
    /// What `Ref` yields: a string, or a list for `List<..>`/`CommaDelimitedList`.
    pub ref_value: Value,
}

impl std::fmt::Debug for ResolvedParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.no_echo {
            "****"
        } else {
            self.value.as_str()
        };
        f.debug_struct("ResolvedParameter")
            .field("key", &self.key)
            .field("value", &shown)
            .finish()
    }
}

/// A scalar as CloudFormation reads it in a parameter declaration.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => Some(a.iter().filter_map(scalar).collect::<Vec<_>>().join(",")),
        _ => None,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

pub fn declarations(body: &Map<String, Value>) -> Result<Vec<ParameterDecl>, TemplateError> {
    let Some(section) = body.get("Parameters") else {
        return Ok(Vec::new());
    };
    let Some(section) = section.as_object() else {
        return Err(TemplateError::Format("Parameters must be an object".into()));
    };
    let mut out = Vec::new();
    for (name, decl) in section {
        let Some(ty) = decl.get("Type").and_then(Value::as_str) else {
            return Err(TemplateError::Format(format!(
                "[/Parameters/{name}] Every Parameters object must contain a Type member."
            )));
        };
        let num = |k: &str| decl.get(k).and_then(|v| scalar(v)?.parse::<f64>().ok());
        out.push(ParameterDecl {
            name: name.clone(),
            ty: ty.to_string(),
            default: decl.get("Default").and_then(scalar),
            no_echo: truthy(decl.get("NoEcho")),
            description: decl.get("Description").and_then(scalar),
            allowed_values: decl
                .get("AllowedValues")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(scalar).collect())
                .unwrap_or_default(),
            allowed_pattern: decl.get("AllowedPattern").and_then(scalar),
            min_length: num("MinLength").map(|n| n as usize),
            max_length: num("MaxLength").map(|n| n as usize),
            min_value: num("MinValue"),
            max_value: num("MaxValue"),
            constraint_description: decl.get("ConstraintDescription").and_then(scalar),
        });
    }
    Ok(out)
}

/// Resolves `given` (key, value) against the declarations: unknown keys and missing
/// values are rejected first, each listing every offending name, then each value's
/// constraints are checked.
pub fn resolve_parameters(
    decls: &[ParameterDecl],
    given: &[(String, String)],
) -> Result<BTreeMap<String, ResolvedParameter>, TemplateError> {
    let unknown: Vec<&str> = given
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !decls.iter().any(|d| d.name == *k))
        .collect();
    if !unknown.is_empty() {
        return Err(TemplateError::Validation(format!(
            "Parameters: [{}] do not exist in the template",
            unknown.join(", ")
        )));
    }
    let value_of = |d: &ParameterDecl| {
        given
            .iter()
            .rev()
            .find(|(k, _)| *k == d.name)
            .map(|(_, v)| v.clone())
            .or_else(|| d.default.clone())
    };
    let missing: Vec<&str> = decls
        .iter()
        .filter(|d| value_of(d).is_none())
        .map(|d| d.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(TemplateError::Validation(format!(
            "Parameters: [{}] must have values",
            missing.join(", ")
        )));
    }
    let mut out = BTreeMap::new();
    for d in decls {
        let value = value_of(d).unwrap_or_default();
        check_constraints(d, &value)?;
        let resolved = ssm_resolution(&d.ty, &value);
        let effective = resolved.clone().unwrap_or_else(|| value.clone());
        let ref_value = if d.ty.starts_with("List<") || d.ty == "CommaDelimitedList" {
            Value::Array(
                effective
                    .split(',')
                    .map(|s| Value::String(s.trim().to_string()))
                    .collect(),
            )
        } else {
            Value::String(effective)
        };
        out.insert(
            d.name.clone(),
            ResolvedParameter {
                key: d.name.clone(),
                value,
                resolved,
                no_echo: d.no_echo,
                ref_value,
            },
        );
    }
    Ok(out)
}

fn check_constraints(d: &ParameterDecl, value: &str) -> Result<(), TemplateError> {
    let fail = |what: String| {
        let msg = match &d.constraint_description {
            Some(c) => format!("Parameter '{}' failed to satisfy constraint: {c}", d.name),
            None => format!("Parameter '{}' {what}", d.name),
        };
        Err(TemplateError::Validation(msg))
    };
    if !d.allowed_values.is_empty() && !d.allowed_values.iter().any(|a| a == value) {
        return fail("must be one of AllowedValues".into());
    }
    if let Some(pattern) = &d.allowed_pattern {
        let anchored = format!("^(?:{pattern})$");
        let re = regex_lite::Regex::new(&anchored).map_err(|e| {
            TemplateError::Format(format!(
                "AllowedPattern of parameter {} is not a valid pattern: {e}",
                d.name
            ))
        })?;
        if !re.is_match(value) {
            return fail(format!("must match pattern {pattern}"));
        }
    }
    let chars = value.chars().count();
    if let Some(min) = d.min_length {
        if chars < min {
            return fail(format!("must contain at least {min} characters"));
        }
    }
    if let Some(max) = d.max_length {
        if chars > max {
            return fail(format!("must contain at most {max} characters"));
        }
    }
    if d.ty == "Number" {
        let Ok(n) = value.trim().parse::<f64>() else {
            return fail("must be a number".into());
        };
        if d.min_value.is_some_and(|m| n < m) || d.max_value.is_some_and(|m| n > m) {
            return fail("is out of range".into());
        }
    }
    Ok(())
}

/// `AWS::SSM::Parameter::Value<..>` parameters hold a parameter-store path; an image id
/// path resolves to a stable fake AMI id, anything else to a placeholder naming the path.
fn ssm_resolution(ty: &str, path: &str) -> Option<String> {
    let inner = ty
        .strip_prefix("AWS::SSM::Parameter::Value<")?
        .strip_suffix('>')?;
    let digest = Sha256::digest(path.as_bytes());
    let hex: String = digest.iter().take(9).map(|b| format!("{b:02x}")).collect();
    Some(match inner {
        "AWS::EC2::Image::Id" => format!("ami-{}", &hex[..17]),
        _ => format!("ssm-value-{}", &hex[..12]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> Vec<ParameterDecl> {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"Parameters": {
                "Pw": {"Type": "String", "NoEcho": true, "MinLength": 4},
                "Size": {"Type": "String", "Default": "small", "AllowedValues": ["small", "big"]},
                "Cidr": {"Type": "String", "AllowedPattern": "\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+"},
                "Ami": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/aws/x"},
                "Azs": {"Type": "CommaDelimitedList", "Default": "a, b"}
            }}"#,
        )
        .expect("json");
        declarations(&body).expect("decls")
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_and_missing_use_cloudformation_messages() {
        let err = resolve_parameters(&decls(), &given(&[("Nope", "1"), ("Pw", "abcd")]))
            .expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "Parameters: [Nope] do not exist in the template"
        );
        let err = resolve_parameters(&decls(), &given(&[])).expect_err("missing");
        assert_eq!(err.to_string(), "Parameters: [Cidr, Pw] must have values");
    }

    #[test]
    fn constraints_are_checked() {
        let base = [("Pw", "abcd"), ("Cidr", "10.0.0.0/8")];
        assert!(resolve_parameters(&decls(), &given(&base)).is_ok());
        let err = resolve_parameters(&decls(), &given(&[("Pw", "ab"), ("Cidr", "10.0.0.0/8")]))
            .expect_err("short");
        assert_eq!(
            err.to_string(),
            "Parameter 'Pw' must contain at least 4 characters"
        );
        let err = resolve_parameters(&decls(), &given(&[("Pw", "abcd"), ("Cidr", "x10.0.0.0/8")]))
            .expect_err("pattern");
        assert!(err
            .to_string()
            .starts_with("Parameter 'Cidr' must match pattern"));
        let err = resolve_parameters(
            &decls(),
            &given(&[("Pw", "abcd"), ("Cidr", "1.2.3.4/5"), ("Size", "huge")]),
        )
        .expect_err("allowed");
        assert_eq!(
            err.to_string(),
            "Parameter 'Size' must be one of AllowedValues"
        );
    }

    #[test]
    fn ssm_lists_and_no_echo_resolve() {
        let r = resolve_parameters(
            &decls(),
            &given(&[("Pw", "secret-pw"), ("Cidr", "1.2.3.4/5")]),
        )
        .expect("ok");
        assert!(r["Ami"]
            .ref_value
            .as_str()
            .is_some_and(|s| s.starts_with("ami-") && s.len() == 21));
        assert_eq!(r["Azs"].ref_value, serde_json::json!(["a", "b"]));
        assert!(r["Pw"].no_echo);
        assert!(!format!("{:?}", r["Pw"]).contains("secret-pw"));
    }
}
