//! What a CloudFormation template declares, read locally so a stack gets only the parameters
//! its template knows (any template works with `--template`, not just ours).
//!
//! The template is parsed as YAML (JSON is YAML too). serde_norway keeps CloudFormation's
//! short-form tags (`!Ref`, `!GetAtt`, `!Sub`) as tagged values instead of failing on them,
//! and only the `Parameters` section's keys are needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudtest_core::memo::LastParsed;
use cloudtest_core::Secret;
use serde_norway::Value;
use thiserror::Error;

/// CloudFormation's limit for an inline `TemplateBody`; larger templates need S3.
pub const MAX_TEMPLATE_BODY_BYTES: usize = 51_200;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template {path} is not valid YAML or JSON: {why}")]
    Syntax { path: PathBuf, why: String },
    #[error("template {path} is not a mapping at the top level")]
    NotAMapping { path: PathBuf },
    #[error(
        "template {path} has a `Parameters` section that is not a mapping of names to declarations"
    )]
    BadParameters { path: PathBuf },
    #[error("template {path} is {size} bytes; CloudFormation accepts at most {MAX_TEMPLATE_BODY_BYTES} bytes inline (upload it to S3 or shrink it)")]
    TooLarge { path: PathBuf, size: usize },
}

/// One entry of the template's `Parameters` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredParameter {
    pub name: String,
    pub has_default: bool,
    pub no_echo: bool,
}

/// The template body as YAML. Every region's preflight and create read the same body, so
/// its parse is kept (see [`LastParsed`]).
fn parsed(body: &str) -> Result<Arc<Value>, serde_norway::Error> {
    static TEMPLATE: LastParsed<Value> = LastParsed::new();
    TEMPLATE.get_or_parse(body, |text| serde_norway::from_str(text))
}

/// Reads the `Parameters` section of a template body.
pub fn declared_parameters(
    body: &str,
    path: &Path,
) -> Result<Vec<DeclaredParameter>, TemplateError> {
    if body.len() > MAX_TEMPLATE_BODY_BYTES {
        return Err(TemplateError::TooLarge {
            path: path.to_path_buf(),
            size: body.len(),
        });
    }
    let doc = parsed(body).map_err(|e| TemplateError::Syntax {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let Value::Mapping(top) = doc.as_ref() else {
        return Err(TemplateError::NotAMapping {
            path: path.to_path_buf(),
        });
    };
    let Some(params) = top.get("Parameters") else {
        return Ok(Vec::new());
    };
    let Value::Mapping(params) = params else {
        return Err(TemplateError::BadParameters {
            path: path.to_path_buf(),
        });
    };
    let mut out = Vec::with_capacity(params.len());
    for (key, decl) in params {
        let Value::String(name) = key else {
            return Err(TemplateError::BadParameters {
                path: path.to_path_buf(),
            });
        };
        let has_default = decl.get("Default").is_some();
        let no_echo = match decl.get("NoEcho") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        out.push(DeclaredParameter {
            name: name.clone(),
            has_default,
            no_echo,
        });
    }
    Ok(out)
}

/// A parameter value; the admin password stays a [`Secret`] until the request is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterValue {
    Plain(String),
    Secret(Secret),
}

impl ParameterValue {
    /// The value to put in the request. Only the CreateStack call reads this.
    pub fn expose(&self) -> &str {
        match self {
            ParameterValue::Plain(s) => s,
            ParameterValue::Secret(s) => s.expose(),
        }
    }
}

/// The parameters a stack is created with, and the ones the template does not declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSelection {
    pub send: BTreeMap<String, ParameterValue>,
    /// Config overrides the template does not declare (reported, never sent: CloudFormation
    /// would reject the whole stack).
    pub ignored_overrides: Vec<String>,
}

/// Keeps the standard values (RunId, ExpiresAt, ...) the template declares, then applies the
/// config's `parameters` map on top (it wins), again only for declared names.
pub fn select_parameters(
    declared: &[DeclaredParameter],
    standard: BTreeMap<String, ParameterValue>,
    overrides: &BTreeMap<String, String>,
) -> ParameterSelection {
    let is_declared = |name: &str| declared.iter().any(|d| d.name == name);
    let mut send: BTreeMap<String, ParameterValue> = standard
        .into_iter()
        .filter(|(k, _)| is_declared(k))
        .collect();
    let mut ignored_overrides = Vec::new();
    for (k, v) in overrides {
        if is_declared(k) {
            send.insert(k.clone(), ParameterValue::Plain(v.clone()));
        } else {
            ignored_overrides.push(k.clone());
        }
    }
    ParameterSelection {
        send,
        ignored_overrides,
    }
}

/// Instance types the template launches: every `*InstanceType` parameter, from config or
/// the template's default, one instance each.
pub fn instance_types(template_body: &str, parameters: &BTreeMap<String, String>) -> Vec<String> {
    let Ok(doc) = parsed(template_body) else {
        return Vec::new();
    };
    let Some(params) = doc.get("Parameters").and_then(|p| p.as_mapping()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, decl) in params {
        let Some(name) = key.as_str() else { continue };
        if !name.ends_with("InstanceType") {
            continue;
        }
        let value = parameters.get(name).cloned().or_else(|| {
            decl.get("Default")
                .and_then(|d| d.as_str())
                .map(str::to_string)
        });
        if let Some(v) = value {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  RunId:
    Type: String
  AdminPassword:
    Type: String
    NoEcho: true
    MinLength: 24
  FrontendPort:
    Type: Number
    Default: 8000
Resources:
  Sg:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: !Sub "cloudtest ${RunId}"
      Tags:
        - Key: cloudtest:run-id
          Value: !Ref RunId
Outputs:
  ServerAddress:
    Value: !GetAtt Server.PublicIp
"#;

    fn path() -> PathBuf {
        PathBuf::from("t.yaml")
    }

    #[test]
    fn reads_parameters_through_short_form_tags() {
        let p = declared_parameters(YAML, &path()).expect("parses");
        let names: Vec<&str> = p.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["RunId", "AdminPassword", "FrontendPort"]);
        assert!(p[1].no_echo && !p[1].has_default);
        assert!(p[2].has_default);
    }

    #[test]
    fn reads_json_templates_and_templates_without_parameters() {
        let json = r#"{"Parameters":{"RunId":{"Type":"String"}},"Resources":{}}"#;
        let p = declared_parameters(json, &path()).expect("parses");
        assert_eq!(p.len(), 1);
        let none = declared_parameters("Resources: {}\n", &path()).expect("parses");
        assert!(none.is_empty());
    }

    #[test]
    fn names_the_file_on_bad_input() {
        let e = declared_parameters("Parameters: [1, 2]\n", &path()).unwrap_err();
        assert!(e.to_string().contains("t.yaml"), "{e}");
        let e = declared_parameters(": : :\n  - [", &path()).unwrap_err();
        assert!(matches!(e, TemplateError::Syntax { .. }));
        let big = format!("Description: \"{}\"\n", "x".repeat(MAX_TEMPLATE_BODY_BYTES));
        assert!(matches!(
            declared_parameters(&big, &path()),
            Err(TemplateError::TooLarge { .. })
        ));
    }

    #[test]
    fn sends_only_declared_parameters_and_overrides_win() {
        let declared = declared_parameters(YAML, &path()).expect("parses");
        let mut standard = BTreeMap::new();
        standard.insert("RunId".to_string(), ParameterValue::Plain("r1".into()));
        standard.insert("UseSpot".to_string(), ParameterValue::Plain("false".into()));
        standard.insert(
            "AdminPassword".to_string(),
            ParameterValue::Secret(Secret::new("s3cret-s3cret-s3cret-s3cret")),
        );
        let mut overrides = BTreeMap::new();
        overrides.insert("FrontendPort".to_string(), "18000".to_string());
        overrides.insert("GuiPort".to_string(), "18889".to_string());
        let sel = select_parameters(&declared, standard, &overrides);
        let keys: Vec<&str> = sel.send.keys().map(String::as_str).collect();
        assert_eq!(keys, ["AdminPassword", "FrontendPort", "RunId"]);
        assert_eq!(sel.send["FrontendPort"].expose(), "18000");
        assert_eq!(sel.ignored_overrides, ["GuiPort"]);
        assert!(!format!("{sel:?}").contains("s3cret"));
    }
}
