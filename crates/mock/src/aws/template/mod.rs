//! CloudFormation templates as the emulator understands them: YAML (with the short-form
//! `!Ref`/`!GetAtt`/`!Sub`... tags) or JSON, normalised into one JSON tree in long form
//! (`{"Ref": ..}`, `{"Fn::GetAtt": [..]}`), then parameters resolved and validated the way
//! CloudFormation does, with its error messages.

pub mod eval;
pub mod params;
pub mod plan;

use serde_json::{Map, Value};

pub use params::{resolve_parameters, scalar as params_scalar, ParameterDecl, ResolvedParameter};
pub use plan::{
    plan_stack, BootFacts, PlannedOutput, PlannedResource, PlannedStack, StackIdentity,
};

/// What CloudFormation answers a bad template or bad parameters with; both become a
/// `ValidationError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template itself is malformed.
    #[error("Template format error: {0}")]
    Format(String),
    /// The template is fine but the request or an evaluation is not.
    #[error("{0}")]
    Validation(String),
}

/// Short-form tags CloudFormation accepts, besides `!Ref`, `!GetAtt` and `!Condition`.
const FN_TAGS: &[&str] = &[
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Length",
    "ToJsonString",
];

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    pub body: Map<String, Value>,
    pub description: Option<String>,
    pub parameters: Vec<ParameterDecl>,
}

impl Template {
    /// Parses a `TemplateBody` (JSON if it starts with `{`, YAML otherwise) and checks its
    /// structure and references.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let tree = if text.trim_start().starts_with('{') {
            serde_json::from_str::<Value>(text)
                .map_err(|e| TemplateError::Format(format!("JSON not well-formed. ({e})")))?
        } else {
            let yaml: serde_norway::Value = serde_norway::from_str(text)
                .map_err(|e| TemplateError::Format(format!("YAML not well-formed. ({e})")))?;
            yaml_to_json(yaml)?
        };
        let Value::Object(body) = tree else {
            return Err(TemplateError::Format(
                "the template is not a JSON object or YAML mapping".into(),
            ));
        };
        if let Some(version) = body.get("AWSTemplateFormatVersion") {
            if version.as_str() != Some("2010-09-09") {
                return Err(TemplateError::Format(
                    "Unsupported template format version".into(),
                ));
            }
        }
        if let Some(transform) = body.get("Transform") {
            return Err(TemplateError::Validation(format!(
                "Transform {transform} is not supported by the cloudtest emulator; expand it before deploying"
            )));
        }
        let resources = body.get("Resources").and_then(Value::as_object);
        if resources.is_none_or(|r| r.is_empty()) {
            return Err(TemplateError::Format(
                "At least one Resources member must be defined.".into(),
            ));
        }
        let description = body
            .get("Description")
            .and_then(Value::as_str)
            .map(str::to_string);
        let parameters = params::declarations(&body)?;
        let template = Template {
            body,
            description,
            parameters,
        };
        template.check_references()?;
        Ok(template)
    }

    pub fn section(&self, name: &str) -> Map<String, Value> {
        self.body
            .get(name)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// Capabilities the template needs (IAM resources), as `ValidateTemplate` reports them.
    pub fn required_capabilities(&self) -> Vec<&'static str> {
        let mut iam = false;
        let mut named = false;
        for res in self.section("Resources").values() {
            let ty = res.get("Type").and_then(Value::as_str).unwrap_or("");
            if ty.starts_with("AWS::IAM::") {
                iam = true;
                let props = res.get("Properties");
                if [
                    "RoleName",
                    "UserName",
                    "GroupName",
                    "InstanceProfileName",
                    "ManagedPolicyName",
                ]
                .iter()
                .any(|k| props.and_then(|p| p.get(k)).is_some())
                {
                    named = true;
                }
            }
        }
        match (iam, named) {
            (_, true) => vec!["CAPABILITY_NAMED_IAM"],
            (true, false) => vec!["CAPABILITY_IAM"],
            _ => Vec::new(),
        }
    }

    /// Every `Ref`, `Fn::GetAtt`, `Fn::Sub` variable, `DependsOn` and `Condition` must name
    /// something the template declares, as CloudFormation checks before creating anything.
    fn check_references(&self) -> Result<(), TemplateError> {
        let resources = self.section("Resources");
        let conditions = self.section("Conditions");
        let known_ref = |name: &str| {
            resources.contains_key(name)
                || self.parameters.iter().any(|p| p.name == name)
                || eval::is_pseudo_parameter(name)
        };
        let mut unresolved = Vec::new();
        let mut refs = Vec::new();
        for (name, res) in &resources {
            if !res.is_object() {
                return Err(TemplateError::Format(format!(
                    "Resource {name} is not an object"
                )));
            }
            if res.get("Type").and_then(Value::as_str).is_none() {
                return Err(TemplateError::Format(format!(
                    "[/Resources/{name}] Every Resources object must contain a Type member."
                )));
            }
            for dep in depends_on(res) {
                if !resources.contains_key(&dep) {
                    unresolved.push(dep);
                }
            }
            if let Some(c) = res.get("Condition").and_then(Value::as_str) {
                if !conditions.contains_key(c) {
                    return Err(TemplateError::Format(format!(
                        "Unresolved dependencies [{c}]. Cannot reference resources in the Conditions block of the template"
                    )));
                }
            }
            eval::collect_references(res, &mut refs);
        }
        for section in ["Outputs", "Conditions"] {
            for v in self.section(section).values() {
                eval::collect_references(v, &mut refs);
            }
        }
        for r in refs {
            let ok = match &r {
                eval::Reference::Ref(name) => known_ref(name),
                eval::Reference::GetAtt(name) => resources.contains_key(name),
                eval::Reference::Condition(name) => conditions.contains_key(name),
            };
            if !ok {
                unresolved.push(r.name().to_string());
            }
        }
        if unresolved.is_empty() {
            return Ok(());
        }
        unresolved.sort();
        unresolved.dedup();
        Err(TemplateError::Format(format!(
            "Unresolved resource dependencies [{}] in the Resources block of the template",
            unresolved.join(", ")
        )))
    }
}

/// `DependsOn` as a list (it may be one string or a list).
pub fn depends_on(resource: &Value) -> Vec<String> {
    match resource.get("DependsOn") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// YAML to JSON, turning short-form tags into their long forms.
fn yaml_to_json(value: serde_norway::Value) -> Result<Value, TemplateError> {
    use serde_norway::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(
            seq.into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(TemplateError::Format(format!(
                            "unsupported mapping key {other:?}"
                        )))
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value)?;
            let (key, inner) = match name {
                "Ref" => ("Ref".to_string(), inner),
                "Condition" => ("Condition".to_string(), inner),
                "GetAtt" => {
                    let inner = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((res, attr)) => Value::Array(vec![res.into(), attr.into()]),
                            None => {
                                return Err(TemplateError::Format(format!(
                                    "!GetAtt {s} must look like Resource.Attribute"
                                )))
                            }
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_string(), inner)
                }
                n if FN_TAGS.contains(&n) => (format!("Fn::{n}"), inner),
                other => {
                    return Err(TemplateError::Format(format!("unknown YAML tag !{other}")));
                }
            };
            let mut m = Map::new();
            m.insert(key, inner);
            Value::Object(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_forms_become_long_forms() {
        let t = Template::parse(
            "Resources:\n  A:\n    Type: AWS::EC2::VPC\n    Properties:\n      X: !Ref B\n      Y: !GetAtt B.Outer.Inner\n      Z: !Sub '${B}-x'\n      W: !Join [',', [!Ref AWS::Region, b]]\n  B:\n    Type: AWS::EC2::VPC\n",
        )
        .expect("parse");
        let props = &t.section("Resources")["A"]["Properties"];
        assert_eq!(props["X"], json!({"Ref": "B"}));
        assert_eq!(props["Y"], json!({"Fn::GetAtt": ["B", "Outer.Inner"]}));
        assert_eq!(props["Z"], json!({"Fn::Sub": "${B}-x"}));
        assert_eq!(
            props["W"],
            json!({"Fn::Join": [",", [{"Ref": "AWS::Region"}, "b"]]})
        );
    }

    #[test]
    fn unresolved_references_are_format_errors() {
        let err = Template::parse(
            "Resources:\n  A:\n    Type: AWS::EC2::VPC\n    Properties:\n      X: !Ref Nope\n",
        )
        .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "Template format error: Unresolved resource dependencies [Nope] in the Resources block of the template"
        );
        let err = Template::parse("Resources:\n  A:\n    Type: AWS::EC2::VPC\n    Properties:\n      X: !Sub '${Gone.Arn}'\n")
            .expect_err("must fail");
        assert!(err.to_string().contains("[Gone]"), "{err}");
    }

    #[test]
    fn json_templates_parse_too_and_need_resources() {
        assert!(Template::parse(r#"{"Resources": {"A": {"Type": "AWS::EC2::VPC"}}}"#).is_ok());
        let err = Template::parse(r#"{"Resources": {}}"#).expect_err("empty");
        assert!(err.to_string().contains("At least one Resources member"));
        assert!(Template::parse("Resources: [unclosed").is_err());
    }
}
