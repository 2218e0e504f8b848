//! The deployment's `parameters` object: only what the template declares, each value
//! converted to the declared type, as `{"name": {"value": ...}}`. Other templates work
//! because nothing here assumes a parameter exists.

use std::collections::BTreeMap;

use cloudtest_core::Secret;
use serde_json::{Map, Value};

use crate::errors::AzureError;

/// A value the provider offers the template: plain, or secret (sent, never logged).
pub(crate) enum Offered {
    Plain(String),
    Secret(Secret),
}

impl Offered {
    fn text(&self) -> &str {
        match self {
            Offered::Plain(s) => s,
            Offered::Secret(s) => s.expose(),
        }
    }
}

/// Parameters a config override may not replace: they identify and protect the run.
const RUN_OWNED: [&str; 4] = ["runId", "expiresAt", "requirement", "adminPassword"];

/// Builds the `parameters` object. `offered` are the provider's own values (camelCase names);
/// `overrides` come from config and win, except for [`RUN_OWNED`] names. Names match the
/// template's declarations case-insensitively and are sent in the template's spelling.
pub(crate) fn build(
    template_path: &str,
    template: &Value,
    offered: Vec<(&'static str, Offered)>,
    overrides: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, AzureError> {
    let declared = match template.get("parameters") {
        None => return Ok(Map::new()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(AzureError::Template {
                path: template_path.into(),
                why: "`parameters` is not an object".into(),
            })
        }
    };
    let mut chosen: Vec<(String, Offered)> = offered
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (name, value) in overrides {
        if RUN_OWNED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            tracing::warn!(parameter = %name, "config override of a run-owned parameter ignored");
            continue;
        }
        chosen.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        chosen.push((name.clone(), Offered::Plain(value.clone())));
    }

    let mut out = Map::new();
    for (name, value) in chosen {
        let Some((declared_name, decl)) =
            declared.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name))
        else {
            tracing::debug!(parameter = %name, "template does not declare it; not sent");
            continue;
        };
        let ty = decl
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string")
            .to_ascii_lowercase();
        let json = convert(&ty, value.text()).map_err(|why| AzureError::Template {
            path: template_path.into(),
            why: format!("parameter `{declared_name}` ({ty}): {why}"),
        })?;
        let mut wrapped = Map::new();
        wrapped.insert("value".into(), json);
        out.insert(declared_name.clone(), Value::Object(wrapped));
    }
    Ok(out)
}

fn convert(ty: &str, raw: &str) -> Result<Value, String> {
    match ty {
        "string" | "securestring" => Ok(Value::String(raw.to_string())),
        "int" => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "expected a whole number".to_string()),
        "bool" => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("expected true or false".into()),
        },
        "object" | "secureobject" | "array" => {
            serde_json::from_str(raw).map_err(|e| format!("expected JSON: {e}"))
        }
        other => Err(format!("unsupported parameter type `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({"parameters": {
            "runId": {"type": "string"},
            "adminPassword": {"type": "securestring"},
            "useSpot": {"type": "bool"},
            "frontendPort": {"type": "int", "defaultValue": 8000},
        }})
    }

    #[test]
    fn sends_only_declared_parameters_with_declared_types() {
        let mut overrides = BTreeMap::new();
        overrides.insert("FrontendPort".to_string(), "18000".to_string());
        overrides.insert("notDeclared".to_string(), "x".to_string());
        overrides.insert("runId".to_string(), "hijack".to_string());
        let p = build(
            "t.json",
            &template(),
            vec![
                ("runId", Offered::Plain("r1".into())),
                ("adminPassword", Offered::Secret(Secret::new("pw-secret"))),
                ("useSpot", Offered::Plain("false".into())),
                ("velociraptorVersion", Offered::Plain("0.77.2".into())),
            ],
            &overrides,
        )
        .expect("builds");
        assert_eq!(
            Value::Object(p),
            json!({
                "runId": {"value": "r1"},
                "adminPassword": {"value": "pw-secret"},
                "useSpot": {"value": false},
                "frontendPort": {"value": 18000},
            })
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_parameter() {
        let mut overrides = BTreeMap::new();
        overrides.insert("frontendPort".to_string(), "eight".to_string());
        let err = build("t.json", &template(), vec![], &overrides).unwrap_err();
        assert!(err.to_string().contains("frontendPort"), "{err}");
    }

    #[test]
    fn a_template_without_parameters_gets_none() {
        let p = build(
            "t.json",
            &json!({"resources": []}),
            vec![("runId", Offered::Plain("r".into()))],
            &BTreeMap::new(),
        )
        .expect("builds");
        assert!(p.is_empty());
    }
}
