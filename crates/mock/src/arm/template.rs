//! Deployment templates: validating the supplied parameters against the template's
//! `parameters`, then expanding `resources` (child resources, `copy` loops, `condition`) and
//! evaluating `outputs`, the way ARM does for a resource-group-scope deployment.

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::eval::{eval_value, type_name, EvalError, Scope};

/// Why a deployment is rejected with `400 InvalidTemplate`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("Deployment template validation failed: 'The value for the template parameter '{0}' is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details.'.")]
    MissingParameter(String),
    #[error("Deployment template validation failed: 'The template parameters '{unknown}' in the parameters file are not valid; they are not present in the original template and can therefore not be provided at deployment time. The only supported parameters for this template are '{known}'. Please see https://aka.ms/arm-pass-parameter-values for usage details.'.")]
    UnknownParameters { unknown: String, known: String },
    #[error("Deployment template validation failed: 'The provided value for the template parameter '{name}' is not valid. Expected a value of type '{expected}', but received a value of type '{actual}'. Please see https://aka.ms/arm-create-parameter-file for usage details.'.")]
    WrongType {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("Deployment template validation failed: 'The provided value '{value}' for the template parameter '{name}' is not valid. The parameter value is not part of the allowed value(s): '{allowed}'.'.")]
    NotAllowed {
        name: String,
        value: String,
        allowed: String,
    },
    #[error("Deployment template validation failed: 'The provided value for the template parameter '{name}' is not valid. {why}'.")]
    OutOfRange { name: String, why: String },
    #[error("Deployment template validation failed: 'The template parameter '{name}' has an unsupported value: {why}'.")]
    UnsupportedValue { name: String, why: String },
    #[error("Deployment template validation failed: '{0}'.")]
    Invalid(String),
    #[error("Deployment template language expression evaluation failed: '{0}'. Please see https://aka.ms/arm-functions for usage details.")]
    Expression(#[from] EvalError),
}

/// ARM's parameter and output types (names compared case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmType {
    String,
    SecureString,
    Int,
    Bool,
    Object,
    SecureObject,
    Array,
}

impl ArmType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "string" => ArmType::String,
            "securestring" => ArmType::SecureString,
            "int" => ArmType::Int,
            "bool" => ArmType::Bool,
            "object" => ArmType::Object,
            "secureobject" => ArmType::SecureObject,
            "array" => ArmType::Array,
            _ => return None,
        })
    }

    /// How ARM spells the type in responses (`properties.parameters`, `properties.outputs`).
    pub fn response_name(self) -> &'static str {
        match self {
            ArmType::String => "String",
            ArmType::SecureString => "SecureString",
            ArmType::Int => "Int",
            ArmType::Bool => "Bool",
            ArmType::Object => "Object",
            ArmType::SecureObject => "SecureObject",
            ArmType::Array => "Array",
        }
    }

    fn json_type_name(self) -> &'static str {
        match self {
            ArmType::String | ArmType::SecureString => "String",
            ArmType::Int => "Integer",
            ArmType::Bool => "Boolean",
            ArmType::Object | ArmType::SecureObject => "Object",
            ArmType::Array => "Array",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            ArmType::String | ArmType::SecureString => v.is_string(),
            ArmType::Int => v.is_i64(),
            ArmType::Bool => v.is_boolean(),
            ArmType::Object | ArmType::SecureObject => v.is_object(),
            ArmType::Array => v.is_array(),
        }
    }

    pub fn is_secure(self) -> bool {
        matches!(self, ArmType::SecureString | ArmType::SecureObject)
    }
}

/// A parameter after validation.
#[derive(Clone)]
pub struct ParameterValue {
    pub name: String,
    pub type_: ArmType,
    pub value: Value,
}

/// The resource group and deployment a template is evaluated in.
#[derive(Debug, Clone)]
pub struct DeploymentScope {
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub resource_group_tags: Map<String, Value>,
    pub deployment_name: String,
}

impl DeploymentScope {
    pub fn resource_group_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription_id, self.resource_group
        )
    }
}

/// What the emulated world answers when a template calls `reference()`.
pub trait RuntimeFacts {
    /// The public IP every emulated address resolves to.
    fn address(&self) -> String;
    /// The CA PEM the emulated boot script publishes.
    fn ca_pem(&self) -> String;
}

/// One resource a template creates.
#[derive(Debug, Clone)]
pub struct PlannedResource {
    pub id: String,
    /// Full name, `vm/extension` for child resources.
    pub name: String,
    pub type_: String,
    pub api_version: String,
    pub location: String,
    pub tags: Map<String, Value>,
    /// Evaluated template properties merged with what the emulated provider adds at runtime
    /// (what `reference()` returns).
    pub properties: Value,
}

impl PlannedResource {
    pub fn is_type(&self, type_: &str) -> bool {
        self.type_.eq_ignore_ascii_case(type_)
    }

    /// `reference(..., 'Full')`.
    pub fn full(&self) -> Value {
        json!({
            "apiVersion": self.api_version,
            "location": self.location,
            "tags": self.tags,
            "id": self.id,
            "name": self.name,
            "type": self.type_,
            "properties": self.properties,
        })
    }
}

/// The outcome of evaluating a whole deployment.
pub struct EvaluatedDeployment {
    pub parameters: Vec<ParameterValue>,
    pub resources: Vec<PlannedResource>,
    /// `{"name": {"type": "String", "value": ...}}`, as in `properties.outputs`.
    pub outputs: Map<String, Value>,
}

impl EvaluatedDeployment {
    /// A parameter's value by (case-insensitive) name.
    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.parameters
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| &p.value)
    }

    /// `properties.parameters` as ARM echoes them: secure values are left out.
    pub fn parameters_for_response(&self) -> Map<String, Value> {
        self.parameters
            .iter()
            .map(|p| {
                let v = if p.type_.is_secure() {
                    json!({"type": p.type_.response_name()})
                } else {
                    json!({"type": p.type_.response_name(), "value": p.value})
                };
                (p.name.clone(), v)
            })
            .collect()
    }
}

fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Evaluation scope over parameters, variables (evaluated on demand) and planned resources.
struct TemplateScope<'a> {
    scope: &'a DeploymentScope,
    parameters: &'a [ParameterValue],
    variables: &'a Map<String, Value>,
    variable_cache: RefCell<BTreeMap<String, Value>>,
    variables_in_progress: RefCell<Vec<String>>,
    resources: &'a [PlannedResource],
    existing: &'a [PlannedResource],
    copy_index: Option<i64>,
}

impl Scope for TemplateScope<'_> {
    fn parameter(&self, name: &str) -> Result<Value, EvalError> {
        self.parameters
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.clone())
            .ok_or_else(|| EvalError(format!("The template parameter '{name}' is not found.")))
    }

    fn variable(&self, name: &str) -> Result<Value, EvalError> {
        let key = name.to_ascii_lowercase();
        if let Some(v) = self.variable_cache.borrow().get(&key) {
            return Ok(v.clone());
        }
        let raw = get_ci(self.variables, name)
            .ok_or_else(|| EvalError(format!("The template variable '{name}' is not found.")))?;
        if self.variables_in_progress.borrow().contains(&key) {
            return Err(EvalError(format!(
                "The template variable '{name}' refers to itself."
            )));
        }
        self.variables_in_progress.borrow_mut().push(key.clone());
        let v = eval_value(raw, self);
        self.variables_in_progress
            .borrow_mut()
            .retain(|x| *x != key);
        let v = v?;
        self.variable_cache.borrow_mut().insert(key, v.clone());
        Ok(v)
    }

    fn resource_group(&self) -> Value {
        json!({
            "id": self.scope.resource_group_id(),
            "name": self.scope.resource_group,
            "type": "Microsoft.Resources/resourceGroups",
            "location": self.scope.location,
            "tags": self.scope.resource_group_tags,
            "properties": {"provisioningState": "Succeeded"},
        })
    }

    fn subscription(&self) -> Value {
        json!({
            "id": format!("/subscriptions/{}", self.scope.subscription_id),
            "subscriptionId": self.scope.subscription_id,
            "tenantId": "00000000-0000-0000-0000-000000000000",
            "displayName": "cloudtest emulated subscription",
        })
    }

    fn deployment(&self) -> Value {
        json!({
            "name": self.scope.deployment_name,
            "properties": {"templateLink": null},
        })
    }

    fn reference(&self, id_or_name: &str, full: bool) -> Result<Value, EvalError> {
        let wanted = id_or_name.trim_end_matches('/');
        let by_id_or_name = |r: &&PlannedResource| {
            r.id.eq_ignore_ascii_case(wanted)
                || (!wanted.starts_with('/') && r.name.eq_ignore_ascii_case(wanted))
        };
        let found = self
            .resources
            .iter()
            .find(by_id_or_name)
            .or_else(|| self.existing.iter().find(by_id_or_name))
            .ok_or_else(|| {
                EvalError(format!(
                    "The Resource '{id_or_name}' under resource group '{}' was not found.",
                    self.scope.resource_group
                ))
            })?;
        Ok(if full {
            found.full()
        } else {
            found.properties.clone()
        })
    }

    fn copy_index(&self) -> Result<i64, EvalError> {
        self.copy_index.ok_or_else(|| {
            EvalError("The template function 'copyIndex' is not expected at this location.".into())
        })
    }
}

/// Checks the supplied `properties.parameters` against the template and fills in defaults.
pub fn validate_parameters(
    template: &Value,
    supplied: &Map<String, Value>,
    scope: &DeploymentScope,
) -> Result<Vec<ParameterValue>, TemplateError> {
    let empty = Map::new();
    let declared = match template.get("parameters") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(TemplateError::Invalid(
                "The template 'parameters' section must be an object.".into(),
            ))
        }
    };
    let unknown: Vec<&str> = supplied
        .keys()
        .filter(|k| get_ci(declared, k).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(TemplateError::UnknownParameters {
            unknown: unknown.join(", "),
            known: declared.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    let mut out: Vec<ParameterValue> = Vec::new();
    for (name, decl) in declared {
        let type_text = decl.get("type").and_then(Value::as_str).unwrap_or_default();
        let type_ = ArmType::parse(type_text).ok_or_else(|| {
            TemplateError::Invalid(format!(
                "The template parameter '{name}' has type '{type_text}'; allowed types are string, securestring, int, bool, object, secureobject, array."
            ))
        })?;
        let value = match get_ci(supplied, name) {
            Some(entry) => {
                if entry.get("reference").is_some() {
                    return Err(TemplateError::UnsupportedValue {
                        name: name.clone(),
                        why: "Key Vault references are not emulated; pass 'value'.".into(),
                    });
                }
                entry
                    .get("value")
                    .cloned()
                    .ok_or_else(|| TemplateError::MissingParameter(name.clone()))?
            }
            None => match decl.get("defaultValue") {
                Some(default) => {
                    let ts = TemplateScope {
                        scope,
                        parameters: &out,
                        variables: &empty,
                        variable_cache: RefCell::default(),
                        variables_in_progress: RefCell::default(),
                        resources: &[],
                        existing: &[],
                        copy_index: None,
                    };
                    eval_value(default, &ts)?
                }
                None => return Err(TemplateError::MissingParameter(name.clone())),
            },
        };
        if !type_.accepts(&value) {
            return Err(TemplateError::WrongType {
                name: name.clone(),
                expected: type_.json_type_name().into(),
                actual: type_name(&value).into(),
            });
        }
        check_constraints(name, decl, &value)?;
        out.push(ParameterValue {
            name: name.clone(),
            type_,
            value,
        });
    }
    Ok(out)
}

fn check_constraints(name: &str, decl: &Value, value: &Value) -> Result<(), TemplateError> {
    if let Some(allowed) = decl.get("allowedValues").and_then(Value::as_array) {
        let ok = match value {
            Value::Array(items) => items.iter().all(|x| allowed.contains(x)),
            v => allowed.contains(v),
        };
        if !ok {
            return Err(TemplateError::NotAllowed {
                name: name.into(),
                value: super::eval::display(value),
                allowed: allowed
                    .iter()
                    .map(super::eval::display)
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
    }
    let range = |why: String| TemplateError::OutOfRange {
        name: name.into(),
        why,
    };
    if let Some(n) = value.as_i64() {
        if let Some(min) = decl
            .get("minValue")
            .and_then(Value::as_i64)
            .filter(|m| n < *m)
        {
            return Err(range(format!(
                "The value '{n}' is less than the minimum value '{min}'."
            )));
        }
        if let Some(max) = decl
            .get("maxValue")
            .and_then(Value::as_i64)
            .filter(|m| n > *m)
        {
            return Err(range(format!(
                "The value '{n}' is greater than the maximum value '{max}'."
            )));
        }
    }
    let len = match value {
        Value::String(s) => Some(s.chars().count() as i64),
        Value::Array(a) => Some(a.len() as i64),
        _ => None,
    };
    if let Some(len) = len {
        if let Some(min) = decl
            .get("minLength")
            .and_then(Value::as_i64)
            .filter(|m| len < *m)
        {
            return Err(range(format!(
                "The length '{len}' is less than the minimum length '{min}'."
            )));
        }
        if let Some(max) = decl
            .get("maxLength")
            .and_then(Value::as_i64)
            .filter(|m| len > *m)
        {
            return Err(range(format!(
                "The length '{len}' is greater than the maximum length '{max}'."
            )));
        }
    }
    Ok(())
}

/// A template resource after `condition`/`copy` expansion, before its body is evaluated.
struct Expanded<'t> {
    decl: &'t Value,
    copy_index: Option<i64>,
    planned: PlannedResource,
}

/// Validates and evaluates a deployment: parameters, resources (with their runtime
/// properties) and outputs. `existing` are resources already in the resource group, which
/// `reference()` may name.
pub fn evaluate(
    template: &Value,
    supplied: &Map<String, Value>,
    scope: &DeploymentScope,
    existing: &[PlannedResource],
    facts: &dyn RuntimeFacts,
) -> Result<EvaluatedDeployment, TemplateError> {
    if !template.is_object() {
        return Err(TemplateError::Invalid(
            "The template must be a JSON object.".into(),
        ));
    }
    if template.get("resources").is_some_and(|r| !r.is_array()) {
        return Err(TemplateError::Invalid(
            "The template 'resources' must be an array (symbolic-name resource objects are not emulated).".into(),
        ));
    }
    let parameters = validate_parameters(template, supplied, scope)?;
    let empty = Map::new();
    let variables = template
        .get("variables")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut ts = TemplateScope {
        scope,
        parameters: &parameters,
        variables,
        variable_cache: RefCell::default(),
        variables_in_progress: RefCell::default(),
        resources: &[],
        existing,
        copy_index: None,
    };

    // Pass 1: which resources exist (names and types may not use reference()).
    let mut expanded: Vec<Expanded<'_>> = Vec::new();
    if let Some(list) = template.get("resources").and_then(Value::as_array) {
        for decl in list {
            expand(decl, None, &mut ts, &mut expanded)?;
        }
    }

    // Pass 2: bodies, with reference() seeing every planned resource.
    let mut planned: Vec<PlannedResource> = expanded.iter().map(|e| e.planned.clone()).collect();
    for (i, e) in expanded.iter().enumerate() {
        let body_scope = TemplateScope {
            scope,
            parameters: &parameters,
            variables,
            variable_cache: RefCell::default(),
            variables_in_progress: RefCell::default(),
            resources: &planned,
            existing,
            copy_index: e.copy_index,
        };
        let location = match e.decl.get("location") {
            Some(v) => super::eval::display(&eval_value(v, &body_scope)?),
            None => String::new(),
        };
        let tags = match e.decl.get("tags") {
            Some(v) => match eval_value(v, &body_scope)? {
                Value::Object(m) => m,
                Value::Null => Map::new(),
                other => {
                    return Err(TemplateError::Invalid(format!(
                        "The tags of resource '{}' must be an object, not '{}'.",
                        e.planned.name,
                        type_name(&other)
                    )))
                }
            },
            None => Map::new(),
        };
        let declared = match e.decl.get("properties") {
            Some(v) => eval_value(v, &body_scope)?,
            None => json!({}),
        };
        let properties = runtime_properties(&e.planned, declared, facts);
        planned[i].location = location;
        planned[i].tags = tags;
        planned[i].properties = properties;
    }

    let output_scope = TemplateScope {
        scope,
        parameters: &parameters,
        variables,
        variable_cache: RefCell::default(),
        variables_in_progress: RefCell::default(),
        resources: &planned,
        existing,
        copy_index: None,
    };
    let mut outputs = Map::new();
    if let Some(decls) = template.get("outputs").and_then(Value::as_object) {
        for (name, decl) in decls {
            if let Some(cond) = decl.get("condition") {
                if !eval_value(cond, &output_scope)?.as_bool().unwrap_or(false) {
                    continue;
                }
            }
            let type_text = decl.get("type").and_then(Value::as_str).unwrap_or("string");
            let type_ = ArmType::parse(type_text).ok_or_else(|| {
                TemplateError::Invalid(format!(
                    "The template output '{name}' has an unknown type '{type_text}'."
                ))
            })?;
            let value = match decl.get("value") {
                Some(v) => eval_value(v, &output_scope)?,
                None => Value::Null,
            };
            let entry = if type_.is_secure() {
                json!({"type": type_.response_name()})
            } else {
                json!({"type": type_.response_name(), "value": value})
            };
            outputs.insert(name.clone(), entry);
        }
    }
    Ok(EvaluatedDeployment {
        parameters,
        resources: planned,
        outputs,
    })
}

/// Expands one resource declaration (its `condition`, `copy` and nested `resources`).
fn expand<'t>(
    decl: &'t Value,
    parent: Option<&PlannedResource>,
    ts: &mut TemplateScope<'_>,
    out: &mut Vec<Expanded<'t>>,
) -> Result<(), TemplateError> {
    let count = match decl.get("copy") {
        None => None,
        Some(copy) => {
            let n = copy
                .get("count")
                .map(|c| eval_value(c, ts))
                .transpose()?
                .and_then(|c| c.as_i64())
                .ok_or_else(|| {
                    TemplateError::Invalid("A resource 'copy' needs an integer 'count'.".into())
                })?;
            Some(n.max(0))
        }
    };
    let indices: Vec<Option<i64>> = match count {
        None => vec![None],
        Some(n) => (0..n).map(Some).collect(),
    };
    for index in indices {
        ts.copy_index = index;
        if let Some(cond) = decl.get("condition") {
            if !eval_value(cond, ts)?.as_bool().unwrap_or(false) {
                continue;
            }
        }
        let raw_type = decl
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| TemplateError::Invalid("Every resource needs a 'type'.".into()))?;
        let raw_name = decl.get("name").ok_or_else(|| {
            TemplateError::Invalid(format!("The resource of type '{raw_type}' needs a 'name'."))
        })?;
        let name = super::eval::display(&eval_value(raw_name, ts)?);
        let (type_, name) = match parent {
            // A nested child resource's type and name are relative to its parent.
            Some(p) if !raw_type.contains('/') => (
                format!("{}/{raw_type}", p.type_),
                format!("{}/{name}", p.name),
            ),
            _ => (raw_type.to_string(), name),
        };
        let id = resource_id(ts.scope, &type_, &name)?;
        let planned = PlannedResource {
            id,
            name,
            type_,
            api_version: decl
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            location: String::new(),
            tags: Map::new(),
            properties: json!({}),
        };
        let children = decl.get("resources").and_then(Value::as_array);
        out.push(Expanded {
            decl,
            copy_index: index,
            planned: planned.clone(),
        });
        if let Some(children) = children {
            for child in children {
                expand(child, Some(&planned), ts, out)?;
            }
        }
    }
    ts.copy_index = None;
    Ok(())
}

/// `/subscriptions/s/resourceGroups/rg/providers/NS/t1/n1/t2/n2`.
fn resource_id(scope: &DeploymentScope, type_: &str, name: &str) -> Result<String, TemplateError> {
    let mut types = type_.split('/');
    let namespace = types.next().unwrap_or_default();
    let types: Vec<&str> = types.collect();
    let names: Vec<&str> = name.split('/').collect();
    if types.is_empty() || types.len() != names.len() {
        return Err(TemplateError::Invalid(format!(
            "The resource name '{name}' of type '{type_}' must have {} segment(s).",
            types.len()
        )));
    }
    let mut id = format!("{}/providers/{namespace}", scope.resource_group_id());
    for (t, n) in types.iter().zip(names) {
        id.push_str(&format!("/{t}/{n}"));
    }
    Ok(id)
}

/// The CustomScript status message carrying the CA, as the template's boot script prints it.
pub fn custom_script_message(ca_pem: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!("Enable succeeded: \n[stdout]\nCLOUDTEST_CA_B64={b64}\n\n[stderr]\n")
}

/// What the resource provider adds to a resource's properties once it exists.
fn runtime_properties(r: &PlannedResource, declared: Value, facts: &dyn RuntimeFacts) -> Value {
    let mut props = match declared {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    props.insert("provisioningState".into(), json!("Succeeded"));
    let short_name = r.name.rsplit('/').next().unwrap_or_default().to_string();
    match r.type_.to_ascii_lowercase().as_str() {
        "microsoft.network/publicipaddresses" => {
            props.insert("ipAddress".into(), json!(facts.address()));
            props
                .entry("publicIPAllocationMethod")
                .or_insert(json!("Static"));
            if let Some(label) = props
                .get("dnsSettings")
                .and_then(|d| d.get("domainNameLabel"))
                .and_then(Value::as_str)
                .map(String::from)
            {
                let fqdn = format!(
                    "{label}.{}.cloudapp.azure.com",
                    r.location.to_ascii_lowercase()
                );
                if let Some(Value::Object(dns)) = props.get_mut("dnsSettings") {
                    dns.insert("fqdn".into(), json!(fqdn));
                }
            }
        }
        "microsoft.compute/virtualmachines" => {
            props.insert(
                "vmId".into(),
                json!(super::eval::deterministic_guid(&[&r.id])),
            );
        }
        "microsoft.compute/virtualmachines/extensions" => {
            let ext_type = props
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("CustomScript")
                .to_string();
            let handler = props
                .get("typeHandlerVersion")
                .and_then(Value::as_str)
                .unwrap_or("2.1")
                .to_string();
            let message = if ext_type.to_ascii_lowercase().contains("customscript") {
                custom_script_message(&facts.ca_pem())
            } else {
                "Enable succeeded".to_string()
            };
            props.insert(
                "instanceView".into(),
                json!({
                    "name": short_name,
                    "type": ext_type,
                    "typeHandlerVersion": handler,
                    "statuses": [{
                        "code": "ProvisioningState/succeeded",
                        "level": "Info",
                        "displayStatus": "Provisioning succeeded",
                        "message": message,
                    }],
                }),
            );
        }
        _ => {}
    }
    Value::Object(props)
}
